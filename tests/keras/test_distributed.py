"""Keras tf.distribute.MirroredStrategy on two logical CPU devices vs one device, same global batch.

The logical devices must be configured before TensorFlow initialises, so the runs happen in a fresh
process (tests/keras/mirrored_worker.py). BatchNorm is synchronised across replicas
(``BatchNormalization(synchronized=True)``), so both replicas together compute what one device computes
with the whole batch; what differs is round-off only: the synchronised moments are computed as
E[x^2] - E[x]^2 from all-reduced sums instead of TensorFlow's two-pass moments, and the two replicas'
gradients are summed in another order. One SGD step (lr 0.05) then differs by ~1e-6 (measured 1.2e-6)
where the weights move by ~0.27, while per-replica BN statistics or a wrong split differ by ~0.2 after
that first step (measured 0.21). The single-pass moments cancel badly for channels whose variance is
tiny next to their mean, so the round-off grows: measured 4.6e-6 after 3 steps (the one epoch tested
here), 3e-4 after 6. Hence 3 steps with atol 1e-4 + rtol 1e-3: 20x above the round-off, 2000x below
a real mistake. SGD, not Adam: Adam's first steps turn round-off in analytically-zero gradients into
+-lr moves (see tests/parity).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spkid.training.checkpoints import read_checkpoint
from tests.train_cases import tiny_config

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[2]


def _weights(run):
    meta, state = read_checkpoint(run, prefer="last")
    with np.load(state, allow_pickle=False) as z:
        names = [str(p) for p in z["modelpaths"]]
        return meta, {n: z[f"model{i:05d}"] for i, n in enumerate(names)}


def test_mirrored_strategy_on_two_logical_cpus_equals_one_device(tmp_path):
    pytest.importorskip("tensorflow")
    cfg = tiny_config(batch_size=6, epochs=1, optimizer="sgd", lr=0.05, time_masks=1, gain_db=(-3.0, 3.0))
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run([sys.executable, "-m", "tests.keras.mirrored_worker", str(tmp_path), cfg.to_json()],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta1, single = _weights(tmp_path / "single")
    meta2, mirrored = _weights(tmp_path / "mirrored")
    assert meta2["train_config"]["devices"] == "2" and single.keys() == mirrored.keys()
    for k, v in single.items():
        np.testing.assert_allclose(mirrored[k], v, rtol=1e-3, atol=1e-4, err_msg=k)
    np.testing.assert_allclose([h["loss"] for h in meta2["history"]], [h["loss"] for h in meta1["history"]],
                               rtol=1e-4)
