"""PyTorch export: ONNX (dynamic batch/time) against the eager model at three lengths, for every
registered architecture; a trained checkpoint through ``export_model`` + ``OnnxEmbedder``; TorchScript
save + reload."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import spkid_torch  # noqa: E402
from spkid.errors import CheckpointError, ConfigError  # noqa: E402
from spkid.inference.embedder import load_embedder  # noqa: E402
from spkid.inference.export import export_model, open_embedder  # noqa: E402
from spkid.inference.onnx import OnnxEmbedder  # noqa: E402
from spkid.models.specs import TINY_OVERRIDES  # noqa: E402
from spkid_torch.export import OUTPUT_NAMES, load_torchscript, to_onnx, to_torchscript  # noqa: E402
from tests.export_support import LENGTHS, N_MELS, TOL, batch, max_diff, tiny_run, utterances  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomize_bn(model):
    """Non-trivial BatchNorm statistics, so folding BN into the convs is really tested."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", spkid_torch.list_models())
def test_onnx_matches_torch_at_three_lengths(name, tmp_path):
    model = _randomize_bn(spkid_torch.create_model(name, 4, n_mels=N_MELS, **TINY_OVERRIDES[name]))
    path = to_onnx(model, tmp_path / f"{name}.onnx", {"note": "x"})
    proto = onnx.load(str(path))
    time_dim = proto.graph.input[0].type.tensor_type.shape.dim[1]
    assert time_dim.dim_param == "time" and not time_dim.HasField("dim_value")  # dynamic, not frozen
    assert {p.key: p.value for p in proto.metadata_props}["note"] == "x"
    sess = _session(path)
    assert not model.training  # exporting must leave the model in eval mode
    for T in LENGTHS:
        x, lengths = batch(T)
        got = dict(zip(OUTPUT_NAMES, sess.run(None, {"features": x, "lengths": lengths})))
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(lengths))
        for key in OUTPUT_NAMES:
            assert max_diff(got[key], ref[key].numpy()) <= TOL, (name, T, key)
        # masking is traced, not frozen: the padded row equals the same row run alone, unpadded
        alone = sess.run(None, {"features": x[1:, : lengths[1]], "lengths": lengths[1:]})
        assert max_diff(alone[1], got["embedding"][1:]) <= TOL


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    return tiny_run("torch", tmp_path_factory.mktemp("torch_run"))


def test_export_model_onnx_runs_without_torch_api(torch_run, tmp_path):
    path = export_model(torch_run, tmp_path / "m", "onnx")
    assert path.name == "m.onnx"
    ref, emb = load_embedder(torch_run), open_embedder(path)
    assert isinstance(emb, OnnxEmbedder) and emb.backend == "onnx"
    assert emb.metadata["source_backend"] == "torch"
    assert emb.labels.speakers == ref.labels.speakers and emb.model_name == ref.model_name
    assert emb.feature_config == ref.feature_config and emb.config == ref.config
    feats = utterances()
    assert max_diff(emb.embed(feats), ref.embed(feats)) <= TOL
    assert max_diff(emb.logits(feats), ref.logits(feats)) <= TOL
    assert max_diff(emb.attention(feats[2]), ref.attention(feats[2])) <= TOL
    assert [s for s, _ in emb.identify(feats, 2)[0]] == [s for s, _ in ref.identify(feats, 2)[0]]


def test_serving_session_one_thread_no_spinning_answers_alike(torch_run, tmp_path):
    """The service's ONNX session (one intra-op thread, idle threads sleep) gives the default session's numbers."""
    path = export_model(torch_run, tmp_path / "m", "onnx")
    feats = utterances()
    served, plain = open_embedder(path, serving=True), open_embedder(path)
    opts = served.model.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert max_diff(served.embed(feats), plain.embed(feats)) <= TOL


def test_torchscript_save_reload(torch_run, tmp_path):
    path = export_model(torch_run, tmp_path / "m.pt", "torchscript")
    module, meta = load_torchscript(path)
    ref = load_embedder(torch_run)
    assert meta["model"] == ref.model_name and meta["source_backend"] == "torch"
    for T in (LENGTHS[0], LENGTHS[-1]):
        x, lengths = batch(T)
        with torch.no_grad():
            got = module(torch.from_numpy(x), torch.from_numpy(lengths))
            want = ref.model(torch.from_numpy(x), torch.from_numpy(lengths))
        for key, value in zip(OUTPUT_NAMES, got):
            assert max_diff(value.numpy(), want[key].numpy()) <= TOL


def test_to_torchscript_plain_model(tmp_path):
    model = _randomize_bn(spkid_torch.create_model("resnet18", 3, n_mels=N_MELS, **TINY_OVERRIDES["resnet18"]))
    module, meta = load_torchscript(to_torchscript(model, tmp_path / "r.pt", {"a": "1"}))
    x, lengths = batch(LENGTHS[1])
    with torch.no_grad():
        assert max_diff(module(torch.from_numpy(x), torch.from_numpy(lengths))[1],
                        model(torch.from_numpy(x), torch.from_numpy(lengths))["embedding"]) <= TOL
    assert meta == {"a": "1"}


def test_export_errors(torch_run, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(torch_run, tmp_path / "m", "tflite")
    with pytest.raises(CheckpointError):
        export_model(tmp_path / "missing", tmp_path / "m", "onnx")
    not_spkid = tmp_path / "plain.onnx"
    to_onnx(spkid_torch.create_model("vgg_attention", 2, n_mels=N_MELS, **TINY_OVERRIDES["vgg_attention"]), not_spkid)
    with pytest.raises(CheckpointError, match="not a spkid export"):
        OnnxEmbedder(not_spkid)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file")
    with pytest.raises(CheckpointError, match="garbage.onnx"):
        OnnxEmbedder(garbage)
    with pytest.raises(CheckpointError, match="cannot read TorchScript"):
        load_torchscript(garbage)


def test_torch_only_install_is_told_that_keras_export_goes_through_the_keras_twin(torch_run, tmp_path,
                                                                                   monkeypatch):
    import sys

    from spkid.errors import BackendError

    monkeypatch.setitem(sys.modules, "keras", None)  # as if Keras were not installed
    with pytest.raises(BackendError, match=r"Keras export of a PyTorch model goes through its Keras twin.*"
                                           r"pip install 'spkid\[keras\]'"):
        export_model(torch_run, tmp_path / "t", "keras")
    assert list(tmp_path.iterdir()) == []
