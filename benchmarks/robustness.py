"""Identification under noise, babble, reverberation and a telephone channel (libri251 or fsdd), per model.

    python benchmarks/accuracy.py --protocol libri251 --out runs/libri251        # train once (a run dir)
    python benchmarks/robustness.py --model runs/libri251                        # the table below
    python benchmarks/robustness.py --model runs/a runs/b --protocol fsdd --seed 1 --limit 50

The test audio of a protocol (../shared/data/README.md) -- the libri251 test segments (the last 30% of each
file in 3 s pieces, cut exactly as :func:`benchmarks.accuracy.libri_sets` does), or with ``--protocol fsdd``
the fsdd test takes 0-4 -- is identified clean and under each degradation of :data:`CONDITIONS`:

white noise at 20 / 10 / 5 / 0 dB, babble of 3 other test talkers at 10 dB, simulated rooms of RT60
0.3 / 0.6 / 0.9 s, the telephone band through 8 kHz with mu-law, and a mixture (``benchmarks/degrade.py``).

Each segment's degradation draws from its own generator ``np.random.default_rng([seed, condition, segment])``
(``condition`` its index in :data:`CONDITIONS`, ``segment`` its index in the full test list, so ``--limit``
keeps the same draws), independent of any training augmentation and of the validation copies of
``accuracy.py --val-degraded``. Degraded audio is featurised with each
model's own ``feature_config`` (at its rate); the clean row uses the very features of
``benchmarks/gallery_accuracy.py``.

Identification, as ``gallery_accuracy.py`` does (its functions): every speaker enrolled in a gallery from
its clean training audio (the whole 70% part for libri251, every take 5-49 for fsdd) in ``--window``-second
windows, each query labelled by cosine similarity to the centroids; and the classifier head's top-1 (n/a when
the model was trained on other speakers). ``--enrol-copies K`` also enrols K augmented copies of each
enrolment recording (:func:`enrolment_copies`). Several ``--model`` are evaluated separately, one block each.
Printed per model: condition x (gallery top-1, drop, head top-1, drop), the drops in points below clean.
The last line, for the first model, is ``clean_gallery_top1=<percent> worst_drop=<points>`` (the largest
gallery drop over the degraded conditions).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import DATA, data_root, feature_set, load_model, protocol_parts  # noqa: E402  (puts the repo on sys.path)
from gallery_accuracy import gallery_of, topk  # noqa: E402

from degrade import CONDITIONS, degrade  # noqa: E402
from spkid._strict import load_yaml_config  # noqa: E402
from spkid.audio.augment import AugmentConfig, Augmenter  # noqa: E402
from spkid.data.featuresets import FeatureSet  # noqa: E402
from spkid.features.api import fbank_from_config  # noqa: E402

ROOT = {"libri251": "librispeech-251", "fsdd": "fsdd"}
ROBUST_RECIPE = Path(__file__).resolve().parent / "recipes" / "libri251_robust.yaml"
ENROL_TAG = 0x454E52  # "ENR": augmented enrolment copies draw from [seed, ENROL_TAG, recording, copy]
UNIT = {"libri251": "segments", "fsdd": "files"}


def load_protocol(protocol: str, root: Path, fc, config):
    """(enrolment FeatureSet, test FeatureSet, test waveforms, enrolment waveforms), at ``fc.sr``, in
    protocol order."""
    # nothing held out for validation: libri251's whole 70% part enrols (as gallery_accuracy.py), fsdd's takes 5-49
    speakers, parts = protocol_parts(protocol, root, fc, dataclasses.replace(config, val_fraction=0.0), 0.0)
    train, test = feature_set(parts["train"], speakers, fc), feature_set(parts["test"], speakers, fc)
    return train, test, [y for y, _, _ in parts["test"]], [y for y, _, _ in parts["train"]]


def enrolment_copies(train: FeatureSet, waves, copies: int, fc, config, seed: int) -> FeatureSet:
    """``train`` plus ``copies`` augmented copies of each enrolment recording (multi-condition enrolment):
    the model's own training augmentation (``config.waveform_augment``, else libri251_robust.yaml's), copy
    ``k`` of recording ``i`` drawn from ``default_rng([seed, ENROL_TAG, i, k])``, babble from the other
    speakers' enrolment audio. Test audio is never read."""
    aug_config = config.waveform_augment
    if not aug_config.enabled:
        aug_config = AugmentConfig.from_dict(load_yaml_config(ROBUST_RECIPE)["waveform_augment"])
    augmenter = Augmenter(aug_config, sr=fc.sr)
    labels = np.asarray(train.labels)
    feats, labs, ids = list(train.features), list(labels), list(train.ids)
    for i, y in enumerate(waves):
        others = np.flatnonzero(labels != labels[i])
        for k in range(copies):
            rng = np.random.default_rng([seed, ENROL_TAG, i, k])
            pool = [waves[int(j)] for j in rng.choice(others, size=min(5, len(others)), replace=False)]
            feats.append(fbank_from_config(augmenter(y, rng, babble_pool=pool), fc))
            labs.append(labels[i])
            ids.append(f"{train.ids[i]}~{k}")
    return FeatureSet(feats, np.asarray(labs), train.speakers, fc, ids)


def degraded_features(cond: int, test: FeatureSet, waves, n: int, fc, seed: int) -> list[np.ndarray]:
    """Features (``fc``) of the first ``n`` test segments under condition ``cond`` (clean: the protocol's own);
    segment ``i`` draws from ``default_rng([seed, cond, i])`` (:func:`degrade.degrade`)."""
    if CONDITIONS[cond][1] is None:
        return list(test.features[:n])
    return [fbank_from_config(y, fc) for y in degrade(cond, waves, test.labels, fc.sr, seed, n=n)]


def evaluate(embedder, protocol: str, root: Path, window: float, seed: int, limit: int | None, cache: dict,
             query_seconds: float | None = None, enrol_copies: int = 0):
    """{condition name: (gallery top-1, head top-1 or None)} for one model, and (n used, n test).
    ``query_seconds``: each query is the first that many seconds of its test segment (degraded after the cut).
    ``enrol_copies``: enrol each speaker from its clean audio and that many augmented copies of it."""
    fc = embedder.feature_config
    key = (protocol, fc.to_json())
    if key not in cache:
        cache[key] = load_protocol(protocol, root, fc, embedder.config)
    train, test, waves, train_waves = cache[key]
    if enrol_copies:
        train = enrolment_copies(train, train_waves, enrol_copies, fc, embedder.config, seed)
    if query_seconds is not None:
        waves = [y[: int(round(query_seconds * fc.sr))] for y in waves]
        test = feature_set([(y, lab, ident) for y, lab, ident in zip(waves, test.labels, test.ids)], test.speakers, fc)
    n = len(test) if limit is None else min(limit, len(test))
    sub = FeatureSet(list(test.features[:n]), np.asarray(test.labels)[:n], test.speakers, fc, list(test.ids[:n]))
    gallery = gallery_of(embedder, train, int(round(window / fc.frame_shift)))
    head_ok = set(test.speakers) <= set(embedder.speakers)
    rows = {}
    for cond, (name, _) in enumerate(CONDITIONS):
        feats = degraded_features(cond, test, waves, n, fc, seed)
        g1 = topk(gallery.centroid_scores(embedder.embed(feats)), gallery.speakers, sub)[0]
        h1 = topk(embedder.logits(feats), embedder.speakers, sub)[0] if head_ok else None
        rows[name] = (g1, h1)
    return rows, (n, len(test), len(train))


def _pct(x):
    return "    n/a" if x is None else f"{100 * x:6.2f}%"


def _drop(x, clean):
    return "    n/a" if x is None else f"{100 * (clean - x):+7.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, nargs="+", action="extend",
                    help="run directory / checkpoint (either backend) or .onnx; several: each evaluated separately")
    ap.add_argument("--protocol", choices=list(ROOT), default="libri251")
    ap.add_argument("--seed", type=int, default=0, help="seed of the degradations' own generators (default: 0)")
    ap.add_argument("--limit", type=int, metavar="N", help="use only the first N test segments (smoke tests)")
    ap.add_argument("--window", type=float, default=3.0, help="enrolment window in seconds (default: 3)")
    ap.add_argument("--query-seconds", type=float, metavar="S",
                    help="identify the first S seconds of each test segment only (short queries; default: all)")
    ap.add_argument("--enrol-copies", type=int, default=0, metavar="K",
                    help="also enrol K augmented copies of each enrolment recording (multi-condition enrolment, "
                         "the model's training augmentation; default 0: clean enrolment only)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    if args.enrol_copies < 0:
        ap.error("--enrol-copies must be >= 0")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    if args.query_seconds is not None and not args.query_seconds > 0.05:
        ap.error("--query-seconds must be more than 0.05")
    root = data_root("robustness.py", args.data, ROOT[args.protocol])
    if root is None:
        return 2

    cache: dict = {}
    summary = None
    for path in args.model:
        embedder = load_model(path, args.protocol)
        t0 = time.perf_counter()
        rows, (n, n_test, n_train) = evaluate(embedder, args.protocol, root, args.window, args.seed, args.limit, cache,
                                              args.query_seconds, args.enrol_copies)
        clean_g, clean_h = rows["clean"]
        print(f"model {path} ({embedder.backend} {embedder.model_name}, {len(embedder.speakers)} training speakers): "
              f"{args.protocol}, {n_train} enrolment items, {n} of {n_test} test {UNIT[args.protocol]}, "
              f"{'' if args.query_seconds is None else f'first {args.query_seconds:g} s of each, '}"
              f"{f'{args.enrol_copies} augmented enrolment copies, ' if args.enrol_copies else ''}"
              f"seed {args.seed}, {time.perf_counter() - t0:.1f} s")
        print(f"  {'condition':<24} {'gallery top-1':>13} {'drop':>7}  {'head top-1':>10} {'drop':>7}")
        for name, (g1, h1) in rows.items():
            print(f"  {name:<24} {_pct(g1):>13} {_drop(g1, clean_g)}  {_pct(h1):>10} {_drop(h1, clean_h)}")
        if summary is None:
            worst = max(clean_g - g1 for name, (g1, _) in rows.items() if name != "clean")
            summary = f"clean_gallery_top1={100 * clean_g:.2f} worst_drop={100 * worst:.2f}"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
