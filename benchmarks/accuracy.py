"""Closed-set speaker-identification accuracy on real speech, with the protocols of ../shared/data/README.md.

    python benchmarks/accuracy.py --protocol fsdd --backend torch --model vgg_attention
    python benchmarks/accuracy.py --protocol libri251 --backend keras --model vgg_attention --epochs 20
    python benchmarks/accuracy.py --protocol libri251 --backend torch --model vgg_attention \
        --config benchmarks/recipes/libri251_vgg.yaml

``--ensemble N`` trains N members with seeds ``seed .. seed+N-1`` (run dirs ``OUT/seed-S``), reports each
member, and classifies with the members' averaged posteriors (``spkid.inference.average_posteriors``).

A recipe YAML (``--config``) holds TrainConfig fields overriding the protocol's recipe, plus an optional
``features:`` mapping of FeatureConfig fields (e.g. ``normalize: null`` to keep the long-term spectrum,
for models with ``input_norm``); ``--normalize`` on the command line overrides both.

- fsdd: train on takes 5-49 of every digit/speaker (2,700 files), test on takes 0-4 (300 files).
- libri251: for each of the 251 files the first 70% of samples is training audio; the last 30% is cut
  into consecutive non-overlapping 3 s test segments (a shorter remainder is one segment only when no
  full segment fits).

Validation data (plateau rule, best-epoch choice) comes from the TRAINING audio only: 10% of the fsdd
training files (per speaker), or the last ``--val-seconds`` (at most a fifth) of each libri training part. The test
audio is touched once, at the end. Prints parameters, training time, top-1 / top-5; the last line is
``top1=<percent> top5=<percent>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spkid.audio.io import load_audio  # noqa: E402
from spkid.backends import get_backend  # noqa: E402
from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.training.config import TrainConfig
from spkid._strict import load_yaml_config
from spkid.features.api import fbank_from_config  # noqa: E402
from spkid.training.evaluation import average_posteriors, predict  # noqa: E402
from spkid.data.featuresets import FeatureSet, split_holdout  # noqa: E402
from spkid.training.evaluation import classification_report  # noqa: E402

DATA = REPO.parent / "shared" / "data"

# Small widths so that a 2-core CPU trains in minutes; chosen before looking at any test figure.
SMALL = {
    "vgg_attention": {"vgg": {"channels": [16, 32, 64, 128]}, "attention": {"hops": 4, "d_a": 64},
                      "embedding_dim": 128},
    "resnet18": {"resnet": {"width": 16}, "attention": {"hops": 4, "d_a": 64}, "embedding_dim": 128},
    "resnet50": {"resnet": {"width": 8}, "attention": {"hops": 4, "d_a": 64}, "embedding_dim": 128},
}
RECIPES = {
    "fsdd": dict(epochs=20, batch_size=32, lr=1e-3, crop_frames=100, plateau_patience=2, val_fraction=0.1,
                 gain_db=[-6.0, 6.0], time_masks=1, time_mask_frames=15, freq_masks=1, freq_mask_bins=5,
                 augment_prob=0.5, label_smoothing=0.1),
    "libri251": dict(epochs=15, batch_size=32, lr=1e-3, crop_frames=200, crops_per_utterance=8,
                     plateau_patience=2, gain_db=[-6.0, 6.0], time_masks=2, time_mask_frames=20, freq_masks=1,
                     freq_mask_bins=5, augment_prob=0.5, label_smoothing=0.1),
}
FEATURES = {"fsdd": FeatureConfig(sr=8000, n_fft=512, n_mels=40), "libri251": FeatureConfig(sr=16000, n_mels=40)}
NORMALIZE = {"mean": "mean", "meanvar": "meanvar", "none": None}


def fsdd_sets(root: Path, fc: FeatureConfig, config: TrainConfig):
    """(train, val, test) FeatureSets of the fsdd protocol; val = 10% of each speaker's training files."""
    name = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
    files = sorted(p for p in root.glob("*.wav") if name.fullmatch(p.name))
    speakers = tuple(sorted({name.fullmatch(p.name).group(2) for p in files}))
    parts: dict = {"train": ([], [], []), "test": ([], [], [])}
    for p in files:
        _, spk, idx = name.fullmatch(p.name).groups()
        y = load_audio(p, sr=fc.sr, min_duration=0.0)
        part = parts["test" if int(idx) < 5 else "train"]
        part[0].append(fbank_from_config(y, fc))
        part[1].append(speakers.index(spk))
        part[2].append(p.name)
    train = FeatureSet(*parts["train"][:2], speakers, fc, parts["train"][2])
    test = FeatureSet(*parts["test"][:2], speakers, fc, parts["test"][2])
    train, val = split_holdout(train, config.val_fraction, config.seed)
    return train, val, test


def libri_sets(root: Path, fc: FeatureConfig, config: TrainConfig, val_seconds: float):
    """(train, val, test) FeatureSets of the libri251 protocol (val = end of each training part)."""
    files = sorted(root.glob("*.flac"))
    speakers = tuple(sorted({p.name.split("-")[0] for p in files}))
    seg = 3 * fc.sr
    parts: dict = {"train": ([], [], []), "val": ([], [], []), "test": ([], [], [])}

    def add(split, y, spk, ident):
        parts[split][0].append(fbank_from_config(y, fc))
        parts[split][1].append(speakers.index(spk))
        parts[split][2].append(ident)

    for p in files:
        spk = p.name.split("-")[0]
        y = load_audio(p, sr=fc.sr, min_duration=0.0)
        cut = int(0.7 * len(y))
        train_y, test_y = y[:cut], y[cut:]
        segments = [test_y[i * seg : (i + 1) * seg] for i in range(len(test_y) // seg)] or [test_y]
        for i, s in enumerate(segments):
            add("test", s, spk, f"{p.name}#{i}")
        v = min(int(val_seconds * fc.sr), len(train_y) // 5)  # short files keep 80% for training
        if v >= fc.win_length:
            add("val", train_y[-v:], spk, f"{p.name}#val")
            train_y = train_y[:-v]
        add("train", train_y, spk, p.name)
    sets = {k: FeatureSet(*v[:2], speakers, fc, v[2]) if v[0] else None for k, v in parts.items()}
    return sets["train"], sets["val"], sets["test"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", choices=["fsdd", "libri251"], required=True)
    ap.add_argument("--backend", choices=["torch", "keras"], default="torch")
    ap.add_argument("--model", default="vgg_attention", choices=list(SMALL))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--crop-frames", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ensemble", type=int, default=1, metavar="N",
                    help="train N members (seeds seed..seed+N-1) and average their posteriors")
    ap.add_argument("--config", metavar="YAML", help="TrainConfig fields overriding the protocol's recipe")
    ap.add_argument("--val-seconds", type=float, default=1.5, help="libri251: training audio held out for val")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    ap.add_argument("--normalize", choices=list(NORMALIZE),
                    help="per-utterance feature normalisation (default: the recipe's, else mean; mean "
                         "subtraction also removes the long-term spectrum, a speaker cue)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs already in --out (an interrupted member resumes from its last "
                         "checkpoint; a finished one is only evaluated, and its train_time reads ~0)")
    args = ap.parse_args(argv)

    recipe = dict(RECIPES[args.protocol], model=args.model, model_overrides=SMALL[args.model], seed=args.seed)
    features: dict = {}
    if args.config:
        loaded = load_yaml_config(args.config)
        features = dict(loaded.pop("features", None) or {})
        recipe.update(loaded)
    for key in ("epochs", "batch_size", "lr", "crop_frames"):  # command-line flags beat the recipe
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    config = TrainConfig.from_dict(recipe)
    if args.normalize is not None:
        features["normalize"] = NORMALIZE[args.normalize]
    fc = FeatureConfig.from_dict({**FEATURES[args.protocol].to_dict(), **features})
    t0 = time.perf_counter()
    if args.protocol == "fsdd":
        train, val, test = fsdd_sets(args.data / "fsdd", fc, config)
    else:
        train, val, test = libri_sets(args.data / "librispeech-251", fc, config, args.val_seconds)
    t_feat = time.perf_counter() - t0
    print(f"{args.protocol}: {len(train)} train / {0 if val is None else len(val)} val / {len(test)} test "
          f"items, {train.n_classes} speakers; features {t_feat:.1f} s")
    print(f"config: {config.to_json()}")
    print(f"features: {fc.to_json()}")

    backend = get_backend(args.backend)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"spkid-{args.protocol}-{args.backend}-"))
    logits: dict[str, list] = {"val": [], "test": []}
    for k in range(args.ensemble):
        member = config if args.ensemble == 1 else dataclasses.replace(config, seed=config.seed + k)
        run_dir = out if args.ensemble == 1 else out / f"seed-{member.seed}"
        t0 = time.perf_counter()
        backend.fit(member, train, val, run_dir, resume=args.resume, progress=args.progress)
        t_train = time.perf_counter() - t0
        model, meta = backend.load_checkpoint(run_dir)  # best epoch by validation (last epoch without val)
        params = backend.count_params(model)
        t0 = time.perf_counter()
        forward = backend.forward_fn(model)
        for part, data in (("val", val), ("test", test)):
            if data is not None and len(data):
                logits[part].append(predict(forward, data.features, member, keys=("logits",))["logits"])
        t_eval = time.perf_counter() - t0
        val_note = (f" val_top1={100 * classification_report(logits['val'][-1], val.labels, val.speakers)['top1']:.2f}"
                    if logits["val"] else "")
        print(f"backend={args.backend} model={args.model} seed={member.seed} params={params['total']:,} "
              f"best_epoch={meta['epoch']} train_time={t_train:.0f}s eval_time={t_eval:.1f}s{val_note} "
              f"run_dir={run_dir}", flush=True)
        if args.ensemble > 1:
            rep = classification_report(logits["test"][-1], test.labels, test.speakers)
            print(f"member seed={member.seed}: top1={100 * rep['top1']:.2f} top5={100 * rep['top5']:.2f}", flush=True)
    if args.ensemble > 1 and logits["val"]:
        rep = classification_report(average_posteriors(logits["val"]), val.labels, val.speakers)
        print(f"ensemble of {args.ensemble}: val_top1={100 * rep['top1']:.2f}")
    report = classification_report(average_posteriors(logits["test"]), test.labels, test.speakers)
    if args.ensemble > 1:
        print(f"ensemble of {args.ensemble} (averaged posteriors):")
    print(f"top1={100 * report['top1']:.2f} top5={100 * report['top5']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
