"""Speaker embeddings of a data set from a trained checkpoint, saved as a ``.npz``.

The data come from a feature cache (``spkid prepare`` / the training examples) or a dataset folder
(any layout ``spkid.data.splits.load_dataset`` detects; audio is loaded and featurised with the checkpoint's
own feature settings). The ``.npz`` holds ``embeddings`` (N, E) float32, ``ids`` (N,) utterance paths and
``speakers`` (N,) their speakers -- the input of ``closest_celeb.py --embeddings``.

    python examples/extract_embeds.py runs/vox1/run --cache runs/vox1/cache --split test --out vox1_test.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="run directory, checkpoint .json or state file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="feature cache folder")
    src.add_argument("--data", help="dataset folder")
    parser.add_argument("--split", choices=["all", "train", "val", "test"], default="all")
    parser.add_argument("--out", default="embeddings.npz", help="output .npz (default embeddings.npz)")
    args = parser.parse_args(argv)

    import numpy as np

    from spkid.inference.embedder import embed_files, load_embedder
    from spkid.fileio import atomic_write

    embedder = load_embedder(args.checkpoint)
    print(f"loaded {embedder.backend} {embedder.model_name} ({len(embedder.speakers)} training speakers) "
          f"from {args.checkpoint}")
    split = None if args.split == "all" else args.split
    if args.cache:
        from spkid.data.cache import FeatureCache

        cache = FeatureCache(args.cache, config=embedder.feature_config)  # refuses other feature settings
        utts = cache.utterances(split)
        print(f"embedding {len(utts)} cached utterances of {args.cache}")
        vectors = embedder.embed([cache.load(u) for u in utts])
        ids, speakers = [u.path for u in utts], [u.speaker for u in utts]
    else:
        from spkid.data.splits import load_dataset

        manifest = load_dataset(args.data)
        utts = [u for u in manifest if split is None or u.split == split]
        print(f"embedding {len(utts)} audio files of {args.data}")
        vectors, ok, failed = embed_files([manifest.path_of(u) for u in utts], embedder, progress=True)
        for path, why in failed:
            print(f"skipped {path}: {why}")
        who = {str(manifest.path_of(u)): u for u in utts}
        ids, speakers = [who[p].path for p in ok], [who[p].speaker for p in ok]

    out = Path(args.out)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, embeddings=vectors, ids=np.asarray(ids, dtype=str), speakers=np.asarray(speakers, dtype=str))

    atomic_write(out, write)
    print(f"wrote {out}: {len(ids)} x {vectors.shape[1]} embeddings of {len(set(speakers))} speakers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
