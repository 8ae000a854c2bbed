"""Run by tests/keras/test_distributed.py in a fresh process: splits the CPU into two logical devices
(possible only before TensorFlow initialises), then trains the tiny model on one device and under
MirroredStrategy on two, with the same config and global batch, into OUT/single and OUT/mirrored."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from spkid.training.config import TrainConfig  # noqa: E402
from spkid_keras import train  # noqa: E402
from tests.train_cases import blobs  # noqa: E402

if __name__ == "__main__":
    out, cfg = Path(sys.argv[1]), TrainConfig.from_dict(json.loads(sys.argv[2]))
    for name, devices in (("single", "cpu"), ("mirrored", "2")):
        train.fit(cfg.replace(devices=devices), blobs(), blobs(2, seed=1), out / name, progress=False)
