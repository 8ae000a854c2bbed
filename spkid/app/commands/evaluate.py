"""``spkid evaluate --model RUN_DIR|CHECKPOINT --cache DIR | --data ROOT [--split test]``.

Prints top-1, top-5 and per-speaker accuracy; writes ``metrics.json`` and the figures -- training curves
(``history.png``, from the run's ``history.csv``), ``confusion.png``, a 2-D map of the split's embeddings
(``embeddings.png``) and the attention weights over one clip's spectrogram (``attention.png``) -- next to
the checkpoint's run directory, or in ``--out``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spkid.app.options import add_data_arguments, add_progress_argument, load_split

NAME = "evaluate"
HELP = "Closed-set identification accuracy of a trained model on a data split."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN", help="run directory, checkpoint .json or state file")
    add_data_arguments(parser)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score")
    parser.add_argument("--out", metavar="DIR", help="where to write metrics.json and the figures (default: RUN)")
    add_progress_argument(parser)


def run_dir_of(model_path: str) -> Path:
    """The run directory a ``--model`` argument belongs to."""
    p = Path(model_path)
    if p.is_dir():
        return p
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from spkid.features.config import FeatureConfig
    from spkid.errors import SplitError
    from spkid.backends import get_backend
    from spkid.inference.embedder import load_embedder
    from spkid.app.plots import evaluation_figures
    from spkid.training.checkpoints import atomic_write_json, read_checkpoint

    meta, _ = read_checkpoint(args.model)
    data = load_split(args, args.split, feature_config=FeatureConfig.from_dict(meta["feature_config"]),
                      speakers=meta["speakers"], progress=not args.no_progress)
    if data is None:
        raise SplitError(f"no usable utterances in split {args.split!r}", path=args.cache or args.waves or args.data)
    report = get_backend(meta["backend"]).evaluate(args.model, data)
    print(f"{meta['backend']} {meta['model']} (epoch {meta['epoch']}) on {report['n']} {args.split} utterances:")
    print(f"top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%")
    for speaker, acc in report["per_speaker"].items():
        if acc is not None:
            print(f"  {speaker}: {100 * acc:.1f}%")
    out = Path(args.out) if args.out else run_dir_of(args.model)
    atomic_write_json(out / "metrics.json", {"split": args.split, "checkpoint_epoch": meta["epoch"], **report})
    embedder = load_embedder(args.model)
    emb = embedder.embed(data.features)
    clip = int(np.argmax([len(f) for f in data.features]))  # the longest clip shows attention best
    history = run_dir_of(args.model) / "history.csv"
    figures = evaluation_figures(
        out, history=history if history.is_file() else None, confusion=np.asarray(report["confusion"]),
        speakers=list(data.speakers), embeddings=emb, embedding_labels=[data.speakers[i] for i in data.labels],
        features=data.features[clip], attention=embedder.attention(data.features[clip]),
        frame_shift=embedder.feature_config.frame_shift, title=f"{meta['model']} ({meta['backend']})")
    print(f"wrote {out / 'metrics.json'}")
    for path in figures:
        print(f"wrote {path}")
    return 0
