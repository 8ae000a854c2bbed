"""The ``spkid`` command line.

Each subcommand lives in its own module under :mod:`spkid.app.commands` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Commands are thin: options they share (config
fields, data sources, gallery and progress options) come from :mod:`spkid.app.options`, the work from the
library (the demo's from :mod:`spkid.app.demo`); a command never imports another. Modules import a
backend only inside ``run`` and only when one is asked for, so ``spkid --help`` stays fast and framework-free.

Any :class:`~spkid.errors.SpkidError` ends the command with its message and exit status 2 -- never a
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from spkid.errors import SpkidError

# Order is the order shown in --help.
COMMANDS = [
    "demo",
    "features",
    "prepare",
    "train",
    "evaluate",
    "embed",
    "enroll",
    "identify",
    "gallery",
    "verify",
    "export",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    from spkid import __version__

    parser = argparse.ArgumentParser(
        prog="spkid", description="Speaker identification with deep CNNs and self-attention."
    )
    parser.add_argument("--version", action="version", version=f"spkid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module(f".commands.{name}", __package__)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SpkidError as exc:
        print(f"spkid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spkid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
