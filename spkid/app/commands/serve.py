"""``spkid serve --model CKPT_OR_ONNX --gallery G [--host 127.0.0.1] [--port 8000] [--workers N] [--token T]``.

Serves the JSON API (``/enroll``, ``/identify`` (one clip or a batch), ``DELETE /speakers/NAME``, ``/speakers``,
``/health``) and a one-page UI at ``/``; see :mod:`spkid.app.serve.app`. Runs under gunicorn with ``--workers``
processes of ``--threads`` threads (:mod:`spkid.app.serve`); with more than one worker the gallery must be a
SQLite ``G.db``, which every worker shares (an enrolment through one is identified by the others). A gallery
file is created on the first enrolment. ``--token`` (better: ``SPKID_TOKEN``, which ``ps`` does not show)
makes enrolling and deleting need ``Authorization: Bearer <token>``; listening beyond loopback without one
is refused unless ``--insecure``.
"""
from __future__ import annotations

import argparse

from spkid.app.options import add_index_argument

NAME = "serve"
HELP = "HTTP identification service with a web page (enrol / identify / delete speakers)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT_OR_ONNX", help="run directory, checkpoint or .onnx")
    parser.add_argument("--gallery", required=True, metavar="G",
                        help="gallery: G.db (SQLite, shared by the workers) or G (G.json + G.npz); created when missing")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="answer 'unknown' below this cosine score (default: the gallery's own, else none)")
    parser.add_argument("--top-k", type=int, default=5, help="speakers listed per answer (default: 5)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="request size limit (default: 10)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes (default: 1; >1 needs G.db)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default: 4)")
    parser.add_argument("--token", default=None,
                        help="require 'Authorization: Bearer TOKEN' to enrol and delete (default: $SPKID_TOKEN)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without a token (anyone who reaches it may enrol)")
    parser.add_argument("--server", choices=("gunicorn", "werkzeug"), default="gunicorn",
                        help="WSGI server (default: gunicorn; werkzeug: the one-process development server)")
    add_index_argument(parser)


def run(args: argparse.Namespace) -> int:
    from spkid.app.serve import serve

    serve(args.model, args.gallery, host=args.host, port=args.port, threshold=args.threshold, top_k=args.top_k,
          max_upload_mb=args.max_upload_mb, workers=args.workers, threads=args.threads, token=args.token,
          insecure=args.insecure, index=args.index, server=args.server)
    return 0
