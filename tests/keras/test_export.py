"""Keras export: a Keras-trained checkpoint to ONNX (through the weight port) matches the Keras model at
three lengths; Keras- and PyTorch-trained exports are read by the same runtime code; ``.keras`` save +
reload."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from spkid.inference.embedder import load_embedder  # noqa: E402
from spkid.inference.export import export_model  # noqa: E402
from spkid.inference.onnx import OnnxEmbedder  # noqa: E402
from spkid_keras.export import load_keras  # noqa: E402
from tests.export_support import LENGTHS, TOL, batch, max_diff, tiny_run, utterances  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    return tiny_run("keras", tmp_path_factory.mktemp("keras_run"), model="resnet18")


def _keras_outputs(model, x, lengths) -> dict:
    out = model(x, lengths=lengths.astype(np.int32), training=False)
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


def test_keras_checkpoint_to_onnx_matches_keras(keras_run, tmp_path):
    emb = OnnxEmbedder(export_model(keras_run, tmp_path / "k.onnx", "onnx"))
    ref = load_embedder(keras_run)
    assert emb.metadata["source_backend"] == "keras" and emb.labels.speakers == ref.labels.speakers
    for T in LENGTHS:  # the raw graph, padded batch of two
        x, lengths = batch(T)
        got = emb._run(x, lengths)
        want = _keras_outputs(ref.model, x, lengths)
        for key in ("logits", "embedding", "attention"):
            assert max_diff(got[key], want[key]) <= TOL, (T, key)
    feats = utterances()
    assert max_diff(emb.embed(feats), ref.embed(feats)) <= TOL
    assert max_diff(emb.logits(feats), ref.logits(feats)) <= TOL


def test_keras_and_torch_exports_share_the_runtime(keras_run, tmp_path):
    torch_run = tiny_run("torch", tmp_path / "torch_run", model="resnet18")
    paths = {b: export_model(run, tmp_path / f"{b}.onnx", "onnx") for b, run in
             (("keras", keras_run), ("torch", torch_run))}
    embedders = {b: OnnxEmbedder(p) for b, p in paths.items()}
    sessions = {b: e.model for b, e in embedders.items()}
    io = {b: ([(i.name, i.type) for i in s.get_inputs()], [o.name for o in s.get_outputs()])
          for b, s in sessions.items()}
    assert io["keras"] == io["torch"]
    keys = {b: set(s.get_modelmeta().custom_metadata_map) for b, s in sessions.items()}
    assert keys["keras"] == keys["torch"]
    feats = utterances(seed=3)
    for b, e in embedders.items():
        ref = load_embedder(keras_run if b == "keras" else torch_run)
        assert e.embed(feats).shape == (len(feats), 16)
        assert max_diff(e.embed(feats), ref.embed(feats)) <= TOL, b


def test_keras_format_save_reload(keras_run, tmp_path):
    path = export_model(keras_run, tmp_path / "k", "keras")
    assert path.name == "k.keras" and path.with_suffix(".json").is_file()
    model, meta = load_keras(path)
    ref = load_embedder(keras_run)
    assert meta["model"] == "resnet18" and meta["source_backend"] == "keras"
    x, lengths = batch(LENGTHS[-1])
    got, want = _keras_outputs(model, x, lengths), _keras_outputs(ref.model, x, lengths)
    assert max_diff(got["embedding"], want["embedding"]) <= TOL


def test_torch_checkpoint_to_keras_format(tmp_path):
    torch_run = tiny_run("torch", tmp_path / "torch_run", model="vgg_attention")
    model, _ = load_keras(export_model(torch_run, tmp_path / "t.keras", "keras"))
    ref = load_embedder(torch_run)
    x, lengths = batch(LENGTHS[1])
    assert max_diff(_keras_outputs(model, x, lengths)["logits"], ref._forward(x, lengths)["logits"]) <= TOL


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_keras_only_install_is_told_that_onnx_goes_through_the_torch_twin(keras_run, tmp_path, monkeypatch, fmt):
    """Without PyTorch (simulated: ``import torch`` fails) a Keras model cannot reach ONNX / TorchScript,
    and the error says why and what to install; the native ``.keras`` export still works."""
    import sys

    from spkid.errors import BackendError

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendError) as e:
        export_model(keras_run, tmp_path / "k", fmt)
    msg = str(e.value)
    assert "ONNX/TorchScript export of a Keras model goes through its PyTorch twin" in msg
    assert "pip install 'spkid[torch]'" in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    assert export_model(keras_run, tmp_path / "k", "keras").is_file()
