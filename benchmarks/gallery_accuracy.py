"""Identification through an enrolment gallery on real speech (libri251), next to the classifier head.

    python benchmarks/accuracy.py --protocol libri251 --out runs/libri251      # train once (saves a run dir)
    python benchmarks/gallery_accuracy.py --model runs/libri251                # or an exported .onnx

The libri251 protocol and its data code are :func:`benchmarks.accuracy.libri_sets` (../shared/data/README.md):
the first 70% of each of the 251 files is training audio, the last 30% gives the 251 test segments. Each
speaker is enrolled in a :class:`spkid.gallery.Gallery` from its whole training part (the validation tail
that ``accuracy.py`` holds out included), as consecutive non-overlapping ``--window``-second windows of its
features (the last, shorter piece too when at least half a window long), and each test segment is
identified by cosine similarity to the speakers' centroids. Printed: gallery top-1 / top-5 with window
enrolment and with one whole-part embedding per speaker, the classifier head's top-1 / top-5 on the same
segments, and the equal error rate of the segments' verification trials against every centroid. The last
line is ``gallery_top1=<percent> head_top1=<percent>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import DATA, FEATURES, libri_sets  # noqa: E402  (puts the repo on sys.path too)

from spkid.gallery import Gallery  # noqa: E402
from spkid.inference import load_embedder  # noqa: E402
from spkid.metrics import compute_eer, topk_accuracy  # noqa: E402


def windows(features: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive ``size``-frame pieces of (T, n_mels) features; a last piece shorter than ``size // 2``
    is dropped unless it is the only one."""
    pieces = [features[i : i + size] for i in range(0, len(features), size)]
    return [p for p in pieces if len(p) >= size // 2] or pieces[:1]


def gallery_of(embedder, train, size: int | None) -> Gallery:
    """One speaker per training utterance: enrolled from its windows (``size`` frames) or whole (None)."""
    gallery = Gallery(metadata={"model": embedder.model_name, "feature_config": embedder.feature_config.to_dict()})
    for feats, label, ident in zip(train.features, train.labels, train.ids):
        pieces = windows(feats, size) if size else [feats]
        gallery.enroll(train.speakers[label], embedder.embed(pieces),
                       ids=[f"{ident}@{i}" for i in range(len(pieces))])
    return gallery


def topk(scores: np.ndarray, columns, test) -> tuple[float, float]:
    """(top-1, top-5) of (N, C) ``scores`` whose columns are speakers ``columns``, for ``test``'s labels."""
    col = {s: j for j, s in enumerate(columns)}
    y = np.array([col[test.speakers[i]] for i in test.labels])
    return topk_accuracy(scores, y, 1), topk_accuracy(scores, y, 5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run directory / checkpoint (either backend) or .onnx")
    ap.add_argument("--window", type=float, default=3.0, help="enrolment window in seconds (default: 3)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)

    embedder = load_embedder(args.model)
    fc = embedder.feature_config
    if fc != FEATURES["libri251"]:
        print(f"note: the model's features differ from accuracy.py's libri251 features: {fc}")
    t0 = time.perf_counter()
    config = dataclasses.replace(embedder.config, noise_copies=0)
    train, _, test = libri_sets(args.data / "librispeech-251", fc, config, val_seconds=0.0)
    print(f"libri251: {len(train)} training parts, {len(test)} test segments, {train.n_classes} speakers; "
          f"features {time.perf_counter() - t0:.1f} s; model {embedder.backend} {embedder.model_name} "
          f"({len(embedder.speakers)} training speakers)")

    t0 = time.perf_counter()
    test_emb = embedder.embed(test.features)
    size = int(round(args.window / fc.frame_shift))
    rows = {}
    for name, frames in ((f"gallery, {args.window:g} s windows", size), ("gallery, whole training part", None)):
        gallery = gallery_of(embedder, train, frames)
        rows[name] = topk(gallery.centroid_scores(test_emb), gallery.speakers, test)
        if frames:
            eer, _ = compute_eer(*gallery.trial_scores(test_emb, [test.speakers[i] for i in test.labels]))
            n_enrolled = gallery.n_utterances()
    head = None
    if set(test.speakers) <= set(embedder.speakers):
        head = rows["classifier head (softmax)"] = topk(embedder.logits(test.features), embedder.speakers, test)
    print(f"embedding and scoring {time.perf_counter() - t0:.1f} s; {n_enrolled} enrolment windows")
    for name, (t1, t5) in rows.items():
        print(f"  {name:<32} top-1 {100 * t1:6.2f}%  top-5 {100 * t5:6.2f}%")
    print(f"  verification EER of the test segments against every window-enrolled centroid: {100 * eer:.2f}%")
    first = next(iter(rows.values()))[0]
    print(f"gallery_top1={100 * first:.2f} head_top1=" + (f"{100 * head[0]:.2f}" if head else "n/a"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
