"""Additive angular margin softmax (Deng et al., ArcFace, CVPR 2019; Sub-center ArcFace, ECCV 2020) in
both backends: the AAM head's forward pass after porting weights, the margin logits and loss against the
float64 numpy reference of :mod:`spkid.training.losses`, one SGD step, and a tiny ``fit`` with
``loss="aam"`` in each backend."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import spkid_keras  # noqa: E402
import spkid_torch  # noqa: E402
from spkid.errors import CheckpointError  # noqa: E402
from spkid.training import losses as ref  # noqa: E402
from spkid_keras.convert import keras_to_torch, torch_to_keras  # noqa: E402
from spkid_keras.losses import margin_logits as keras_margin_logits  # noqa: E402
from spkid_torch.losses import margin_logits as torch_margin_logits  # noqa: E402
from tests import model_contract as contract  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)
from tests.parity.test_models_parity import assert_close, compare, make_pair, run_both  # noqa: E402
from tests.train_cases import blobs, tiny_config  # noqa: E402

pytestmark = [pytest.mark.parity, pytest.mark.usefixtures("one_torch_thread")]
S, M = 30.0, 0.2


def aam(name: str, subcenters: int = 1, **extra) -> dict:
    return contract.tiny(name, head={"type": "aam", "subcenters": subcenters}, **extra)


@pytest.mark.parametrize("name,k", [("resnet18", 1), ("vgg_attention", 3)])
def test_head_forward_and_weight_port(name, k, rng):
    """Same logits (1e-5 of their scale) and every other output, masked and unmasked; the logits are
    ``s * max_k cos`` of the embedding and the ported weight; the weight round-trips exactly."""
    tm, km = make_pair(name, n_classes=5, **aam(name, k))
    assert tuple(tm.classifier.weight.shape) == (5 * k, tm.spec.embedding_dim)
    assert tuple(km.classifier.weight.shape) == (5 * k, tm.spec.embedding_dim)
    assert spkid_torch.count_params(tm) == spkid_keras.count_params(km)
    for lengths in (None, np.array([47, 30, 12])):
        t_out, k_out = run_both(tm, km, contract.features(rng, 3, 47), lengths)
        compare(t_out, k_out, f"{name} K={k}")
        assert_close(t_out["logits"], k_out["logits"], "logits", tol=1e-5)
        expect = S * ref.cosine_logits(t_out["embedding"], tm.classifier.weight.detach().numpy(), k)
        assert_close(expect, t_out["logits"], "logits vs numpy", tol=1e-5)
        assert np.abs(t_out["logits"]).max() <= S * (1 + 1e-6)
    back = keras_to_torch(km)
    assert all(np.array_equal(back[key], v.numpy()) for key, v in tm.state_dict().items())


def test_weight_port_stays_strict():
    """A linear-head state dict does not fit an AAM model (and the sub-centre count is checked)."""
    lin = spkid_torch.create_model("resnet18", 4, **contract.tiny("resnet18"))
    km = spkid_keras.create_model("resnet18", 4, **aam("resnet18", 3))
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): classifier.bias.*mis-shaped.*classifier.weight"):
        torch_to_keras({k: v.numpy() for k, v in lin.state_dict().items()}, km)
    k1 = spkid_torch.create_model("resnet18", 4, **aam("resnet18", 1))
    with pytest.raises(CheckpointError, match=r"mis-shaped \(1\): classifier.weight \(4, 16\)"):
        torch_to_keras({k: v.numpy() for k, v in k1.state_dict().items()}, km)


def _cosines(rng, b=6, c=5):
    """Scaled cosines covering both branches: theta + m <= pi, theta + m > pi (cos < -cos m) and
    cos = +-1 exactly."""
    cos = rng.uniform(-1, 1, size=(b, c))
    cos[0, 0], cos[1, 1], cos[2, 2], cos[3, 3] = -0.999, -1.0, 1.0, 0.97
    return (S * cos).astype(np.float32), np.array([0, 1, 2, 3, 4, 0])


@pytest.mark.parametrize("margin", [0.0, M, 0.5])
def test_margin_logits_match_numpy(margin, rng):
    logits, y = _cosines(rng)
    expect = ref.margin_logits(logits, y, S, margin)
    t = torch_margin_logits(torch.from_numpy(logits), torch.as_tensor(y), S, margin).numpy()
    k = np.asarray(keras_margin_logits(logits, y, S, tf.constant(margin)))
    assert_close(expect, t, "torch margin logits", tol=1e-5)
    assert_close(expect, k, "keras margin logits", tol=1e-5)
    rows = np.arange(len(y))
    other = np.ones_like(logits, bool)
    other[rows, y] = False
    assert np.array_equal(t[other], logits[other]) and np.array_equal(k[other], logits[other])
    cos = logits[rows, y].astype(np.float64) / S
    theta = np.arccos(np.clip(cos, -1, 1))
    # away from cos = +-1, where sin(theta) is floored at sqrt(SIN_FLOOR) (a finite gradient)
    inside = (theta + margin <= math.pi - 1e-3) & (np.abs(cos) < 1)
    np.testing.assert_allclose(expect[rows, y][inside], S * np.cos(theta + margin)[inside], atol=1e-5)
    beyond = theta + margin > math.pi - 1e-3
    np.testing.assert_allclose(expect[rows, y][beyond], S * (cos - margin * math.sin(margin))[beyond], atol=1e-5)
    assert beyond.sum() >= (2 if margin else 0)
    floored = S * (math.cos(margin) - math.sqrt(ref.SIN_FLOOR) * math.sin(margin))  # cos = 1 exactly
    np.testing.assert_allclose(expect[2, 2], floored, atol=1e-9)
    if margin == 0.0:
        np.testing.assert_allclose(expect, logits, atol=1e-6)
    else:
        assert (expect[rows, y] < logits[rows, y]).all()  # the margin lowers every target logit


@pytest.mark.parametrize("name,k,smoothing", [("resnet18", 1, 0.0), ("vgg_attention", 3, 0.1)])
def test_loss_matches_numpy_in_both_backends(name, k, smoothing, rng):
    """AAM cross-entropy of the model outputs (eval mode) equals the numpy reference computed from the
    embedding and the class weights; margin 0 equals plain softmax on s * cos."""
    tm, km = make_pair(name, n_classes=5, **aam(name, k))
    x, y = contract.features(rng, 6, 40), np.array([0, 1, 2, 3, 4, 1])
    t_out, k_out = run_both(tm, km, x)
    w = tm.classifier.weight.detach().numpy()
    for margin in (0.0, M):
        expect = ref.aam_loss(t_out["embedding"], w, y, S, margin, k, smoothing)
        t_z = torch_margin_logits(torch.from_numpy(t_out["logits"]), torch.as_tensor(y), S, margin)
        t_loss = torch.nn.functional.cross_entropy(t_z, torch.as_tensor(y), label_smoothing=smoothing).item()
        k_z = keras_margin_logits(k_out["logits"], y, S, margin)
        target = tf.one_hot(y, 5) * (1 - smoothing) + smoothing / 5
        k_loss = float(tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(k_z), axis=-1)))
        assert_close(expect, t_loss, f"torch loss m={margin}", tol=1e-5)
        assert_close(expect, k_loss, f"keras loss m={margin}", tol=1e-5)
        if margin == 0.0:
            plain = ref.cross_entropy(S * ref.cosine_logits(t_out["embedding"], w, k), y, smoothing).mean()
            assert_close(plain, expect, "margin 0 = scaled-cosine softmax", tol=1e-9)
        else:
            assert expect > ref.aam_loss(t_out["embedding"], w, y, S, 0.0, k, smoothing)


@pytest.mark.parametrize("name,k", [("resnet18", 1), ("vgg_attention", 3)])
def test_sgd_step(name, k, rng):
    """One plain-SGD step (training mode) on AAM loss + label smoothing + penalty_coef * mean penalty:
    same loss (1e-5), which equals the numpy AAM loss of the train-mode embedding plus the penalty term,
    and the same step for every trainable tensor (1e-3 of its largest entry, as tests/parity
    test_models_parity.test_sgd_step explains)."""
    lr, coef, smoothing = 0.1, 0.5, 0.1
    tm, km = make_pair(name, n_classes=3, **aam(name, k))
    x, lengths, y = contract.features(rng, 4, 61), np.array([61, 50, 33, 61]), np.array([0, 1, 2, 1])
    before = {key: v.numpy().copy() for key, v in tm.state_dict().items()}
    trainable = {key for key, _ in tm.named_parameters()}

    tm.train()
    out = tm(torch.from_numpy(x), torch.as_tensor(lengths))
    z = torch_margin_logits(out["logits"], torch.as_tensor(y), S, M)
    ce = torch.nn.functional.cross_entropy(z, torch.as_tensor(y), label_smoothing=smoothing)
    penalty = out["penalty"].mean()
    loss = ce + coef * penalty
    expect = ref.aam_loss(out["embedding"].detach().numpy(), tm.classifier.weight.detach().numpy(), y, S, M, k,
                          smoothing)
    assert_close(expect, ce.item(), "torch train-mode ce vs numpy", tol=1e-5)
    assert penalty.item() > 1e-3  # the attention penalty is part of the loss
    opt = torch.optim.SGD(tm.parameters(), lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()

    with tf.GradientTape() as tape:
        k_out = km(x, lengths=lengths, training=True)
        k_z = keras_margin_logits(k_out["logits"], y, S, tf.constant(M))
        target = tf.one_hot(y, 3) * (1 - smoothing) + smoothing / 3
        k_ce = tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(k_z), axis=-1))
        k_loss = k_ce + coef * tf.reduce_mean(k_out["penalty"])
    grads = tape.gradient(k_loss, km.trainable_weights)
    keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(grads, km.trainable_weights))
    assert_close(loss.item(), float(k_loss), "loss", tol=1e-5)
    assert_close(penalty.item(), float(tf.reduce_mean(k_out["penalty"])), "penalty", tol=1e-5)

    after_t, after_k = {key: v.numpy() for key, v in tm.state_dict().items()}, keras_to_torch(km)
    assert "classifier.weight" in trainable and "classifier.bias" not in after_t
    for key in trainable:
        step_t, step_k = before[key] - after_t[key], before[key] - after_k[key]
        assert np.abs(step_t).max() > 0, f"{key} did not change"
        assert_close(step_t / np.abs(step_t).max(), step_k / np.abs(step_t).max(), f"step {key}", tol=1e-3)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_tiny_fit_with_aam_loss(backend, tmp_path):
    """``fit`` with ``loss="aam"`` (sub-centres K = 2, margin from the first epoch): the loss decreases,
    loss = ce + penalty_coef * penalty with a positive penalty, the checkpoint reloads with its head, and
    its ONNX export (keras through the torch twin) gives the same embeddings and scaled-cosine logits."""
    module = spkid_torch if backend == "torch" else spkid_keras
    over = {**contract.tiny("vgg_attention"), "head": {"type": "aam", "subcenters": 2}}
    cfg = tiny_config(epochs=4, model_overrides=over, loss="aam", aam_scale=16.0, aam_margin=0.2,
                      aam_margin_warmup_epochs=0, lr=3e-3)
    hist = module.fit(cfg, blobs(), None, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in hist]
    assert losses[-1] < losses[0], losses
    for h in hist:
        assert h["penalty"] > 0 and abs(h["loss"] - (h["ce"] + cfg.penalty_coef * h["penalty"])) < 1e-4
    model = module.load_model(tmp_path / "run", prefer="last")
    assert model.spec.head.type == "aam" and model.spec.head.scale == 16.0 and model.spec.head.subcenters == 2

    pytest.importorskip("onnxruntime")
    from spkid.inference.embedder import load_embedder
    from spkid.inference.export import export_model
    from spkid.inference.onnx import OnnxEmbedder

    onnx_emb = OnnxEmbedder(export_model(tmp_path / "run", tmp_path / "aam.onnx", "onnx"))
    ref_emb = load_embedder(tmp_path / "run")
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((n, 40)).astype(np.float32) for n in (30, 47, 64)]  # blobs' 40 mel bins
    got_logits, want_logits = onnx_emb.logits(feats), ref_emb.logits(feats)
    assert np.abs(got_logits).max() <= 16.0 + 1e-3  # s * cos(theta): bounded by the scale
    assert np.abs(got_logits - want_logits).max() <= 1e-3
    assert np.abs(onnx_emb.embed(feats) - ref_emb.embed(feats)).max() <= 1e-4
