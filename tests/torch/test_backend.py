"""``spkid.backends.get_backend("torch")``: the torch backend object behind the typed boundary."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import spkid_torch  # noqa: E402
from spkid.backends import Backend, get_backend  # noqa: E402
from spkid.training.loop import AdapterBase  # noqa: E402
from spkid_torch.backend import BACKEND  # noqa: E402
from tests import model_contract as contract  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_get_backend_returns_the_torch_backend_object():
    b = get_backend("torch")
    assert b is BACKEND and isinstance(b, Backend) and b.name == "torch"
    assert set(b.export_formats) == {"onnx", "torchscript", "keras"}
    assert b.list_models() == spkid_torch.list_models()


def test_models_forward_and_adapter_through_the_backend(rng):
    b = get_backend("torch")
    model = b.create_model("vgg_attention", 3, **contract.tiny("vgg_attention"))
    assert isinstance(model, spkid_torch.SpeakerNet) and b.count_params(model) == spkid_torch.count_params(model)
    x = contract.features(rng, 2, 50)
    out = b.forward_fn(model)(x, np.array([50, 31]))
    assert set(out) == contract.KEYS and all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())
    assert not model.training  # the forward function runs in eval mode
    adapter = b.adapter(model)
    assert isinstance(adapter, AdapterBase) and adapter.backend == "torch" and adapter.initial_model is model
    assert (adapter.world, adapter.is_main) == (1, True)  # the defaults until build joins a job


def test_export_refuses_unknown_formats(tmp_path):
    from spkid.errors import ConfigError

    model = BACKEND.create_model("vgg_attention", 2, **contract.tiny("vgg_attention"))
    with pytest.raises(ConfigError, match="does not export 'tflite'"):
        BACKEND.export(model, tmp_path / "m.tflite", "tflite", {})
