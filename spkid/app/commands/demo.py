"""``spkid demo``: the whole pipeline, end to end, in a few minutes on a laptop CPU.

Synthetic corpus (or ``--data DIR``) -> split and feature cache -> training a small model -> test
accuracy -> enrolment and identification -> figures; the steps and the presets are in
:mod:`spkid.app.demo`. Everything lands in ``--out`` (default ``./spkid_out/demo``). Accuracy on the
synthetic corpus only shows that the pipeline learns; it says nothing about real speakers.
"""
from __future__ import annotations

import argparse

from spkid.app.options import add_progress_argument

NAME = "demo"
HELP = "Run the whole pipeline (data, features, training, evaluation, enrolment, identification, plots)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.backends import BACKENDS
    from spkid.models.specs import MODEL_NAMES

    parser.add_argument("--backend", choices=list(BACKENDS), default="torch", help="deep-learning backend (default torch)")
    parser.add_argument("--model", choices=list(MODEL_NAMES), default="vgg_attention", help="architecture (small demo size)")
    parser.add_argument("--out", default="spkid_out/demo", metavar="DIR", help="output folder (default ./spkid_out/demo)")
    parser.add_argument("--data", metavar="DIR", help="your own dataset instead of the synthetic corpus "
                        "(folder per speaker, FSDD, VCTK, VoxCeleb, ...)")
    parser.add_argument("--layout", default="auto", help="dataset layout of --data (default: detect)")
    parser.add_argument("--max-per-speaker", type=int, metavar="N",
                        help="use at most N clips of each speaker per split (faster on big --data sets)")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic corpus: speakers (default 8)")
    parser.add_argument("--utterances", type=int, default=24, help="synthetic corpus: clips per speaker (default 24)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the corpus, split and training (default 0)")
    parser.add_argument("--show", type=int, default=8, metavar="K", help="test clips to identify in the table (default 8)")
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    from spkid.app.demo import run_demo

    run_demo(args.out, backend=args.backend, model=args.model, data=args.data, layout=args.layout,
             max_per_speaker=args.max_per_speaker, speakers=args.speakers, utterances=args.utterances,
             epochs=args.epochs, seed=args.seed, show=args.show, progress=not args.no_progress)
    return 0
