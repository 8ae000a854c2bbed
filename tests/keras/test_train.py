"""spkid_keras.train: fit / resume / evaluate / embed with a tiny model (checks shared with torch)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from spkid_keras import train  # noqa: E402
from tests import train_cases as cases  # noqa: E402


def weights_of(model):
    return {v.path.split("/", 1)[-1]: np.asarray(v) for v in model.variables}


def test_loss_decreases(tmp_path):
    cases.check_loss_decreases(train, tmp_path)


def test_resume_equals_uninterrupted(tmp_path):
    cases.check_resume_equals_uninterrupted(train, tmp_path, weights_of)


def test_evaluate_embed_and_embedder(tmp_path):
    cases.check_evaluate_embed_and_embedder(train, tmp_path)
