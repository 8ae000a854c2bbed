"""The demo: its presets and the whole pipeline behind ``spkid demo``.

1. data: the built-in synthetic corpus (:mod:`spkid.data.synthetic`; 8 speakers x 24 clips) or a dataset
   folder (any layout :func:`spkid.data.layouts.registry.load_dataset` detects, e.g. FSDD or one folder per speaker);
2. manifest (seeded train/val/test split) and feature cache (:mod:`spkid.data.cache`);
3. training a small model with the chosen backend (:func:`spkid.backends.get_backend`);
4. closed-set evaluation (top-1 / top-5) on the held-out test clips;
5. enrolment of every speaker's training clips in a :class:`~spkid.search.gallery.Gallery` (embeddings from
   :func:`spkid.inference.embedder.load_embedder`) and identification of a few test clips by cosine similarity;
6. figures: learning curves, confusion matrix, embedding map, attention over a spectrogram.

The presets (:data:`DEMO_OVERRIDES`, :data:`DEMO_TRAINING`, :func:`demo_train_config`) size the models
for about a minute of training on two CPU cores; ``examples/quickstart.py`` uses them too. Accuracy on the
synthetic corpus only shows that the pipeline learns; it says nothing about real speakers.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

__all__ = ["DEMO_OVERRIDES", "DEMO_TRAINING", "demo_train_config", "demo_dataset", "identification_table",
           "run_demo"]

# Small-but-not-tiny models: about a minute of training on two CPU cores for the default corpus.
DEMO_OVERRIDES: dict[str, dict] = {
    "vgg_attention": {"vgg": {"channels": (8, 16, 32, 32)}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
    "resnet18": {"resnet": {"width": 8}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
    "resnet50": {"resnet": {"width": 4}, "attention": {"hops": 2, "d_a": 32}, "embedding_dim": 32},
}
DEMO_TRAINING = {"batch_size": 16, "crop_frames": 200, "lr": 3e-3, "plateau_patience": 4}


def demo_train_config(model: str = "vgg_attention", *, epochs: int = 15, seed: int = 0, tiny: bool = False):
    """The demo's :class:`~spkid.training.config.TrainConfig` for ``model`` (``tiny``: the even smaller
    :data:`spkid.models.specs.TINY_OVERRIDES` architecture, for smoke tests)."""
    from spkid.models.specs import TINY_OVERRIDES
    from spkid.training.config import TrainConfig

    overrides = (TINY_OVERRIDES if tiny else DEMO_OVERRIDES)[model]
    return TrainConfig(model=model, model_overrides=overrides, epochs=epochs, seed=seed, **DEMO_TRAINING)


def _step(i: int, text: str) -> None:
    print(f"\n[{i}/6] {text}", flush=True)


def demo_dataset(out: Path, *, data=None, layout: str = "auto", speakers: int = 8, utterances: int = 24,
                 seed: int = 0, max_per_speaker: int | None = None, progress: bool = True):
    """(manifest, cache key) of the synthetic corpus (made under ``out/corpus`` when missing) or of the
    dataset folder ``data``; a 70/10/20 seeded split, at most ``max_per_speaker`` clips of each speaker
    per split."""
    from spkid.errors import SplitError
    from spkid.data.manifest import Manifest
    from spkid.data.layouts.registry import load_dataset

    if data:
        root = Path(data).resolve()
        key = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
        manifest = load_dataset(root, layout, val=0.1, test=0.2, seed=seed)
        print(f"dataset {root}")
    else:
        from spkid.data.synthetic import make_corpus

        key = f"synthetic-seed{seed}-{speakers}x{utterances}"
        root = Path(out) / "corpus" / key
        if len(list(root.rglob("*.wav"))) != speakers * utterances:
            make_corpus(root, n_speakers=speakers, utterances_per_speaker=utterances, seed=seed, progress=progress)
        print(f"synthetic corpus: {speakers} speakers x {utterances} clips in {root}")
        manifest = load_dataset(root, "folders", val=0.1, test=0.2, seed=seed)
    if max_per_speaker:
        import numpy as np

        rng = np.random.default_rng(seed)
        keep = []
        for split in ("train", "val", "test"):
            for speaker in manifest.speakers:
                utts = [u for u in manifest.split(split) if u.speaker == speaker]
                keep += [utts[i] for i in sorted(rng.permutation(len(utts))[:max_per_speaker])]
        manifest = Manifest(manifest.root, tuple(sorted(keep, key=lambda u: u.path)), notes=manifest.notes)
    if not manifest.split("test"):
        raise SplitError("the data set has no test clips to evaluate on", path=manifest.root)
    return manifest, key


def identification_table(gallery, embedder, test, k: int) -> tuple[list[str], float]:
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


def run_demo(out="spkid_out/demo", *, backend: str = "torch", model: str = "vgg_attention", data=None,
             layout: str = "auto", max_per_speaker: int | None = None, speakers: int = 8, utterances: int = 24,
             epochs: int = 15, seed: int = 0, show: int = 8, progress: bool = True) -> dict:
    """Run the six steps, printing as it goes; everything lands in ``out``. Returns the metrics that
    are also written to ``out/metrics.json``."""
    import numpy as np

    from spkid.app import plots
    from spkid.backends import get_backend
    from spkid.data.featstore import build_feature_store
    from spkid.data.featuresets import cache_feature_sets
    from spkid.data.manifest import write_manifest
    from spkid.features.config import FeatureConfig
    from spkid.inference.embedder import load_embedder
    from spkid.search.binding import gallery_metadata
    from spkid.search.gallery import Gallery
    from spkid.training.checkpoints import atomic_write_json  # numpy-aware

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = get_backend(backend)

    _step(1, "data and split")
    manifest, key = demo_dataset(out, data=data, layout=layout, speakers=speakers, utterances=utterances, seed=seed,
                                 max_per_speaker=max_per_speaker, progress=progress)
    print(manifest.summary())
    write_manifest(out / "manifest.txt", manifest)

    _step(2, "features (40 log-mel bands, 25 ms / 10 ms) -> feature store")
    cache_dir = out / "cache" / key
    print(build_feature_store(manifest, cache_dir, FeatureConfig(), progress=progress).summary())
    train, val, test = cache_feature_sets(cache_dir, seed, progress)

    _step(3, f"training {model} ({backend}, demo size) for {epochs} epochs")
    config = demo_train_config(model, epochs=epochs, seed=seed)
    run_dir = out / "run"
    if run_dir.exists():  # a previous demo run: start afresh
        shutil.rmtree(run_dir)
    print(f"{len(train)} training clips, {len(val)} validation clips, {train.n_classes} speakers")
    trainer.fit(config, train, val, run_dir, progress=progress)

    _step(4, "evaluation on held-out test clips (best checkpoint)")
    report = trainer.evaluate(run_dir, test)
    print(f"top-1 {100 * report['top1']:.1f}%   top-5 {100 * report['top5']:.1f}%   "
          f"({report['n']} test clips, chance {100 / train.n_classes:.1f}%)")

    _step(5, "enrolment (embeddings of the training clips) and identification of test clips")
    embedder = load_embedder(run_dir)
    # bound to its model like `spkid enroll`'s galleries, so `spkid identify --model RUN` accepts it
    gallery = Gallery(metadata=gallery_metadata(embedder, run_dir))
    train_emb = embedder.embed(train.features)
    for c, speaker in enumerate(train.speakers):
        idx = np.flatnonzero(train.labels == c)
        gallery.enroll(speaker, train_emb[idx], ids=[train.ids[i] for i in idx])
    gallery_path = gallery.save(out / "gallery")
    rows, gallery_acc = identification_table(gallery, embedder, test, show)
    print("\n".join(rows))
    print(f"nearest-centroid identification of all {len(test)} test clips: top-1 {100 * gallery_acc:.1f}%")

    _step(6, "figures")
    figs = out / "plots"
    all_sets = [s for s in (train, val, test) if s is not None]
    all_emb = np.concatenate([train_emb] + [embedder.embed(s.features) for s in all_sets[1:]])
    who = [s.speakers[i] for s in all_sets for i in s.labels]
    clip = int(np.argmax([len(f) for f in test.features[: max(1, show)]]))
    written = plots.evaluation_figures(
        figs, history=run_dir / "history.csv", confusion=np.asarray(report["confusion"]),
        speakers=list(test.speakers), embeddings=all_emb, embedding_labels=who, features=test.features[clip],
        attention=embedder.attention(test.features[clip]), frame_shift=embedder.feature_config.frame_shift,
        title=f"{model} ({backend}) on {key}", seed=seed)
    metrics = {"backend": backend, "model": model, "data": key, "epochs": epochs,
               "test_top1": report["top1"], "test_top5": report["top5"], "n_test": report["n"],
               "gallery_top1": gallery_acc, "per_speaker": report["per_speaker"],
               "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out / "metrics.json", metrics)

    print(f"\ndone in {metrics['seconds']:.0f} s; written under {out}:")
    for label, path in [("checkpoints, history.csv", run_dir), ("feature cache", cache_dir),
                        ("manifest", out / "manifest.txt"), ("gallery", gallery_path),
                        ("metrics", out / "metrics.json")] + [("figure", p) for p in written]:
        print(f"  {label:<26} {path}")
    return metrics
