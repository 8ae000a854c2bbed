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
sys.path.insert(0, str(REPO / "benchmarks"))

from degrade import GOAL_CONDITIONS, NAMES, VAL_TAG, degrade  # noqa: E402

from spkid.audio.io import load_audio  # noqa: E402
from spkid.backends import get_backend  # noqa: E402
from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.training.config import TrainConfig, split_recipe  # noqa: E402
from spkid.features.api import fbank_from_config  # noqa: E402
from spkid.training.evaluation import average_posteriors, predict  # noqa: E402
from spkid.data.featuresets import FeatureSet, holdout_index  # noqa: E402
from spkid.data.wavesampler import InMemoryWaves, WaveSet  # noqa: E402
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


def data_root(script: str, data: Path, name: str) -> Path | None:
    """``data / name`` when it is a folder, else None after a one-line error naming it (the caller exits 2)."""
    root = data / name
    if root.is_dir():
        return root
    print(f"{script}: error: real speech not found at {root} (the data lives in ../shared/data beside the "
          f"checkout, see its README.md; or pass --data)", file=sys.stderr)
    return None


def load_model(path, protocol: str = "libri251"):
    """The embedder of ``path`` (run directory, checkpoint or .onnx), with a note when its features are not
    the ones this script uses for ``protocol`` (the figures then are not comparable)."""
    from spkid.inference.embedder import load_embedder

    embedder = load_embedder(path)
    if embedder.feature_config != FEATURES[protocol]:
        print(f"note: {path}: its features differ from accuracy.py's {protocol} features: {embedder.feature_config}")
    return embedder


def fsdd_parts(root: Path, sr: int) -> tuple[tuple, dict]:
    """(speakers, {"train": takes 5-49, "test": takes 0-4}) of the fsdd protocol, each a list of
    ``(waveform at sr, label, file name)``."""
    name = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
    files = sorted(p for p in root.glob("*.wav") if name.fullmatch(p.name))
    speakers = tuple(sorted({name.fullmatch(p.name).group(2) for p in files}))
    parts: dict = {"train": [], "test": []}
    for p in files:
        _, spk, idx = name.fullmatch(p.name).groups()
        y = load_audio(p, sr=sr, min_duration=0.0)
        parts["test" if int(idx) < 5 else "train"].append((y, speakers.index(spk), p.name))
    return speakers, parts


def libri_parts(root: Path, sr: int, val_seconds: float, min_samples: int) -> tuple[tuple, dict]:
    """(speakers, {"train", "val", "test"}) of the libri251 protocol, each a list of ``(waveform at sr,
    label, id)``: per file the first 70% trains (its last ``val_seconds``, at most a fifth, validates when
    that is at least ``min_samples``), the rest is cut into 3 s test segments."""
    files = sorted(root.glob("*.flac"))
    speakers = tuple(sorted({p.name.split("-")[0] for p in files}))
    seg = 3 * sr
    parts: dict = {"train": [], "val": [], "test": []}
    for p in files:
        spk = speakers.index(p.name.split("-")[0])
        y = load_audio(p, sr=sr, min_duration=0.0)
        cut = int(0.7 * len(y))
        train_y, test_y = y[:cut], y[cut:]
        segments = [test_y[i * seg : (i + 1) * seg] for i in range(len(test_y) // seg)] or [test_y]
        parts["test"] += [(s, spk, f"{p.name}#{i}") for i, s in enumerate(segments)]
        v = min(int(val_seconds * sr), len(train_y) // 5)  # short files keep 80% for training
        if v >= min_samples:
            parts["val"].append((train_y[-v:], spk, f"{p.name}#val"))
            train_y = train_y[:-v]
        parts["train"].append((train_y, spk, p.name))
    return speakers, parts


def feature_set(items: list, speakers: tuple, fc: FeatureConfig) -> FeatureSet | None:
    """A FeatureSet of ``(waveform, label, id)`` items (None when there are none)."""
    if not items:
        return None
    return FeatureSet([fbank_from_config(y, fc) for y, _, _ in items], [lab for _, lab, _ in items], speakers, fc,
                      [ident for _, _, ident in items])


def protocol_parts(protocol: str, root: Path, fc: FeatureConfig, config: TrainConfig, val_seconds: float):
    """(speakers, {"train", "val", "test"} item lists) of a protocol; fsdd's val is ``config.val_fraction`` of
    each speaker's training files (:func:`spkid.data.featuresets.holdout_index`)."""
    if protocol == "libri251":
        return libri_parts(root, fc.sr, val_seconds, fc.win_length)
    speakers, parts = fsdd_parts(root, fc.sr)
    held = set(holdout_index([lab for _, lab, _ in parts["train"]], config.val_fraction, config.seed).tolist())
    parts["val"] = [it for k, it in enumerate(parts["train"]) if k in held]
    parts["train"] = [it for k, it in enumerate(parts["train"]) if k not in held]
    return speakers, parts


def fsdd_sets(root: Path, fc: FeatureConfig, config: TrainConfig):
    """(train, val, test) FeatureSets of the fsdd protocol; val = ``val_fraction`` of each speaker's training files."""
    speakers, parts = protocol_parts("fsdd", root, fc, config, 0.0)
    return tuple(feature_set(parts[k], speakers, fc) for k in ("train", "val", "test"))


def libri_sets(root: Path, fc: FeatureConfig, config: TrainConfig, val_seconds: float):
    """(train, val, test) FeatureSets of the libri251 protocol (val = end of each training part)."""
    speakers, parts = libri_parts(root, fc.sr, val_seconds, fc.win_length)
    return tuple(feature_set(parts[k], speakers, fc) for k in ("train", "val", "test"))


def degraded_val(items: list, speakers: tuple, fc: FeatureConfig, seed: int) -> FeatureSet:
    """The validation items clean plus one copy under each of the robustness goal's conditions
    (:data:`degrade.GOAL_CONDITIONS`), drawn from ``[seed, VAL_TAG, condition, item]``: never the test's draws."""
    waves, labels = [y for y, _, _ in items], [lab for _, lab, _ in items]
    out = list(items)
    for name in GOAL_CONDITIONS:
        cond = NAMES.index(name)
        copies = degrade(cond, waves, labels, fc.sr, seed, tag=(VAL_TAG,))
        out += [(z, lab, f"{ident}@{cond}") for z, (_, lab, ident) in zip(copies, items)]
    return feature_set(out, speakers, fc)


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
    ap.add_argument("--val-degraded", action="store_true",
                    help="validate on the validation audio clean plus one copy under each of the robustness goal's "
                         "conditions (5 dB white noise, 10 dB babble, RT60 0.6 s, telephone; benchmarks/degrade.py), "
                         "seeded apart from the test's")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="continue the runs already in --out (an interrupted member resumes from its last "
                         "checkpoint; a finished one is only evaluated, and its train_time reads ~0)")
    args = ap.parse_args(argv)

    recipe = dict(RECIPES[args.protocol], model=args.model, model_overrides=SMALL[args.model], seed=args.seed)
    features: dict = {}
    if args.config:
        loaded, features = split_recipe(args.config)
        recipe.update(loaded)
    for key in ("epochs", "batch_size", "lr", "crop_frames"):  # command-line flags beat the recipe
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    config = TrainConfig.from_dict(recipe)
    if args.normalize is not None:
        features["normalize"] = NORMALIZE[args.normalize]
    fc = FeatureConfig.from_dict({**FEATURES[args.protocol].to_dict(), **features})
    t0 = time.perf_counter()
    root = args.data / ("fsdd" if args.protocol == "fsdd" else "librispeech-251")
    speakers, parts = protocol_parts(args.protocol, root, fc, config, args.val_seconds)
    if config.waveform_augment.enabled:  # crops cut from the waveforms, augmented, then featurised
        tr = parts["train"]
        waves = InMemoryWaves([y for y, _, _ in tr], [lab for _, lab, _ in tr], speakers, sr=fc.sr,
                              ids=[ident for _, _, ident in tr])
        train = WaveSet(waves, feature_config=fc, speakers=speakers)
    else:
        train = feature_set(parts["train"], speakers, fc)
    val = (degraded_val(parts["val"], speakers, fc, config.seed) if args.val_degraded and parts["val"]
           else feature_set(parts["val"], speakers, fc))
    test = feature_set(parts["test"], speakers, fc)
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
