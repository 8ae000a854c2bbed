"""Shared helpers of the export tests (tests/torch/test_export.py, tests/keras/test_export.py)."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from spkid.config import FeatureConfig, TrainConfig
from spkid.sampling import FeatureSet
from spkid.specs import TINY_OVERRIDES

N_MELS = 20
CROP = 50  # training crop (frames); the parity lengths include one far longer
LENGTHS = (37, 300, 1000)
TOL = 1e-4
FEATURES = FeatureConfig(sr=8000, n_mels=N_MELS)


def tiny_run(backend: str, out_dir: Path, model: str = "vgg_attention") -> Path:
    """Train a tiny ``model`` for one epoch on random features of 3 speakers; returns the run dir."""
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((int(rng.integers(30, 90)), N_MELS)).astype(np.float32) + i % 3 for i in range(12)]
    data = FeatureSet(feats, np.arange(12) % 3, ("ann", "bob", "cy"), FEATURES)
    config = TrainConfig(model=model, model_overrides=TINY_OVERRIDES[model], epochs=1, batch_size=4,
                         crop_frames=CROP, lr=1e-2, devices="cpu", seed=0)
    importlib.import_module(f"spkid_{backend}.train").fit(config, data, None, out_dir, progress=False)
    return out_dir


def batch(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (2, T, N_MELS) float32, lengths (2,) int64): one full row and one shorter, zero-padded row."""
    x = np.random.default_rng(seed + T).standard_normal((2, T, N_MELS)).astype(np.float32)
    lengths = np.array([T, max(1, (2 * T) // 3)], dtype=np.int64)
    x[1, lengths[1]:] = 0.0
    return x, lengths


def utterances(seed: int = 1) -> list[np.ndarray]:
    """One utterance of each parity length."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((T, N_MELS)).astype(np.float32) for T in LENGTHS]


def max_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).max())
