"""``spkid serve --model CKPT_OR_ONNX --gallery G [--host 127.0.0.1] [--port 8000] [--threshold X]``.

Serves the JSON API (``/enroll``, ``/identify``, ``/speakers``, ``/health``) and a one-page UI at ``/``;
see :mod:`spkid.app.serve.app`. The gallery file is created on the first enrolment.
"""
from __future__ import annotations

import argparse

NAME = "serve"
HELP = "HTTP identification service with a web page (enrol / identify speakers)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT_OR_ONNX", help="run directory, checkpoint or .onnx")
    parser.add_argument("--gallery", required=True, metavar="G.npz", help="gallery file (created when missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="answer 'unknown' below this cosine score (default: the gallery's own, else none)")
    parser.add_argument("--top-k", type=int, default=5, help="speakers listed per answer (default: 5)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="request size limit (default: 10)")


def run(args: argparse.Namespace) -> int:
    from spkid.app.serve import serve

    serve(args.model, args.gallery, host=args.host, port=args.port, threshold=args.threshold, top_k=args.top_k,
          max_upload_mb=args.max_upload_mb)
    return 0
