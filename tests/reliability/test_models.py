"""Bad input to the models and the weight converter: clear errors, nothing half-done."""
from __future__ import annotations

import os

import numpy as np
import pytest

from spkid.errors import CheckpointError, ConfigError
from tests import model_contract as contract

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def keras_pair():
    pytest.importorskip("keras")
    import spkid_keras
    from spkid_keras.convert import keras_to_torch

    target = spkid_keras.create_model("resnet18", 4, **contract.tiny("resnet18"))
    source = spkid_keras.create_model("resnet18", 4, **contract.tiny("resnet18"))
    return target, keras_to_torch(source)


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda sd: sd.pop("trunk.stages.1.0.proj.bn.running_var"), r"missing \(1\): trunk\.stages\.1\.0\.proj\.bn\.running_var"),
        (lambda sd: sd.__setitem__("head.extra.weight", np.zeros(3)), r"unexpected \(1\): head\.extra\.weight"),
        (lambda sd: sd.__setitem__("classifier.weight", np.zeros((5, 16))), r"mis-shaped \(1\): classifier\.weight"),
    ],
)
def test_converter_rejects_mismatch(keras_pair, edit, message):
    from spkid_keras.convert import torch_to_keras

    target, sd = keras_pair
    sd = dict(sd)
    edit(sd)
    before = _weights(target)
    with pytest.raises(CheckpointError, match=message):
        torch_to_keras(sd, target)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, target.weights))  # untouched


def test_converter_rejects_other_architecture(keras_pair):
    import spkid_keras
    from spkid_keras.convert import keras_to_torch, torch_to_keras

    target, _ = keras_pair
    vgg = keras_to_torch(spkid_keras.create_model("vgg_attention", 4, **contract.tiny("vgg_attention")))
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): .*trunk\.stem\.conv\.weight.*unexpected"):
        torch_to_keras(vgg, target)
    wider = keras_to_torch(spkid_keras.create_model("resnet18", 4, **contract.tiny("resnet18", resnet={"width": 8})))
    with pytest.raises(CheckpointError, match=r"mis-shaped \(\d+\): .*trunk\.stem\.conv\.weight \(8, 1, 7, 7\)"):
        torch_to_keras(wider, target)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_out_of_range_lengths_are_clamped(backend, rng):
    """lengths 0 count as 1 frame and lengths > T as T: finite outputs, never NaN from an empty softmax."""
    pytest.importorskip(backend)
    from spkid.backends import get_backend

    model = get_backend(backend).create_model("vgg_attention", 3, **contract.tiny("vgg_attention"))
    x = contract.features(rng, 3, 40)
    lengths = np.array([0, 40, 999])
    if backend == "torch":
        import torch

        with torch.no_grad():
            out = {k: v.numpy() for k, v in model.eval()(torch.from_numpy(x), torch.as_tensor(lengths)).items()}
            full = model(torch.from_numpy(x))["logits"].numpy()
    else:
        out = {k: np.asarray(v) for k, v in model(x, lengths=lengths).items()}
        full = np.asarray(model(x)["logits"])
    assert all(np.isfinite(v).all() for v in out.values())
    assert (out["attention"][0, :, 1:] == 0).all()  # only the first pooled frame is valid
    np.testing.assert_allclose(out["logits"][1:], full[1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_classes", [0, -3, True, False, 2.0, "3", None])
def test_registry_refuses_impossible_class_counts(n_classes):
    """The one framework-free check both backends' ``create_model`` run: n_classes is an int >= 1."""
    from spkid.models.registry import check_create_args

    with pytest.raises(ConfigError, match=rf"n_classes must be an int >= 1, got {n_classes!r}"):
        check_create_args("vgg_attention", n_classes)


def test_registry_returns_the_spec_and_lists_the_models():
    from spkid.models.registry import check_create_args, list_models
    from spkid.models.specs import MODEL_NAMES, model_spec

    assert list_models() == list(MODEL_NAMES)
    over = contract.tiny("resnet18")
    assert check_create_args("resnet18", 1, **over) == model_spec("resnet18", **over)
    with pytest.raises(ConfigError, match="valid models: " + ", ".join(MODEL_NAMES)):
        check_create_args("resnet19", 3)
    with pytest.raises(ConfigError, match="unknown key"):
        check_create_args("resnet18", 3, resnet={"widht": 4})
