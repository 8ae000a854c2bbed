"""PyTorch models: every registered model against the shared contract (tests/model_contract.py),
plus gradients and pooling modes."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import spkid_torch  # noqa: E402
from spkid.models.specs import MODEL_NAMES, model_spec  # noqa: E402
from spkid_torch.models import SpeakerNet  # noqa: E402
from tests import model_contract as contract  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TorchBackend:
    create = staticmethod(spkid_torch.create_model)

    @staticmethod
    def run(model, x, lengths=None):
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(x), None if lengths is None else torch.as_tensor(lengths))
        return {k: v.numpy() for k, v in out.items()}

    @staticmethod
    def reload(model, tmp_path):
        path = tmp_path / "model.pt"
        torch.save(model.state_dict(), path)
        again = SpeakerNet(model.spec, model.n_classes, model.name)
        again.load_state_dict(torch.load(path, weights_only=True), strict=True)
        return again


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class TestContract(contract.ModelContract):
    backend = TorchBackend


def test_list_models():
    assert spkid_torch.list_models() == list(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_attributes_and_gradients(name, rng):
    """Metadata is kept; in train mode every parameter gets a finite, non-zero gradient."""
    over = contract.tiny(name)
    model = spkid_torch.create_model(name, 3, **over).train()
    assert (model.name, model.n_classes, model.spec) == (name, 3, model_spec(name, **over))
    x = torch.from_numpy(contract.features(rng, 4, 64))
    out = model(x, torch.tensor([64, 50, 31, 64]))
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2, 0]))
    (loss + 0.5 * out["penalty"].mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("pool,dim", [("mean", 48), ("concat", 96), ("stats", 96)])
def test_pool_modes(pool, dim, rng):
    """pool="concat" concatenates the r hop vectors (r*u) instead of averaging them (u); "stats" appends
    the attentive standard deviations (2u)."""
    model = spkid_torch.create_model("vgg_attention", 3, **contract.tiny("vgg_attention", attention={"pool": pool}))
    assert model.pool.output_dim == dim and model.embedding.in_features == dim
    assert TorchBackend.run(model, contract.features(rng, 2, 40))["embedding"].shape == (2, 16)


def test_stats_pooling_matches_numpy(rng):
    """pool="stats": mean over hops of the attention-weighted mean and standard deviation of H; padded
    frames carry no weight."""
    from spkid_torch.models.layers import SelfAttentionPooling

    torch.manual_seed(0)
    layer = SelfAttentionPooling(6, 5, 3, pool="stats")
    h = rng.standard_normal((2, 9, 6)).astype(np.float32)
    lengths = np.array([9, 4])
    with torch.no_grad():
        pooled, a, _ = layer(torch.from_numpy(h), torch.from_numpy(lengths))
    a, h64 = a.numpy().astype(np.float64), h.astype(np.float64)
    for b, n in enumerate(lengths):
        w = a[b, :, :n]  # (r, n) weights over the valid frames, rows sum to 1
        assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6)
        mean = w @ h64[b, :n]  # (r, u)
        std = np.sqrt(w @ h64[b, :n] ** 2 - mean**2)
        expect = np.concatenate([mean.mean(axis=0), std.mean(axis=0)])
        np.testing.assert_allclose(pooled[b].numpy(), expect, rtol=1e-4, atol=1e-5)
