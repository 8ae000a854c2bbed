"""Speaker embeddings of a data set from a trained checkpoint, saved as a ``.npz``.

The data come from a feature store (``spkid prepare`` / the training examples) or a dataset folder
(any layout ``spkid.data.layouts.registry.load_dataset`` detects; audio is loaded and featurised with the checkpoint's
own feature settings). The ``.npz`` (and ``.json`` beside it) is the file ``spkid embed`` writes
(:mod:`spkid.inference.embeddings`: per-utterance ``embeddings``, ``ids``, ``speaker_of`` into ``speakers``,
and per-speaker means) -- the input of ``closest_celeb.py --embeddings``.

    python examples/extract_embeds.py runs/vox1/run --cache runs/vox1/cache --split test --out vox1_test.npz
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="run directory, checkpoint .json or state file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="feature store (or older per-utterance cache) folder")
    src.add_argument("--data", help="dataset folder")
    parser.add_argument("--split", choices=["all", "train", "val", "test"], default="all")
    parser.add_argument("--out", default="embeddings.npz", help="output .npz (default embeddings.npz)")
    args = parser.parse_args(argv)

    import numpy as np

    from spkid.inference.embedder import embed_files, load_embedder
    from spkid.inference.embeddings import Embeddings, save_embeddings

    embedder = load_embedder(args.checkpoint)
    print(f"loaded {embedder.backend} {embedder.model_name} ({len(embedder.speakers)} training speakers) "
          f"from {args.checkpoint}")
    split = None if args.split == "all" else args.split
    if args.cache:
        from spkid.data.featuresets import load_feature_set

        parts = [load_feature_set(sp, cache=args.cache, feature_config=embedder.feature_config,  # refuses other
                                  speakers="all", progress=False)  # feature settings; streams a feature store
                 for sp in ([split] if split else ["train", "val", "test"])]
        parts = [p for p in parts if p is not None]
        print(f"embedding {sum(len(p) for p in parts)} cached utterances of {args.cache}")
        vectors = np.concatenate([embedder.embed(p.features) for p in parts]) if parts else None
        ids = [i for p in parts for i in p.ids]
        speakers = [p.speakers[k] for p in parts for k in p.labels]
    else:
        from spkid.data.layouts.registry import load_dataset

        manifest = load_dataset(args.data)
        utts = [u for u in manifest if split is None or u.split == split]
        print(f"embedding {len(utts)} audio files of {args.data}")
        vectors, ok, failed = embed_files([manifest.path_of(u) for u in utts], embedder, progress=True)
        for path, why in failed:
            print(f"skipped {path}: {why}")
        who = {str(manifest.path_of(u)): u for u in utts}
        ids, speakers = [who[p].path for p in ok], [who[p].speaker for p in ok]

    if not ids:
        print("nothing to embed")
        return 1
    result = Embeddings.from_labels(vectors, ids, speakers, model=str(args.checkpoint))
    out = save_embeddings(args.out, result)
    print(f"wrote {out}: {len(result)} x {result.dim} embeddings of {len(result.speakers)} speakers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
