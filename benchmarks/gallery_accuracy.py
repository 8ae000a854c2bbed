"""Identification through an enrolment gallery on real speech (libri251), next to the classifier head.

    python benchmarks/accuracy.py --protocol libri251 --out runs/libri251      # train once (saves a run dir)
    python benchmarks/gallery_accuracy.py --model runs/libri251                # or an exported .onnx
    python benchmarks/gallery_accuracy.py --model runs/ens/seed-0 runs/ens/seed-1 ...  # an ensemble

The libri251 protocol and its data code are :func:`benchmarks.accuracy.libri_sets` (../shared/data/README.md):
the first 70% of each of the 251 files is training audio, the last 30% gives the 251 test segments. Each
speaker is enrolled in a :class:`spkid.search.gallery.Gallery` from its whole training part (the validation tail
that ``accuracy.py`` holds out included), as consecutive non-overlapping ``--window``-second windows of its
features (the last, shorter piece too when at least half a window long), and each test segment is
identified by cosine similarity to the speakers' centroids. Printed: gallery top-1 / top-5 with window
enrolment and with one whole-part embedding per speaker, the classifier head's top-1 / top-5 on the same
segments, and the equal error rate of the segments' verification trials against every centroid. With several
``--model`` (e.g. the members of ``accuracy.py --ensemble``), each enrols its own gallery and the members'
cosine scores are averaged (posteriors for the head, as ``accuracy.py`` does). The last line is
``gallery_top1=<percent> head_top1=<percent>``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import DATA, libri_sets, load_model  # noqa: E402  (puts the repo on sys.path too)

from spkid.search.gallery import Gallery  # noqa: E402
from spkid.training.evaluation import average_posteriors  # noqa: E402
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
    """(top-1, top-5) of (N, C) ``scores`` whose columns are speakers ``columns``, for ``test``'s labels
    (top-C for top-5 when C < 5)."""
    col = {s: j for j, s in enumerate(columns)}
    y = np.array([col[test.speakers[i]] for i in test.labels])
    return topk_accuracy(scores, y, 1), topk_accuracy(scores, y, min(5, scores.shape[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, nargs="+",
                    help="run directory / checkpoint (either backend) or .onnx; several: an ensemble whose "
                         "members' cosine scores (and softmax posteriors) are averaged")
    ap.add_argument("--window", type=float, default=3.0, help="enrolment window in seconds (default: 3)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)

    embedders = [load_model(m) for m in args.model]
    fc = embedders[0].feature_config
    for m, e in zip(args.model[1:], embedders[1:]):
        if e.feature_config != fc:
            ap.error(f"{m}: its features {e.feature_config} differ from {args.model[0]}'s {fc}")
    t0 = time.perf_counter()
    config = embedders[0].config
    train, _, test = libri_sets(args.data / "librispeech-251", fc, config, val_seconds=0.0)
    print(f"libri251: {len(train)} training parts, {len(test)} test segments, {train.n_classes} speakers; "
          f"features {time.perf_counter() - t0:.1f} s; "
          + ", ".join(f"model {e.backend} {e.model_name} ({len(e.speakers)} training speakers)" for e in embedders))

    t0 = time.perf_counter()
    size = int(round(args.window / fc.frame_shift))
    kinds = {f"gallery, {args.window:g} s windows": size, "gallery, whole training part": None}
    truth = [test.speakers[i] for i in test.labels]
    scores: dict[str, list] = {name: [] for name in kinds}  # per gallery kind, one (Q, S) matrix per model
    trials, logits = [], []
    for embedder in embedders:
        test_emb = embedder.embed(test.features)
        for name, frames in kinds.items():
            gallery = gallery_of(embedder, train, frames)
            scores[name].append(gallery.centroid_scores(test_emb))  # columns: gallery.speakers (sorted)
            if frames:
                trials.append(gallery.trial_scores(test_emb, truth))
                n_enrolled, columns = gallery.n_utterances(), gallery.speakers
        if set(test.speakers) <= set(embedder.speakers) and embedder.speakers == embedders[0].speakers:
            logits.append(embedder.logits(test.features))
    rows = {name: topk(np.mean(mats, axis=0), columns, test) for name, mats in scores.items()}
    head = None
    if len(logits) == len(embedders):
        head = rows["classifier head (softmax)"] = topk(average_posteriors(logits), embedders[0].speakers, test)
    eer, _ = compute_eer(np.mean([t[0] for t in trials], axis=0), trials[0][1])
    print(f"embedding and scoring {time.perf_counter() - t0:.1f} s; {n_enrolled} enrolment windows"
          + (f"; ensemble of {len(embedders)} (averaged scores)" if len(embedders) > 1 else ""))
    for name, (t1, t5) in rows.items():
        print(f"  {name:<32} top-1 {100 * t1:6.2f}%  top-5 {100 * t5:6.2f}%")
    print(f"  verification EER of the test segments against every window-enrolled centroid: {100 * eer:.2f}%")
    first = next(iter(rows.values()))[0]
    print(f"gallery_top1={100 * first:.2f} head_top1=" + (f"{100 * head[0]:.2f}" if head else "n/a"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
