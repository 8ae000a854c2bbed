"""Margin losses in the core: the AAM head spec, the TrainConfig fields and their checks, the margin
warm-up schedule, the numpy reference (Deng et al., ArcFace, CVPR 2019; Sub-center ArcFace, ECCV 2020)
and old checkpoints still matching runs at the new defaults."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spkid.errors import CheckpointError, ConfigError
from spkid.models.specs import HeadSpec, ModelSpec, TINY_OVERRIDES, head_outputs, model_spec
from spkid.training import losses as L
from spkid.training.checkpoints import check_compatible
from spkid.training.config import TrainConfig
from spkid.training.loop import resolve_spec, run_training
from tests.train_cases import NumpyAdapter, blobs, tiny_config

AAM_HEAD = {"head": {"type": "aam", "subcenters": 3}}


def test_head_defaults_keep_every_model_linear():
    for name in ("vgg_attention", "resnet18", "resnet50"):
        assert model_spec(name).head == HeadSpec(type="linear", subcenters=1, scale=30.0)
    assert ModelSpec.from_dict({}).head.type == "linear"
    spec = model_spec("resnet18", **AAM_HEAD)
    assert spec.head.type == "aam" and head_outputs(spec.head, 7) == 21 and head_outputs(HeadSpec(), 7) == 7


@pytest.mark.parametrize("head,match", [
    ({"type": "arc"}, "HeadSpec.type"), ({"type": "aam", "subcenters": 0}, "subcenters"),
    ({"subcenters": 3}, "subcenters needs type 'aam'"), ({"type": "aam", "scale": 0.0}, "scale"),
    ({"type": "aam", "margin": 0.2}, "margin"),
])
def test_bad_heads_are_refused(head, match):
    with pytest.raises(ConfigError, match=match):
        model_spec("resnet18", head=head)


def test_train_config_defaults_are_softmax():
    c = TrainConfig()
    assert (c.loss, c.aam_scale, c.aam_margin, c.aam_margin_warmup_epochs) == ("softmax", 30.0, 0.2, 2)
    assert resolve_spec(c, 40).head == HeadSpec()


@pytest.mark.parametrize("kw,match", [
    ({"loss": "aam"}, r"TrainConfig.loss 'aam' needs an AAM head"),
    ({"loss": "arcface"}, "loss"),
    ({"loss": "aam", "model_overrides": AAM_HEAD, "aam_scale": 0.0}, "TrainConfig.aam_scale"),
    ({"loss": "aam", "model_overrides": AAM_HEAD, "aam_margin": -0.1}, "TrainConfig.aam_margin"),
    ({"loss": "aam", "model_overrides": AAM_HEAD, "aam_margin": 2.0}, "TrainConfig.aam_margin"),
    ({"loss": "aam", "model_overrides": AAM_HEAD, "aam_margin_warmup_epochs": -1},
     "TrainConfig.aam_margin_warmup_epochs"),
    ({"loss": "aam", "model_overrides": {"head": {"type": "aam", "scale": 16.0}}}, "aam_scale .* disagrees"),
    ({"model_overrides": {"head": {"subcenters": 2}}}, "TrainConfig.model_overrides"),
])
def test_inconsistent_configs_are_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(kw)


def test_aam_scale_is_the_heads_scale():
    c = TrainConfig.from_dict({"loss": "aam", "aam_scale": 32.0, "model_overrides": AAM_HEAD})
    spec = resolve_spec(c, 40)
    assert spec.head == HeadSpec(type="aam", subcenters=3, scale=32.0)
    # a softmax run on an AAM head (normalised softmax, no margin) keeps the head's own scale
    assert resolve_spec(c.replace(loss="softmax"), 40).head.scale == 30.0
    same = {"head": {"type": "aam", "scale": 32.0}}
    assert resolve_spec(c.replace(model_overrides=same), 40).head.scale == 32.0


def test_margin_schedule():
    assert [L.margin_at(0.2, 2, e) for e in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2])
    assert [L.margin_at(0.3, 0, e) for e in range(3)] == [0.3, 0.3, 0.3]
    assert L.margin_at(0.2, 4, 1) == pytest.approx(0.05)


def test_run_training_tells_the_adapter_each_epoch(tmp_path):
    seen = []

    class Recording(NumpyAdapter):
        def begin_epoch(self, epoch):
            seen.append(epoch)

    run_training(Recording(), tiny_config(epochs=3), blobs(), None, tmp_path / "run", progress=False)
    assert seen == [0, 1, 2]


def test_numpy_reference(rng):
    e, w = rng.standard_normal((4, 8)), rng.standard_normal((5 * 3, 8))
    y = np.array([0, 4, 2, 2])
    cos = L.cosine_logits(e, w, 3)
    full = L.l2_normalize(e) @ L.l2_normalize(w).T
    np.testing.assert_allclose(cos, full.reshape(4, 5, 3).max(-1))  # the closest sub-centre
    assert np.abs(cos).max() <= 1
    # margin 0: the plain scaled-cosine softmax
    plain = L.cross_entropy(30 * cos, y).mean()
    assert L.aam_loss(e, w, y, 30.0, 0.0, 3) == pytest.approx(plain, rel=1e-12)
    z = L.aam_logits(e, w, y, 30.0, 0.2, 3)
    rows = np.arange(4)
    theta = np.arccos(cos[rows, y])
    np.testing.assert_allclose(z[rows, y], 30 * np.cos(theta + 0.2), rtol=1e-9)
    mask = np.ones_like(z, bool)
    mask[rows, y] = False
    np.testing.assert_array_equal(z[mask], 30 * cos[mask])
    assert L.aam_loss(e, w, y, 30.0, 0.2, 3) > plain
    # theta + m > pi: cos(theta) - m sin(m), still below the margin-free logit
    z = L.margin_logits(np.array([[-29.99, 1.0]]), np.array([0]), 30.0, 0.2)
    assert z[0, 0] == pytest.approx(30 * (-29.99 / 30 - 0.2 * math.sin(0.2)))
    # label smoothing as PyTorch: (1 - eps) * onehot + eps / C
    logits = rng.standard_normal((3, 4))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expect = -(0.9 * logp[rows[:3], [0, 1, 2]] + 0.1 / 4 * logp.sum(1))
    np.testing.assert_allclose(L.cross_entropy(logits, np.array([0, 1, 2]), 0.1), expect)


def test_old_checkpoints_match_runs_at_the_new_defaults():
    cfg = tiny_config()
    spec = resolve_spec(cfg, 40).to_dict()
    expected = {"spec": spec, "train_config": cfg.to_dict()}
    old = {"spec": {k: v for k, v in spec.items() if k != "head"},
           "train_config": {k: v for k, v in cfg.to_dict().items() if not k.startswith(("loss", "aam_"))}}
    check_compatible(old, expected, "old.json")
    aam = cfg.replace(loss="aam", model_overrides={**TINY_OVERRIDES["vgg_attention"], **AAM_HEAD})
    with pytest.raises(CheckpointError, match="spec"):
        check_compatible(old, {"spec": resolve_spec(aam, 40).to_dict()}, "old.json")
    with pytest.raises(CheckpointError, match="train_config"):
        check_compatible(old, {"train_config": aam.to_dict()}, "old.json")
