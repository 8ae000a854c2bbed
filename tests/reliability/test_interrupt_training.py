"""SIGKILL `spkid train` during and between checkpoint writes: the last complete checkpoint always loads,
and `--resume` finishes with weights bit-for-bit equal to an uninterrupted run (CPU, fixed seed).

The training process runs a small driver (below) that wraps ``os.replace`` (the rename step of every
atomic write in :mod:`spkid.fileio`) and the backend's state-file writer, so it can stop at an exact
point -- half-way through writing a state file, before a rename, after the last rename of an epoch --
touch a marker file and wait there to be killed. The kill itself is a real ``SIGKILL`` of the process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spkid.data.cache import build_cache
from spkid.app.cli import main
from spkid.features.config import FeatureConfig
from spkid.inference.embedder import load_embedder
from spkid.data.manifest import Manifest
from spkid.data.layouts.registry import load_dataset
from spkid.training.checkpoints import read_checkpoint
from tests.train_cases import tiny_config

torch = pytest.importorskip("torch")
from spkid_torch import train as torch_train  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DRIVER = r'''
import os, sys, time
from pathlib import Path

kind, target, count = os.environ["KILL_KIND"], os.environ["KILL_TARGET"], int(os.environ["KILL_COUNT"])
marker = Path(os.environ["KILL_MARKER"])
calls = {}


def stop_here():
    marker.touch()
    time.sleep(600)  # until SIGKILL


def nth(name):
    calls[name] = calls.get(name, 0) + 1
    return calls[name] == count


real_replace = os.replace


def replace(src, dst, *args, **kwargs):
    name = Path(dst).name
    hit = name == target and nth(name)
    if hit and kind == "before":
        stop_here()
    real_replace(src, dst, *args, **kwargs)
    if hit and kind == "after":
        stop_here()


os.replace = replace
if kind == "partial":  # the backend's state writer dies half-way through its file
    if os.environ["BACKEND"] == "torch":
        import torch
        owner, attr, file_arg = torch, "save", 1  # torch.save(obj, f)
    else:
        import numpy
        owner, attr, file_arg = numpy, "savez", 0  # numpy.savez(f, **arrays)
    real_save = getattr(owner, attr)

    def save(*args, **kwargs):
        real_save(*args, **kwargs)
        if nth("state"):
            f = args[file_arg]
            if hasattr(f, "flush"):
                f.flush()
            path = Path(getattr(f, "name", f))
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            stop_here()

    setattr(owner, attr, save)

from spkid.app.cli import main
sys.exit(main(sys.argv[1:]))
'''

# (kind, target, count, epoch of the last complete checkpoint after the kill); epochs=3 in every run
KILL_POINTS = {
    "during-state-write": ("partial", "state", 2, 1),
    "state-written-not-renamed": ("before", "epoch-0002.pt", 1, 1),
    "state-renamed-metadata-not-written": ("before", "epoch-0002.json", 1, 1),
    "last-json-not-yet-updated": ("before", "last.json", 2, 1),
    "between-checkpoints": ("after", "last.json", 2, 2),
}


@pytest.fixture(scope="module")
def cache(fsdd_dir, tmp_path_factory):
    """30 real FSDD files (5 speakers x 6 takes of the training indices) at 8 kHz."""
    full = load_dataset(fsdd_dir, "pattern", pattern="fsdd")
    keep = {f"{d}_{s}_{i}.wav" for s in ("george", "jackson", "lucas", "nicolas", "theo") for d in (1, 7)
            for i in (5, 6, 7)}
    manifest = Manifest(full.root, tuple(u for u in full if u.path in keep))
    assert len(manifest.utterances) == 30
    out = tmp_path_factory.mktemp("cache") / "cache"
    report = build_cache(manifest, out, FeatureConfig(sr=8000, n_fft=256), progress=False)
    assert report.built == 30
    return out


def _args(backend: str, cache: Path, run: Path) -> list[str]:
    tiny = json.dumps(tiny_config().model_overrides)
    return ["train", "--backend", backend, "--cache", str(cache), "--out", str(run), "--model", "vgg_attention",
            "--model-overrides", tiny, "--batch-size", "8", "--crop-frames", "32", "--lr", "3e-3", "--epochs", "3",
            "--val-fraction", "0.2", "--gain-db", "[-3, 3]", "--seed", "7", "--no-progress"]


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    """Uninterrupted torch run: epoch -> weights."""
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(_args("torch", cache, run)) == 0
    return _weights(torch_train.load_model(run, prefer="last"))


def _weights(model) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def kill_during(backend: str, args: list[str], kind: str, target: str, count: int, tmp: Path) -> None:
    """Run `spkid ARGS` in a child that stops at the kill point; SIGKILL it there."""
    marker = tmp / "at-kill-point"
    env = {**os.environ, "KILL_KIND": kind, "KILL_TARGET": target, "KILL_COUNT": str(count),
           "KILL_MARKER": str(marker), "BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not marker.exists():
        proc.kill()
        pytest.fail(f"the run never reached the kill point: {proc.communicate()}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_equals_uninterrupted(point, cache, reference, tmp_path):
    kind, target, count, complete = KILL_POINTS[point]
    run = tmp_path / "run"
    kill_during("torch", _args("torch", cache, run), kind, target, count, tmp_path)

    meta, state = read_checkpoint(run, prefer="last")  # verified: sha256 of a complete state file
    assert meta["epoch"] == complete and state.name == f"epoch-{complete:04d}.pt"
    assert load_embedder(run).labels.speakers  # the best checkpoint loads for inference too
    half_written = [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    if kind in ("partial", "before") and target.endswith(("state", ".pt")):
        assert half_written  # the interrupted write left only a temp file behind, never read

    assert main(_args("torch", cache, run) + ["--resume"]) == 0
    meta, _ = read_checkpoint(run, prefer="last")
    assert meta["epoch"] == 3 and [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]  # resume cleaned up
    got = _weights(torch_train.load_model(run, prefer="last"))
    assert got.keys() == reference.keys()
    for k in reference:
        np.testing.assert_array_equal(got[k], reference[k], err_msg=k)


def test_keras_sigkill_during_state_write_then_resume_equals_uninterrupted(cache, tmp_path):
    pytest.importorskip("keras")
    from spkid_keras import train as keras_train

    def weights(run):
        return [np.asarray(w) for w in keras_train.load_model(run, prefer="last").get_weights()]

    ref = tmp_path / "ref"
    assert main(_args("keras", cache, ref)) == 0
    run = tmp_path / "run"
    kill_during("keras", _args("keras", cache, run), "partial", "state", 2, tmp_path)
    meta, state = read_checkpoint(run, prefer="last")
    assert meta["epoch"] == 1 and state.suffix == ".npz"
    assert main(_args("keras", cache, run) + ["--resume"]) == 0
    a, b = weights(ref), weights(run)
    assert len(a) == len(b) > 4
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
