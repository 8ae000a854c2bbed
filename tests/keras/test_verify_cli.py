"""``spkid verify --trials`` and ``spkid identify --timeline`` end to end with a tiny Keras model trained on real
FSDD speech (the checks of tests/verify_support.py, as tests/torch runs them)."""
from __future__ import annotations

import pytest

from tests import enroll_support as es
from tests import verify_support as vs

pytest.importorskip("keras")


def test_trial_list_and_timeline_with_a_keras_model(fsdd_dir, tmp_path, capsys):
    run = es.train_tiny("keras", fsdd_dir, tmp_path / "run")
    for part in ("verify", "timeline"):
        (tmp_path / part).mkdir()
    vs.check_trial_list(capsys, run, fsdd_dir, tmp_path / "verify")
    vs.check_timeline(capsys, run, fsdd_dir, tmp_path / "timeline")
