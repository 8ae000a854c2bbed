"""``spkid embed --model RUN --cache DIR | --data ROOT [--split all] --out emb.npz``.

Writes one embedding per utterance and the mean embedding of each speaker to a ``.npz`` (no pickle:
``embeddings`` (N, E), ``ids`` (N,), ``speaker_of`` (N,), ``speakers`` (S,), ``speaker_embeddings`` (S, E))
and the same labels as JSON beside it (``emb.json``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "embed"
HELP = "Speaker embeddings (per utterance and per-speaker means) from a trained model."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.app.commands.train import add_data_arguments

    parser.add_argument("--model", required=True, metavar="RUN", help="run directory, checkpoint .json or state file")
    add_data_arguments(parser)
    parser.add_argument("--split", default="all", choices=["all", "train", "val", "test"], help="utterances to embed")
    parser.add_argument("--out", required=True, metavar="NPZ", help="output .npz (labels also in .json beside it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from spkid.errors import SplitError
    from spkid.inference.embedder import load_embedder
    from spkid.data.sampler import FeatureSet
    from spkid.fileio import atomic_write
    from spkid.training.checkpoints import atomic_write_json
    from spkid.app.commands.train import load_split

    emb = load_embedder(args.model)
    parts = []
    for split in (["train", "val", "test"] if args.split == "all" else [args.split]):
        part = load_split(args, split, feature_config=emb.feature_config, speakers="all", progress=not args.no_progress)
        if part is not None:
            parts.append(part)
    if not parts:
        raise SplitError("no usable utterances to embed", path=args.cache or args.data)
    who = [p.speakers[i] for p in parts for i in p.labels]
    names = sorted(set(who))
    feats = [f for p in parts for f in p.features]
    ids = [i for p in parts for i in p.ids]
    vectors = emb.embed(feats)
    speaker_of = np.asarray([names.index(s) for s in who], dtype=np.int64)
    means = np.stack([vectors[speaker_of == k].mean(axis=0) for k in range(len(names))]).astype(np.float32)
    out = Path(args.out)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, embeddings=vectors, ids=np.asarray(ids, dtype=str), speaker_of=speaker_of,
                     speakers=np.asarray(names, dtype=str), speaker_embeddings=means)

    atomic_write(out, write)
    atomic_write_json(out.with_suffix(".json"), {"model": str(args.model), "ids": ids, "speakers": names,
                                                 "speaker_of": speaker_of.tolist(), "dim": int(vectors.shape[1])})
    print(f"{len(ids)} utterances, {len(names)} speakers, {vectors.shape[1]}-d embeddings -> {out}")
    return 0
