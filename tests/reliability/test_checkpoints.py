"""Bad checkpoints: missing, corrupt, truncated, tampered, hostile, or made for another model/backend.

Every case must end in a CheckpointError that names the offending file -- never a traceback from deep
inside torch / numpy, and never unpickling untrusted data.
"""
from __future__ import annotations

import json
import pickle
import shutil

import pytest

from spkid.errors import CheckpointError
from spkid.inference.embedder import load_embedder
from spkid.training.checkpoints import read_checkpoint, sha256_file
from tests.train_cases import blobs, tiny_config

torch = pytest.importorskip("torch")
from spkid_torch import train  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ck") / "run"
    train.fit(tiny_config(epochs=1), blobs(), None, run, progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def _state(run):
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    return run / "checkpoints" / meta["weights"]


def _reseal(run, state):
    """An attacker who also rewrites the recorded sha256 (in every metadata file)."""
    for f in (run / "checkpoints").glob("*.json"):
        meta = json.loads(f.read_text())
        meta["sha256"] = sha256_file(state)
        f.write_text(json.dumps(meta))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found") as e:
        load_embedder(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.json")


def test_corrupt_metadata(run):
    (run / "checkpoints" / "best.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint metadata") as e:
        train.load_model(run)
    assert "best.json" in str(e.value)
    (run / "checkpoints" / "best.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(CheckpointError, match="not a spkid checkpoint"):
        train.load_model(run)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_truncated_tampered_or_missing_state(run, damage):
    state = _state(run)
    data = state.read_bytes()
    if damage == "truncate":
        state.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        state.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        state.unlink()
    with pytest.raises(CheckpointError, match="sha256 mismatch|state file missing") as e:
        load_embedder(run)
    assert state.name in str(e.value)
    with pytest.raises(CheckpointError):  # resuming refuses it too
        train.fit(tiny_config(epochs=2), blobs(), None, run, resume=True, progress=False)


def test_resealed_garbage_and_hostile_pickles_are_refused(run, tmp_path):
    state = _state(run)
    state.write_bytes(b"garbage" * 10)
    _reseal(run, state)
    with pytest.raises(CheckpointError, match="cannot read torch checkpoint") as e:
        train.load_model(run)
    assert state.name in str(e.value)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # unpickling it would create `marker`
            return (open, (str(marker), "w"))

    torch.save({"model": Evil()}, state)
    _reseal(run, state)
    with pytest.raises(CheckpointError, match="cannot read torch checkpoint"):
        train.load_model(run)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Evil())).close()  # a naive unpickle does run the payload
    assert marker.exists()


def test_other_architecture_or_backend_is_refused_showing_both(run):
    with pytest.raises(CheckpointError) as e:
        train.fit(tiny_config(epochs=2, model="resnet18", model_overrides={"resnet": {"width": 4}}), blobs(), None,
                  run, resume=True, progress=False)
    assert "another model" in str(e.value) and "vgg_attention" in str(e.value) and "resnet18" in str(e.value)
    meta_path = run / "checkpoints" / "best.json"
    meta = json.loads(meta_path.read_text())
    meta["spec"]["embedding_dim"] = 32  # metadata now describes a different network than the weights
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        train.load_model(run)
    meta["backend"] = "keras"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="another backend.*keras.*torch"):
        train.load_model(run)
