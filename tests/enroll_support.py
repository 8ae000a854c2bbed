"""Shared pieces of the ``spkid enroll`` / ``spkid identify`` CLI tests (tests/torch, tests/keras).

Real FSDD speech: a tiny model is trained for a few steps on 30 files (digits 0-4, take 10, of the six
speakers); enrolment uses takes 20-21 (digits 5-9) and the held-out queries take 30 (all digits), so
neither enrolment nor queries were seen in training.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spkid.app.cli import main
from spkid.backends import get_backend
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.features.api import extract_features
from spkid.data.featuresets import FeatureSet
from spkid.models.specs import TINY_OVERRIDES
from tests.export_support import FSDD_SPEAKERS, fsdd_files

FEATURES = FeatureConfig(sr=8000, n_mels=40)


def train_tiny(backend: str, fsdd_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A tiny vgg_attention trained for 8 epochs (32 steps) on 30 FSDD files; returns the run dir."""
    feats, labels = [], []
    for k, s in enumerate(FSDD_SPEAKERS):
        for f in fsdd_files(fsdd_dir, s, [10])[:5]:
            feats.append(extract_features(f, FEATURES))
            labels.append(k)
    config = TrainConfig(model="vgg_attention", model_overrides=TINY_OVERRIDES["vgg_attention"], epochs=8,
                         batch_size=8, crop_frames=40, lr=3e-3, devices="cpu", seed=seed, plateau_patience=100)
    data = FeatureSet(feats, labels, FSDD_SPEAKERS, FEATURES)
    get_backend(backend).fit(config, data, None, out_dir, progress=False)
    return out_dir


def speaker_tree(fsdd_dir: Path, root: Path) -> Path:
    """``root/SPEAKER/*.wav`` symlinks to each speaker's enrolment files (digits 5-9, takes 20-21)."""
    for s in FSDD_SPEAKERS:
        (root / s).mkdir(parents=True)
        for f in fsdd_files(fsdd_dir, s, [20, 21])[10:]:
            (root / s / f.name).symlink_to(f)
    return root


def queries(fsdd_dir: Path) -> list[tuple[Path, str]]:
    """Held-out ``(clip, speaker)`` pairs: take 30 of every digit and speaker (60 clips)."""
    return [(f, s) for s in FSDD_SPEAKERS for f in fsdd_files(fsdd_dir, s, [30])]


def identify_json(capsys, model, gallery, clips, *extra: str) -> dict:
    """``spkid identify --json`` on ``clips``: its parsed output (asserts exit status 0)."""
    capsys.readouterr()
    code = main(["identify", "--model", str(model), "--gallery", str(gallery), "--json", "--no-progress",
                 *extra, *map(str, clips)])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def check_round_trip(capsys, model, fsdd_dir: Path, tmp_path: Path) -> dict:
    """Enrol the six speakers (``--from-dir``) and a single-utterance speaker, then identify held-out clips.

    Checks: held-out clips are identified far above chance (1/6); the single enrolled file identifies as
    its own speaker with cosine ~1 and is its own nearest utterance. Returns the identify output.
    """
    gallery = tmp_path / "gallery"
    assert main(["enroll", "--model", str(model), "--gallery", str(gallery), "--no-progress",
                 "--from-dir", str(speaker_tree(fsdd_dir, tmp_path / "speakers"))]) == 0
    solo = fsdd_dir / "7_theo_40.wav"
    assert main(["enroll", "--model", str(model), "--gallery", str(gallery), "--no-progress", "solo", str(solo)]) == 0
    pairs = queries(fsdd_dir)
    out = identify_json(capsys, model, gallery, [c for c, _ in pairs] + [solo], "--top-k", "3")
    results = out["results"]
    assert [r["clip"] for r in results] == [str(c) for c, _ in pairs] + [str(solo)]
    assert all(len(r["candidates"]) == 3 and len(r["neighbours"]) == 3 for r in results)
    hits = np.mean([r["speaker"] == s for r, (_, s) in zip(results, pairs)])
    assert hits >= 0.35, f"held-out top-1 {hits:.2f} (chance 0.17)"
    me = results[-1]
    assert me["speaker"] == "solo" and me["score"] > 0.9999
    assert me["neighbours"][0]["utterance"] == str(solo.absolute())
    return out
