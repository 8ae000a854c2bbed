"""``spkid enroll`` / ``spkid identify`` end to end with a tiny Keras model trained on real FSDD speech."""
from __future__ import annotations

import pytest

from tests import enroll_support as es

pytest.importorskip("keras")


def test_round_trip_with_a_keras_model(fsdd_dir, tmp_path, capsys):
    run = es.train_tiny("keras", fsdd_dir, tmp_path / "run")
    out = es.check_round_trip(capsys, run, fsdd_dir, tmp_path)
    assert out["speakers"] == 7
