"""The keras backend (``get_backend("keras")``): fit / resume / evaluate / embed with a tiny model (shared checks)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from spkid.backends import get_backend  # noqa: E402
from tests import train_cases as cases  # noqa: E402

BACKEND = get_backend("keras")


def weights_of(model):
    return {v.path.split("/", 1)[-1]: np.asarray(v) for v in model.variables}


def test_loss_decreases(tmp_path):
    cases.check_loss_decreases(BACKEND, tmp_path)


def test_resume_equals_uninterrupted(tmp_path):
    cases.check_resume_equals_uninterrupted(BACKEND, tmp_path, weights_of)


def test_max_steps_stops_exactly_and_resumes(tmp_path):
    cases.check_max_steps_stops_exactly_and_resumes(BACKEND, tmp_path, weights_of)


def test_evaluate_embed_and_embedder(tmp_path):
    cases.check_evaluate_embed_and_embedder(BACKEND, tmp_path)
