"""``spkid.backends.get_backend("keras")``: the keras backend object behind the typed boundary."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras")

import spkid_keras  # noqa: E402
from spkid.backends import Backend, get_backend  # noqa: E402
from spkid.training.loop import AdapterBase  # noqa: E402
from spkid_keras.backend import BACKEND  # noqa: E402
from tests import model_contract as contract  # noqa: E402


def test_get_backend_returns_the_keras_backend_object():
    b = get_backend("keras")
    assert b is BACKEND and isinstance(b, Backend) and b.name == "keras"
    assert set(b.export_formats) == {"onnx", "torchscript", "keras"}
    assert b.list_models() == spkid_keras.list_models()


def test_models_forward_and_adapter_through_the_backend(rng):
    b = get_backend("keras")
    model = b.create_model("vgg_attention", 3, **contract.tiny("vgg_attention"))
    assert isinstance(model, spkid_keras.SpeakerNet) and b.count_params(model) == spkid_keras.count_params(model)
    out = b.forward_fn(model)(contract.features(rng, 2, 50), np.array([50, 31]))
    assert set(out) == contract.KEYS and all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())
    adapter = b.adapter(model)
    assert isinstance(adapter, AdapterBase) and adapter.backend == "keras" and adapter.initial_model is model
    assert (adapter.world, adapter.is_main) == (1, True)
