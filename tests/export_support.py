"""Shared helpers of the export tests (tests/torch/test_export.py, tests/keras/test_export.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spkid.backends import get_backend
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.data.featuresets import FeatureSet
from spkid.models.specs import TINY_OVERRIDES

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
    get_backend(backend).fit(config, data, None, out_dir, progress=False)
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


FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_SMALL = {"vgg": {"channels": [8, 16, 16, 32]}, "attention": {"hops": 2, "d_a": 16}, "embedding_dim": 32}


def fsdd_files(fsdd_dir: Path, speaker: str, takes) -> list[Path]:
    """``{digit}_{speaker}_{take}.wav`` for every digit and the given takes."""
    return [Path(fsdd_dir) / f"{d}_{speaker}_{t}.wav" for d in range(10) for t in takes]


def fsdd_onnx_model(fsdd_dir: Path, out_dir: Path) -> Path:
    """A small vgg_attention trained for 15 epochs on takes 10-15 of the six FSDD speakers (360 clips, ~10 s
    on one core), exported to ``out_dir/fsdd.onnx``. Takes 0-9 stay unseen (enrolment / queries)."""
    from spkid.inference.export import export_model
    from spkid.features.api import extract_features

    fc = FeatureConfig(sr=8000, n_mels=40)
    feats, labels = [], []
    for k, s in enumerate(FSDD_SPEAKERS):
        for f in fsdd_files(fsdd_dir, s, range(10, 16)):
            feats.append(extract_features(f, fc))
            labels.append(k)
    config = TrainConfig(model="vgg_attention", model_overrides=FSDD_SMALL, epochs=15, batch_size=16,
                         crop_frames=50, lr=3e-3, devices="cpu", seed=0, plateau_patience=100)
    run = Path(out_dir) / "run"
    get_backend("torch").fit(config, FeatureSet(feats, labels, FSDD_SPEAKERS, fc), None, run, progress=False)
    return export_model(run, Path(out_dir) / "fsdd.onnx", "onnx")


def start_server(model: Path, gallery: Path, log: Path, *args: str, timeout: float = 60.0):
    """``spkid serve`` in a subprocess on a free loopback port, output to ``log``: ``(process, base_url)``."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "spkid", "serve", "--model", str(model), "--gallery",
                                 str(gallery), "--port", "0", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in Path(log).read_text().splitlines():
            if line.startswith("spkid serve: http://"):
                return proc, line.split()[2].rstrip("/")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"spkid serve did not start: {Path(log).read_text()[-2000:]}")
