"""``spkid export --model RUN --format onnx|torchscript|keras OUT``.

Any backend's checkpoint to any format (the weight port bridges the frameworks); ONNX files have dynamic
batch and time axes and carry the feature config, labels and model name in their metadata, so
``spkid serve --model OUT.onnx`` (or :class:`spkid.inference.onnx.OnnxEmbedder`) needs nothing else.
"""
from __future__ import annotations

import argparse

NAME = "export"
HELP = "Export a trained model to ONNX (dynamic time axis), TorchScript or Keras."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.inference.export import FORMATS

    parser.add_argument("--model", required=True, metavar="RUN", help="run directory, checkpoint .json or state file")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="output format (default: onnx)")
    parser.add_argument("--prefer", default="best", choices=["best", "last"], help="checkpoint of a run directory")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("out", metavar="OUT", help="output file (.onnx / .pt / .keras added when missing)")


def run(args: argparse.Namespace) -> int:
    from spkid.inference.export import export_model

    path = export_model(args.model, args.out, args.format, prefer=args.prefer, opset=args.opset)
    print(f"wrote {path} ({args.format})")
    return 0
