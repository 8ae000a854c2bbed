"""Backend-neutral checks every registered model must pass, shared by tests/torch and tests/keras.

Each backend's test module subclasses :class:`ModelContract`, setting ``backend`` to an adapter with
``create(name, n_classes, **overrides)``, ``run(model, x, lengths=None) -> dict of numpy`` (eval mode)
and ``reload(model, tmp_path) -> model``; pytest collects the inherited tests for every registered model.
"""
from __future__ import annotations

import numpy as np
import pytest

from spkid.errors import ConfigError
from spkid.models.specs import MODEL_NAMES, TINY_OVERRIDES, model_spec, output_frames

KEYS = {"logits", "embedding", "attention", "penalty"}
T_VALUES = (300, 157, 41, 8)  # the paper's 300 frames, odd lengths, much shorter clips
N_CLASSES = 5


def tiny(name: str, **extra) -> dict:
    over = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_OVERRIDES[name].items()}
    for k, v in extra.items():
        over[k] = {**over.get(k, {}), **v} if isinstance(v, dict) else v
    return over


def features(rng: np.random.Generator, b: int, T: int, n_mels: int = 40) -> np.ndarray:
    return rng.standard_normal((b, T, n_mels)).astype(np.float32)


def penalty_of(a: np.ndarray) -> np.ndarray:
    """||A A^T - I||_F^2 per example, in float64 numpy."""
    a = a.astype(np.float64)
    gram = a @ a.transpose(0, 2, 1) - np.eye(a.shape[1])
    return (gram**2).sum(axis=(1, 2))


def check_outputs(backend, name: str, rng: np.random.Generator) -> None:
    over = tiny(name)
    spec = model_spec(name, **over)
    model = backend.create(name, N_CLASSES, **over)
    for T in T_VALUES:
        out = backend.run(model, features(rng, 2, T))
        assert set(out) == KEYS
        t_out = output_frames(spec, T)
        assert out["logits"].shape == (2, N_CLASSES)
        assert out["embedding"].shape == (2, spec.embedding_dim)
        assert out["attention"].shape == (2, spec.attention.hops, t_out), (T, out["attention"].shape)
        assert out["penalty"].shape == (2,)
        for v in out.values():
            assert v.dtype == np.float32 and np.isfinite(v).all()
        a = out["attention"]
        assert (a >= 0).all()
        np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-5)  # a softmax over time, per hop
        assert (out["penalty"] >= 0).all()
        np.testing.assert_allclose(out["penalty"], penalty_of(a), rtol=1e-5, atol=1e-5)
        assert not np.allclose(out["logits"][0], out["logits"][1])  # examples are not mixed up / constant


def check_penalty_one_frame(backend, name: str, rng: np.random.Generator) -> None:
    """With T' = 1 the softmax is exactly one-hot: penalty 0 for one hop, r*(r-1) for r hops."""
    spec = model_spec(name, **tiny(name))
    T = max(t for t in range(1, 64) if output_frames(spec, t) == 1)
    for hops, expected in ((1, 0.0), (3, 6.0)):
        model = backend.create(name, N_CLASSES, **tiny(name, attention={"hops": hops}))
        out = backend.run(model, features(rng, 2, T))
        assert out["attention"].shape == (2, hops, 1)
        np.testing.assert_allclose(out["penalty"], expected, atol=1e-5)


def check_masking(backend, name: str, rng: np.random.Generator) -> None:
    """Frames past ``lengths`` get zero attention, and every padded example's outputs equal the outputs
    of the same example alone and unpadded (the padding holds garbage, not zeros)."""
    spec = model_spec(name, **tiny(name))
    model = backend.create(name, N_CLASSES, **tiny(name))
    lengths = np.array([120, 77, 33, 9])
    x = features(rng, len(lengths), int(lengths.max()))
    x += 5.0 * (np.arange(x.shape[1])[None, :, None] >= lengths[:, None, None])  # garbage padding
    out = backend.run(model, x, lengths)
    full = backend.run(model, x)
    assert (np.abs(out["embedding"] - full["embedding"]).max(axis=1)[1:] > 1e-5).all()  # lengths matter
    np.testing.assert_allclose(out["logits"][0], full["logits"][0], rtol=1e-5, atol=1e-5)
    for b, n in enumerate(lengths):
        alone = backend.run(model, x[b : b + 1, :n])
        t_valid = output_frames(spec, int(n))
        assert alone["attention"].shape[-1] == t_valid
        assert (out["attention"][b, :, t_valid:] == 0).all()
        np.testing.assert_allclose(out["attention"][b, :, :t_valid], alone["attention"][0], atol=1e-5)
        for key in ("logits", "embedding", "penalty"):
            np.testing.assert_allclose(out[key][b], alone[key][0], rtol=1e-4, atol=1e-5, err_msg=key)


def check_reload(backend, name: str, rng: np.random.Generator, tmp_path) -> None:
    model = backend.create(name, N_CLASSES, **tiny(name))
    x = features(rng, 2, 57)
    before = backend.run(model, x)
    again = backend.reload(model, tmp_path)
    after = backend.run(again, x)
    for key in KEYS:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    other = backend.run(backend.create(name, N_CLASSES, **tiny(name)), x)
    assert not np.allclose(other["logits"], before["logits"])  # a fresh model differs: the reload did load


def check_unknown_name(backend) -> None:
    with pytest.raises(ConfigError, match="valid models: " + ", ".join(MODEL_NAMES)):
        backend.create("vgg_attenion", N_CLASSES)
    with pytest.raises(ConfigError, match="unknown key"):
        backend.create("resnet18", N_CLASSES, resnet={"widht": 4})
    with pytest.raises(ConfigError, match="n_classes"):
        backend.create("resnet18", 0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: PyTorch's spinning intra-op threads can cost 100x."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ModelContract:
    backend = None  # set by subclasses

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_outputs(self, name, rng):
        check_outputs(self.backend, name, rng)

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_penalty_one_frame(self, name, rng):
        check_penalty_one_frame(self.backend, name, rng)

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_masking(self, name, rng):
        check_masking(self.backend, name, rng)

    @pytest.mark.parametrize("name", MODEL_NAMES)
    def test_reload(self, name, rng, tmp_path):
        check_reload(self.backend, name, rng, tmp_path)

    def test_unknown_name(self):
        check_unknown_name(self.backend)
