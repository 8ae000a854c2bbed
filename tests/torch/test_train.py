"""spkid_torch.train: fit / resume / evaluate / embed with a tiny model (checks shared with keras)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from spkid_torch import train  # noqa: E402
from tests import train_cases as cases  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def weights_of(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_loss_decreases(tmp_path):
    cases.check_loss_decreases(train, tmp_path)


def test_resume_equals_uninterrupted(tmp_path):
    cases.check_resume_equals_uninterrupted(train, tmp_path, weights_of)


def test_evaluate_embed_and_embedder(tmp_path):
    cases.check_evaluate_embed_and_embedder(train, tmp_path)


def test_checkpoint_state_loads_with_weights_only(tmp_path):
    cases.check_loss_decreases(train, tmp_path)
    state = next((tmp_path / "run" / "checkpoints").glob("*.pt"))
    loaded = torch.load(state, weights_only=True)
    assert {"model", "optimizer", "torch_rng"} <= set(loaded)
