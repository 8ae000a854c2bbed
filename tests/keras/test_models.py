"""Keras models: every registered model against the shared contract (tests/model_contract.py), plus
.keras serialisation and tf.function training with a variable time axis."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import spkid_keras  # noqa: E402
from spkid.models.specs import MODEL_NAMES, model_spec  # noqa: E402
from spkid_keras.models import SpeakerNet  # noqa: E402
from tests import model_contract as contract  # noqa: E402


class KerasBackend:
    create = staticmethod(spkid_keras.create_model)

    @staticmethod
    def run(model, x, lengths=None):
        out = model(x, lengths=lengths, training=False)
        return {k: np.asarray(v) for k, v in out.items()}

    @staticmethod
    def reload(model, tmp_path):
        path = tmp_path / "model.keras"
        model.save(path)
        return keras.saving.load_model(path, safe_mode=True)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


class TestContract(contract.ModelContract):
    backend = KerasBackend


def test_list_models():
    assert spkid_keras.list_models() == list(MODEL_NAMES)


def test_config_round_trip():
    over = contract.tiny("resnet50", attention={"pool": "concat"})
    model = spkid_keras.create_model("resnet50", 7, **over)
    again = SpeakerNet.from_config(model.get_config())
    assert (again.name, again.n_classes, again.spec) == ("resnet50", 7, model_spec("resnet50", **over))
    assert [w.shape for w in again.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tf_function_training(name, rng):
    """A custom train step under tf.function with a variable time axis: every trainable weight gets a
    finite, non-zero gradient; BatchNorm moving statistics update in training mode only."""
    model = spkid_keras.create_model(name, 3, **contract.tiny(name))
    opt = keras.optimizers.SGD(0.01)
    spec = (tf.TensorSpec([None, None, 40], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32))

    @tf.function(input_signature=spec)
    def step(x, lengths, y):
        with tf.GradientTape() as tape:
            out = model(x, lengths=lengths, training=True)
            ce = keras.losses.sparse_categorical_crossentropy(y, out["logits"], from_logits=True)
            loss = tf.reduce_mean(ce) + 0.5 * tf.reduce_mean(out["penalty"])
        grads = tape.gradient(loss, model.trainable_weights)
        opt.apply_gradients(zip(grads, model.trainable_weights))
        return grads

    moving = [w for w in model.non_trainable_weights if "moving_mean" in w.path]
    before = [w.numpy().copy() for w in moving]
    for T in (64, 37):  # one trace, two lengths
        grads = step(contract.features(rng, 4, T), np.array([T, T - 5, 20, T], np.int32), np.array([0, 1, 2, 0], np.int32))
    for w, g in zip(model.trainable_weights, grads):
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0, w.path
    assert step.experimental_get_tracing_count() == 1
    assert all(not np.allclose(b, w.numpy()) for b, w in zip(before, moving))
    frozen = [w.numpy().copy() for w in moving]
    KerasBackend.run(model, contract.features(rng, 2, 50))
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(frozen, moving))  # eval leaves stats alone
