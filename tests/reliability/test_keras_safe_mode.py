"""Keras files load in safe mode: a .keras model carrying Python bytecode (a Lambda layer) is refused
with a CheckpointError naming the file, and its code never runs."""
from __future__ import annotations

import os

import numpy as np
import pytest

from spkid.errors import CheckpointError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def test_keras_lambda_layer_is_refused_without_running(tmp_path):
    keras = pytest.importorskip("keras")
    from spkid_keras.export import load_keras

    marker = tmp_path / "pwned"
    m = str(marker)
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: (open(m, "w").close(), x)[1])(inputs)
    path = tmp_path / "evil.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model traced the lambda once
    with pytest.raises(CheckpointError, match="cannot read Keras export") as exc:
        load_keras(path)
    assert str(path) in str(exc.value) and not marker.exists()
    unsafe = keras.saving.load_model(path, safe_mode=False)  # the payload is live without safe mode
    unsafe(np.zeros((1, 3), np.float32))
    assert marker.exists()
