"""Keras vs PyTorch: same parameter counts, shapes and -- after porting weights with
spkid_keras.convert -- the same numbers, layer by layer, on random input and real speech."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import spkid_keras  # noqa: E402
import spkid_torch  # noqa: E402
from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.features.api import extract_features  # noqa: E402
from spkid.models.specs import MODEL_NAMES, model_spec, output_frames  # noqa: E402
from spkid_keras.convert import keras_to_torch, torch_to_keras  # noqa: E402
from tests import model_contract as contract  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = [pytest.mark.parity, pytest.mark.usefixtures("one_torch_thread")]
KEYS = ("logits", "embedding", "attention", "penalty")


def assert_close(a, b, what, tol=1e-4):
    """max |a - b| <= tol, relative to the magnitude when that exceeds 1 (float32 round-off scales)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    err = np.abs(a - b).max() / max(1.0, np.abs(a).max())
    assert err <= tol, f"{what}: max difference {err:.3g} > {tol}"


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm (random gamma, beta, running stats) and peaky attention, so every layer
    matters numerically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
        model.pool.w2.weight.mul_(5.0)


def make_pair(name: str, n_classes: int = 7, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    tm = spkid_torch.create_model(name, n_classes, **overrides)
    randomize(tm, seed)
    km = spkid_keras.create_model(name, n_classes, **overrides)
    torch_to_keras({k: v.numpy() for k, v in tm.state_dict().items()}, km)
    return tm.eval(), km


@pytest.fixture(scope="module", params=MODEL_NAMES)
def pair(request):
    name = request.param
    return (name, *make_pair(name, **contract.tiny(name)))


def run_both(tm, km, x, lengths=None):
    """Outputs and intermediate maps of both models, Keras' maps in PyTorch's (B, C, T, F) layout."""
    t_lengths = None if lengths is None else torch.as_tensor(lengths)
    with torch.no_grad():
        t_out = {k: v.numpy() for k, v in tm(torch.from_numpy(x), t_lengths).items()}
        t_taps = []
        t_out["H"] = tm.frames(torch.from_numpy(x), t_lengths, taps=t_taps)[0].numpy()
    k_out = {k: np.asarray(v) for k, v in km(x, lengths=lengths, training=False).items()}
    k_taps = []
    k_out["H"] = np.asarray(km.frames(x, lengths, taps=k_taps)[0])
    t_out["taps"] = [t.numpy() for t in t_taps]
    k_out["taps"] = [np.transpose(np.asarray(t), (0, 3, 1, 2)) for t in k_taps]
    return t_out, k_out


def compare(t_out, k_out, label):
    assert len(t_out["taps"]) == len(k_out["taps"]) > 0
    for i, (a, b) in enumerate(zip(t_out["taps"], k_out["taps"])):  # first failing tap names the layer
        assert_close(a, b, f"{label}: trunk block/stage {i}")
    for key in ("H", *KEYS):
        assert_close(t_out[key], k_out[key], f"{label}: {key}")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_param_counts_tiny(name):
    tm, km = make_pair(name, **contract.tiny(name))
    assert spkid_torch.count_params(tm) == spkid_keras.count_params(km)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_models(name, rng):
    """Full-size defaults: equal parameter counts, equal output shapes (short input), same numbers."""
    tm, km = make_pair(name, n_classes=1251)
    counts = spkid_torch.count_params(tm)
    assert counts == spkid_keras.count_params(km) and counts["trainable"] > 1_000_000
    t_out, k_out = run_both(tm, km, contract.features(rng, 2, 45))
    spec = model_spec(name)
    assert t_out["attention"].shape == (2, spec.attention.hops, output_frames(spec, 45))
    assert t_out["logits"].shape == (2, 1251)
    compare(t_out, k_out, name)


def test_random_input(pair, rng):
    name, tm, km = pair
    for T in (300, 41, 8):
        t_out, k_out = run_both(tm, km, contract.features(rng, 3, T))
        compare(t_out, k_out, f"{name} T={T}")
    lengths = np.array([157, 100, 21])
    t_out, k_out = run_both(tm, km, contract.features(rng, 3, 157), lengths)
    compare(t_out, k_out, f"{name} masked")
    t_valid = output_frames(tm.spec, lengths)
    for b, n in enumerate(t_valid):
        assert (t_out["attention"][b, :, n:] == 0).all() and (k_out["attention"][b, :, n:] == 0).all()


@pytest.mark.parametrize("name,over", [
    ("vgg_attention", {"attention": {"pool": "stats"}}),
    ("vgg_attention", {"vgg": {"time_pool": (2, 1, 2, 1)}}),
    ("vgg_attention", {"vgg": {"time_pool": (2, 2, 1, 1)}, "attention": {"pool": "stats"}, "input_norm": True}),
    ("resnet18", {"attention": {"pool": "stats"}}),
])
def test_pooling_options(name, over, rng):
    """Attentive-statistics pooling and VGG blocks that keep time: same numbers, masked and unmasked,
    and the valid frames follow ``output_frames``."""
    tm, km = make_pair(name, **contract.tiny(name, **over))
    assert spkid_torch.count_params(tm) == spkid_keras.count_params(km)
    spec = tm.spec
    t_out, k_out = run_both(tm, km, contract.features(rng, 2, 50))
    compare(t_out, k_out, f"{name} {over}")
    assert t_out["attention"].shape[-1] == output_frames(spec, 50)
    if spec.attention.pool == "stats":
        assert t_out["embedding"].shape == (2, spec.embedding_dim)
        assert tm.pool.output_dim == 2 * tm.pool.w1.in_features
    if name == "vgg_attention" and spec.vgg.time_pool is not None:
        assert output_frames(spec, 64) == 64 // 2 ** spec.vgg.time_pool.count(2)
    lengths = np.array([50, 23])
    t_out, k_out = run_both(tm, km, contract.features(rng, 2, 50), lengths)
    compare(t_out, k_out, f"{name} {over} masked")
    for b, n in enumerate(output_frames(spec, lengths)):
        assert (t_out["attention"][b, :, n:] == 0).all() and (k_out["attention"][b, :, n:] == 0).all()


@pytest.fixture(scope="module")
def speech(fsdd_dir, libri_dir) -> tuple[np.ndarray, np.ndarray]:
    """Real log-mel features (spkid.features, 16 kHz, 40 mels), zero-padded into one batch + lengths."""
    files = [fsdd_dir / "3_jackson_7.wav", fsdd_dir / "8_theo_21.wav", sorted(libri_dir.glob("*.flac"))[0]]
    feats = [extract_features(f, FeatureConfig())[:300] for f in files]
    lengths = np.array([len(f) for f in feats])
    x = np.zeros((len(feats), lengths.max(), 40), np.float32)
    for b, f in enumerate(feats):
        x[b, : len(f)] = f
    return x, lengths


def test_real_speech(pair, speech):
    name, tm, km = pair
    x, lengths = speech
    compare(*run_both(tm, km, x, lengths), f"{name} speech (padded batch)")
    compare(*run_both(tm, km, x[2:]), f"{name} speech (300 frames)")


def test_round_trip_exact(pair):
    _, tm, km = pair
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    back = keras_to_torch(km)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    fresh = spkid_torch.create_model(tm.name, tm.n_classes, **contract.tiny(tm.name))
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_input_norm(rng):
    """ModelSpec.input_norm: a BatchNorm over mel bins before the trunk, same numbers, masked padding,
    exact round trip of its weights (named ``input_norm.*`` in both backends)."""
    tm, km = make_pair("resnet18", **contract.tiny("resnet18"), input_norm=True)
    assert "input_norm.running_mean" in tm.state_dict()
    assert spkid_torch.count_params(tm) == spkid_keras.count_params(km)
    x = contract.features(rng, 3, 57) - 12.0  # un-normalised log-mel levels
    compare(*run_both(tm, km, x), "input_norm")
    lengths = np.array([57, 40, 9])
    t_out, k_out = run_both(tm, km, x, lengths)
    compare(t_out, k_out, "input_norm masked")
    x2 = x.copy()
    x2[2, 9:] = 0.0  # padding content must not matter
    assert_close(t_out["logits"], run_both(tm, km, x2, lengths)[0]["logits"], "padding ignored", tol=1e-6)
    back = keras_to_torch(km)
    assert all(np.array_equal(back[k], v.numpy()) for k, v in tm.state_dict().items())


@pytest.mark.parametrize("name,extra", [(n, {}) for n in MODEL_NAMES] + [("resnet18", {"input_norm": True})])
def test_sgd_step(name, extra, rng):
    """One plain-SGD step in training mode (batch-statistics BatchNorm, running stats updated) on the
    same padded batch gives the same weights.

    Tolerances: each step (before - after = lr * grad) must agree to 1e-3 of its largest entry. Against
    a float64 PyTorch reference, float32 train-mode gradients are off by up to ~4e-5 (PyTorch) and
    ~2.5e-4 (Keras) of their scale (BatchNorm's batch statistics amplify round-off); a wiring error
    gives O(1). Updated running statistics must agree to 1e-5.
    """
    lr, coef = 0.1, 0.5
    tm, km = make_pair(name, n_classes=3, **contract.tiny(name), **extra)
    x = contract.features(rng, 4, 61)
    lengths = np.array([61, 50, 33, 61])
    y = np.array([0, 1, 2, 1])
    n_per_channel = {}
    for path, m in tm.named_modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):  # elements per channel, for the running-var check
            m.register_forward_hook(lambda mod, inp, out, p=path: n_per_channel.__setitem__(p, inp[0][:, 0].numel()))
    before = {k: v.numpy().copy() for k, v in tm.state_dict().items()}
    trainable = {k for k, p in tm.named_parameters()}

    tm.train()
    out = tm(torch.from_numpy(x), torch.as_tensor(lengths))
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.as_tensor(y)) + coef * out["penalty"].mean()
    opt = torch.optim.SGD(tm.parameters(), lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()

    with tf.GradientTape() as tape:
        out = km(x, lengths=lengths, training=True)
        ce = keras.losses.sparse_categorical_crossentropy(y, out["logits"], from_logits=True)
        k_loss = tf.reduce_mean(ce) + coef * tf.reduce_mean(out["penalty"])
    grads = tape.gradient(k_loss, km.trainable_weights)
    keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(grads, km.trainable_weights))
    assert_close(loss.item(), float(k_loss), "loss", tol=1e-5)

    after_t = {k: v.numpy() for k, v in tm.state_dict().items()}
    after_k = keras_to_torch(km)
    m = tm.spec.bn_momentum
    for key, value in after_t.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert not np.array_equal(value, before[key]), f"{key} did not change"
        if key in trainable:  # same starting weights, so compare the steps
            step_t, step_k = before[key] - value, before[key] - after_k[key]
            assert_close(step_t / np.abs(step_t).max(), step_k / np.abs(step_t).max(), f"step {key}", tol=1e-3)
            continue
        expected = value
        if key.endswith("running_var"):
            # PyTorch updates running_var with the unbiased batch variance, Keras with the biased one
            # (both normalise with the biased one): rescale PyTorch's batch part by (n - 1) / n.
            n = n_per_channel[key[: -len(".running_var")]]
            old = before[key]
            expected = (1 - m) * old + (value - (1 - m) * old) * (n - 1) / n
        assert_close(expected, after_k[key], key, tol=1e-5)
