"""``spkid demo``: the whole pipeline, end to end, in a few minutes on a laptop CPU.

1. data: the built-in synthetic corpus (:mod:`spkid.data.synthetic`; 8 speakers x 24 clips) or ``--data DIR``
   (any layout :func:`spkid.data.splits.load_dataset` detects, e.g. FSDD or one folder per speaker);
2. manifest (seeded train/val/test split) and feature cache (:mod:`spkid.data.cache`);
3. training a small model with the chosen backend (``spkid_torch.train.fit`` / ``spkid_keras.train.fit``);
4. closed-set evaluation (top-1 / top-5) on the held-out test clips;
5. enrolment of every speaker's training clips in a :class:`~spkid.search.gallery.Gallery` (embeddings from
   :func:`spkid.inference.load_embedder`) and identification of a few test clips by cosine similarity;
6. figures: learning curves, confusion matrix, embedding map, attention over a spectrogram.

Everything lands in ``--out`` (default ``./spkid_out/demo``). Accuracy on the synthetic corpus only shows
that the pipeline learns; it says nothing about real speakers.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from pathlib import Path

NAME = "demo"
HELP = "Run the whole pipeline (data, features, training, evaluation, enrolment, identification, plots)."

# Small-but-not-tiny models: about a minute of training on two CPU cores for the default corpus.
DEMO_OVERRIDES: dict[str, dict] = {
    "vgg_attention": {"vgg": {"channels": (8, 16, 32, 32)}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
    "resnet18": {"resnet": {"width": 8}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
    "resnet50": {"resnet": {"width": 4}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
}
DEMO_TRAINING = {"batch_size": 16, "crop_frames": 200, "lr": 3e-3, "plateau_patience": 4}


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(i: int, text: str) -> None:
    print(f"\n[{i}/6] {text}", flush=True)


def _dataset(args: argparse.Namespace, out: Path, progress: bool):
    """(manifest, cache key) of the synthetic corpus or of ``--data``."""
    from spkid.errors import SplitError
    from spkid.data.splits import Manifest, load_dataset

    if args.data:
        root = Path(args.data).resolve()
        key = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
        manifest = load_dataset(root, args.layout, val=0.1, test=0.2, seed=args.seed)
        print(f"dataset {root}")
    else:
        from spkid.data.synthetic import make_corpus

        key = f"synthetic-seed{args.seed}-{args.speakers}x{args.utterances}"
        root = out / "corpus" / key
        if len(list(root.rglob("*.wav"))) != args.speakers * args.utterances:
            make_corpus(root, n_speakers=args.speakers, utterances_per_speaker=args.utterances, seed=args.seed,
                        progress=progress)
        print(f"synthetic corpus: {args.speakers} speakers x {args.utterances} clips in {root}")
        manifest = load_dataset(root, "folders", val=0.1, test=0.2, seed=args.seed)
    if args.max_per_speaker:
        import numpy as np

        rng = np.random.default_rng(args.seed)
        keep = []
        for split in ("train", "val", "test"):
            for speaker in manifest.speakers:
                utts = [u for u in manifest.split(split) if u.speaker == speaker]
                keep += [utts[i] for i in sorted(rng.permutation(len(utts))[: args.max_per_speaker])]
        manifest = Manifest(manifest.root, tuple(sorted(keep, key=lambda u: u.path)), notes=manifest.notes)
    if not manifest.split("test"):
        raise SplitError("the data set has no test clips to evaluate on", path=manifest.root)
    return manifest, key


def _identification_table(gallery, embedder, test, k: int) -> tuple[list[str], float]:
    """Rows of a text table for ``k`` test clips (one per speaker first) and the gallery's top-1 on all."""
    import numpy as np

    emb = embedder.embed(test.features)
    answers = gallery.identify(emb, top_k=3)
    truth = [test.speakers[i] for i in test.labels]
    acc = float(np.mean([a.speaker == t for a, t in zip(answers, truth)]))
    first = {}
    for i, t in enumerate(truth):
        first.setdefault(t, i)
    order = list(first.values()) + [i for i in range(len(truth)) if i not in first.values()]
    rows = [f"{'clip':<28} {'true':<10} {'closest speakers (cosine)':<42} closest enrolled clip"]
    for i in order[:k]:
        a = answers[i]
        cands = "  ".join(f"{m.speaker} {m.score:.2f}" for m in a.candidates)
        mark = "ok" if a.speaker == truth[i] else "WRONG"
        near = a.neighbours[0]
        rows.append(f"{Path(test.ids[i]).name[:28]:<28} {truth[i]:<10} {cands:<42} "
                    f"{Path(near.utterance).name} ({near.score:.2f})  {mark}")
    return rows, acc


def run(args: argparse.Namespace) -> int:
    import importlib

    import numpy as np

    from spkid.app import plots
    from spkid.backends import get_backend
    from spkid.data.cache import build_cache
    from spkid.features.config import FeatureConfig
    from spkid.training.config import TrainConfig
    from spkid.search.gallery import Gallery
    from spkid.inference.embedder import load_embedder
    from spkid.data.sampler import cache_feature_sets
    from spkid.data.splits import write_manifest
    from spkid.training.checkpoints import atomic_write_json

    t0 = time.perf_counter()
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_module = importlib.import_module(get_backend(args.backend).__name__ + ".train")

    _step(1, "data and split")
    manifest, key = _dataset(args, out, progress)
    print(manifest.summary())
    write_manifest(out / "manifest.txt", manifest)

    _step(2, "features (40 log-mel bands, 25 ms / 10 ms) -> cache")
    cache_dir = out / "cache" / key
    print(build_cache(manifest, cache_dir, FeatureConfig(), progress=progress).summary())
    train, val, test = cache_feature_sets(cache_dir, args.seed, progress)

    _step(3, f"training {args.model} ({args.backend}, demo size) for {args.epochs} epochs")
    config = TrainConfig(model=args.model, model_overrides=DEMO_OVERRIDES[args.model], epochs=args.epochs,
                         seed=args.seed, **DEMO_TRAINING)
    run_dir = out / "run"
    if run_dir.exists():  # a previous demo run: start afresh
        shutil.rmtree(run_dir)
    print(f"{len(train)} training clips, {len(val)} validation clips, {train.n_classes} speakers")
    train_module.fit(config, train, val, run_dir, progress=progress)

    _step(4, "evaluation on held-out test clips (best checkpoint)")
    report = train_module.evaluate(run_dir, test)
    print(f"top-1 {100 * report['top1']:.1f}%   top-5 {100 * report['top5']:.1f}%   "
          f"({report['n']} test clips, chance {100 / train.n_classes:.1f}%)")

    _step(5, "enrolment (embeddings of the training clips) and identification of test clips")
    embedder = load_embedder(run_dir)
    gallery = Gallery(metadata={"model": args.model, "backend": args.backend, "checkpoint": str(run_dir)})
    train_emb = embedder.embed(train.features)
    for c, speaker in enumerate(train.speakers):
        idx = np.flatnonzero(train.labels == c)
        gallery.enroll(speaker, train_emb[idx], ids=[train.ids[i] for i in idx])
    gallery_path = gallery.save(out / "gallery")
    rows, gallery_acc = _identification_table(gallery, embedder, test, args.show)
    print("\n".join(rows))
    print(f"nearest-centroid identification of all {len(test)} test clips: top-1 {100 * gallery_acc:.1f}%")

    _step(6, "figures")
    figs = out / "plots"
    all_sets = [s for s in (train, val, test) if s is not None]
    all_emb = np.concatenate([train_emb] + [embedder.embed(s.features) for s in all_sets[1:]])
    who = [s.speakers[i] for s in all_sets for i in s.labels]
    clip = int(np.argmax([len(f) for f in test.features[: max(1, args.show)]]))
    written = plots.evaluation_figures(
        figs, history=run_dir / "history.csv", confusion=np.asarray(report["confusion"]),
        speakers=list(test.speakers), embeddings=all_emb, embedding_labels=who, features=test.features[clip],
        attention=embedder.attention(test.features[clip]), frame_shift=embedder.feature_config.frame_shift,
        title=f"{args.model} ({args.backend}) on {key}", seed=args.seed)
    metrics = {"backend": args.backend, "model": args.model, "data": key, "epochs": args.epochs,
               "test_top1": report["top1"], "test_top5": report["top5"], "n_test": report["n"],
               "gallery_top1": gallery_acc, "per_speaker": report["per_speaker"],
               "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out / "metrics.json", metrics)

    print(f"\ndone in {metrics['seconds']:.0f} s; written under {out}:")
    for label, path in [("checkpoints, history.csv", run_dir), ("feature cache", cache_dir),
                        ("manifest", out / "manifest.txt"), ("gallery", gallery_path),
                        ("metrics", out / "metrics.json")] + [("figure", p) for p in written]:
        print(f"  {label:<26} {path}")
    return 0
