"""``spkid embed --model RUN --cache DIR | --waves DIR | --data ROOT [--split all] --out emb.npz``.

Writes one embedding per utterance and the mean embedding of each speaker to a ``.npz`` and the labels
as JSON beside it (``emb.json``); the format is :mod:`spkid.inference.embeddings` (read it back with
:func:`~spkid.inference.embeddings.load_embeddings`).
"""
from __future__ import annotations

import argparse

from spkid.app.options import add_data_arguments, add_progress_argument, load_split

NAME = "embed"
HELP = "Speaker embeddings (per utterance and per-speaker means) from a trained model."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN", help="run directory, checkpoint .json or state file")
    add_data_arguments(parser)
    parser.add_argument("--split", default="all", choices=["all", "train", "val", "test"], help="utterances to embed")
    parser.add_argument("--out", required=True, metavar="NPZ", help="output .npz (labels also in .json beside it)")
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    from spkid.errors import SplitError
    from spkid.inference.embedder import load_embedder
    from spkid.inference.embeddings import Embeddings, save_embeddings

    emb = load_embedder(args.model)
    parts = []
    for split in (["train", "val", "test"] if args.split == "all" else [args.split]):
        part = load_split(args, split, feature_config=emb.feature_config, speakers="all", progress=not args.no_progress)
        if part is not None:
            parts.append(part)
    if not parts:
        raise SplitError("no usable utterances to embed", path=args.cache or args.waves or args.data)
    result = Embeddings.from_labels(emb.embed([f for p in parts for f in p.features]),
                                    [i for p in parts for i in p.ids],
                                    [p.speakers[i] for p in parts for i in p.labels], model=str(args.model))
    out = save_embeddings(args.out, result)
    print(f"{len(result)} utterances, {len(result.speakers)} speakers, {result.dim}-d embeddings -> {out}")
    return 0
