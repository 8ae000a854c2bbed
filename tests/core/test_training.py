"""spkid.training and TrainConfig: the framework-free training loop, run through a numpy stand-in backend."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from spkid.training.config import TrainConfig
from spkid._strict import load_yaml_config
from spkid.errors import CheckpointError, ConfigError
from spkid.training.loop import Plateau, run_training
from spkid.fileio import atomic_write
from spkid.training.evaluation import classification_report
from spkid.training.checkpoints import read_checkpoint
from tests.train_cases import NumpyAdapter, blobs, tiny_config


# ------------------------------------------------------------------------------------------ TrainConfig
def test_train_config_defaults_follow_the_paper():
    c = TrainConfig()
    assert (c.lr, c.crop_frames, c.plateau_patience, c.lr_factor, c.optimizer) == (2e-4, 300, 10, 0.5, "adam")


@pytest.mark.parametrize("bad", [
    {"lr": 0}, {"lr": -1.0}, {"lr": float("nan")}, {"epochs": 0}, {"batch_size": 0}, {"crop_frames": 0},
    {"lr_factor": 1.0}, {"min_lr": 1.0}, {"label_smoothing": 1.0}, {"augment_prob": 1.5},
    {"gain_db": (3.0, -3.0)}, {"noise_copies": 2}, {"hop_frames": 400}, {"model": "vgg19"},
    {"model_overrides": {"vgg": {"channels": []}}}, {"devices": "tpu"}, {"devices": "0"}, {"val_fraction": 1.0},
    {"grad_accumulation": 0},
    {"optimizer": "rmsprop"}, {"epochs": 2.5}, {"mixed_precision": "yes"}, {"batch_size": True},
])
def test_train_config_rejects_impossible_values(bad):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict(bad)
    assert "TrainConfig" in str(e.value)


def test_train_config_rejects_unknown_keys_and_round_trips_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    p = tmp_path / "c.yaml"
    p.write_text("model: resnet18\nlr: 1.0e-3\ngain_db: [-6, 6]\nmodel_overrides: {resnet: {width: 8}}\n")
    c = TrainConfig.from_dict(load_yaml_config(p))
    assert c.gain_db == (-6.0, 6.0) and c.model_overrides == {"resnet": {"width": 8}}
    assert TrainConfig.from_dict(json.loads(c.to_json())) == c


# -------------------------------------------------------------------------------------------- plateau
def test_plateau_halves_after_patience_and_stops_at_min_lr():
    p = Plateau(lr=1.0, patience=2, factor=0.5, min_lr=0.3)
    lrs = [(p.update(v), p.lr)[1] for v in [5, 4, 4, 4, 3, 3, 3, 3, 3, 3]]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3]
    q = Plateau.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q == p
    assert Plateau.from_dict(Plateau(1.0, 1, 0.5, 0.1).to_dict()).best == math.inf


# --------------------------------------------------------------------------------------------- writes
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, boom)
    assert target.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]


def test_classification_report_on_known_logits():
    logits = np.array([[3, 2, 1], [1, 3, 2], [3, 1, 2], [1, 2, 3]], float)
    rep = classification_report(logits, np.array([0, 1, 1, 0]), ["a", "b", "c"])
    assert rep["top1"] == 0.5 and rep["n"] == 4
    assert rep["per_speaker"] == {"a": 0.5, "b": 0.5, "c": None}
    assert rep["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert rep["top5"] == 1.0  # k is capped at the number of classes


# ---------------------------------------------------------------------------------------- run_training
def _fit(tmp_path, name, epochs, **kw):
    return run_training(NumpyAdapter(), tiny_config(epochs=epochs, lr=0.5), blobs(), kw.pop("val", blobs(2, seed=1)),
                        tmp_path / name, progress=False, **kw)


def test_run_training_writes_history_and_keeps_only_referenced_checkpoints(tmp_path):
    hist = _fit(tmp_path, "r", 4)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert {"val_loss", "val_top1", "val_top5", "lr"} <= set(hist[0])
    ck = tmp_path / "r" / "checkpoints"
    last = json.loads((ck / "last.json").read_text())
    best = json.loads((ck / "best.json").read_text())
    assert last["epoch"] == 4 and best["epoch"] == max(
        hist, key=lambda h: (h["val_top1"], -h["val_loss"]))["epoch"]
    names = {p.name for p in ck.iterdir()}
    assert names == {"last.json", "best.json", last["weights"], best["weights"],
                     last["weights"].replace(".npz", ".json"), best["weights"].replace(".npz", ".json")}
    rows = (tmp_path / "r" / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("epoch,lr,loss")
    meta, state = read_checkpoint(tmp_path / "r", prefer="last")
    assert meta["backend"] == "numpy" and meta["speakers"] == ["spk0", "spk1", "spk2"] and state.is_file()
    assert meta["train_config"]["epochs"] == 4 and meta["spec"]["n_mels"] == 40


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = _fit(tmp_path, "a", 3)
    _fit(tmp_path, "b", 2)
    resumed = run_training(NumpyAdapter(), tiny_config(epochs=3, lr=0.5), blobs(), blobs(2, seed=1),
                           tmp_path / "b", resume=True, progress=False)
    assert resumed == straight
    wa = np.load(read_checkpoint(tmp_path / "a", prefer="last")[1])
    wb = np.load(read_checkpoint(tmp_path / "b", prefer="last")[1])
    np.testing.assert_array_equal(wa["w"], wb["w"])


def test_a_used_run_dir_needs_resume_and_a_matching_recipe(tmp_path):
    _fit(tmp_path, "r", 1)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        _fit(tmp_path, "r", 2)
    with pytest.raises(CheckpointError, match=r"another train_config.*'lr': 0.5.*'lr': 0.1") as e:
        run_training(NumpyAdapter(), tiny_config(epochs=2, lr=0.1), blobs(), None, tmp_path / "r", resume=True,
                     progress=False)
    assert "last.json" in str(e.value)


def test_plateau_lowers_lr_in_history(tmp_path):
    # with patience 1 any stalled epoch lowers the lr; it never rises and starts at config.lr
    hist = run_training(NumpyAdapter(), tiny_config(epochs=4, lr=1e-3, min_lr=1e-6, plateau_patience=1),
                        blobs(), blobs(2, seed=1), tmp_path / "p", progress=False,
                        callbacks=[lambda row: None])
    lrs = [h["lr"] for h in hist]
    assert lrs[0] == 1e-3 and all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_cosine_schedule_in_history_and_resume(tmp_path):
    """lr_schedule="cosine": lr(e) = min_lr + (lr - min_lr)(1 + cos(pi e / epochs)) / 2 per 0-based epoch,
    whatever the validation does; a resumed run continues the same curve."""
    cfg = tiny_config(epochs=4, lr=1e-2, min_lr=1e-4, lr_schedule="cosine", plateau_patience=1)
    hist = run_training(NumpyAdapter(), cfg, blobs(), blobs(2, seed=1), tmp_path / "c", progress=False)
    expect = [1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [h["lr"] for h in hist] == pytest.approx(expect)
    run_training(NumpyAdapter(), dataclasses.replace(cfg, epochs=2), blobs(), None, tmp_path / "r", progress=False)
    resumed = run_training(NumpyAdapter(), cfg, blobs(), None, tmp_path / "r", resume=True, progress=False)
    assert [h["lr"] for h in resumed][2:] == pytest.approx(expect[2:])


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_warmup_ramps_the_schedule_and_resumes(tmp_path, schedule):
    """warmup_epochs=W: epoch e < W trains at (e + 1) / (W + 1) of the schedule's rate, then the schedule
    itself; a run resumed inside the ramp continues it."""
    base = tiny_config(epochs=5, lr=1e-2, min_lr=1e-4, lr_schedule=schedule, plateau_patience=100)
    plain = [h["lr"] for h in run_training(NumpyAdapter(), base, blobs(), None, tmp_path / "a", progress=False)]
    cfg = dataclasses.replace(base, warmup_epochs=3)
    hist = run_training(NumpyAdapter(), cfg, blobs(), None, tmp_path / "w", progress=False)
    expect = [lr * ((e + 1) / 4 if e < 3 else 1.0) for e, lr in enumerate(plain)]
    assert [h["lr"] for h in hist] == pytest.approx(expect)
    assert hist[0]["lr"] == pytest.approx(plain[0] / 4) and hist[3]["lr"] == pytest.approx(plain[3])
    run_training(NumpyAdapter(), dataclasses.replace(cfg, epochs=2), blobs(), None, tmp_path / "r", progress=False)
    resumed = run_training(NumpyAdapter(), cfg, blobs(), None, tmp_path / "r", resume=True, progress=False)
    assert [h["lr"] for h in resumed][2:] == pytest.approx(expect[2:])  # (cosine's first two had epochs=2)


def test_warmup_epochs_is_validated():
    with pytest.raises(ConfigError, match="warmup_epochs must be >= 0"):
        tiny_config(warmup_epochs=-1)


def test_callback_can_stop_training(tmp_path):
    hist = _fit(tmp_path, "s", 5, callbacks=[lambda row: row["epoch"] >= 2])
    assert len(hist) == 2


# ------------------------------------------------------------------------------ adapter defaults
def test_adapter_base_gives_single_process_defaults():
    from spkid.training.loop import AdapterBase

    a = NumpyAdapter()
    assert isinstance(a, AdapterBase) and (a.world, a.is_main) == (1, True)
    marker = object()
    assert a.share(marker) is marker and a.sync() is None and a.summary_writer(None) is None
    with pytest.raises(NotImplementedError):
        AdapterBase().train_step(None, None, 0.1)


class _Rank(NumpyAdapter):
    """A stand-in for one rank of a data-parallel job: records the loop's calls of sync and share."""

    def __init__(self, is_main: bool):
        self.main, self.calls = is_main, []

    def build(self, config, spec, n_classes):
        super().build(config, spec, n_classes)
        self.world, self.is_main = 2, self.main

    def sync(self):
        self.calls.append("sync")

    def share(self, obj):
        self.calls.append("share")
        return obj


def test_run_training_uses_the_adapters_world_sync_and_share(tmp_path):
    """The loop calls sync at each epoch's end and share twice (the row, then a barrier); a rank that is
    not the main one neither validates nor writes anything."""
    main, other = _Rank(True), _Rank(False)
    hist = run_training(main, tiny_config(epochs=2, lr=0.5), blobs(), blobs(2, seed=1), tmp_path / "m",
                        progress=False)
    assert main.calls == ["sync", "share", "share"] * 2 and "val_top1" in hist[0]
    assert (tmp_path / "m" / "checkpoints" / "last.json").is_file()
    hist = run_training(other, tiny_config(epochs=2, lr=0.5), blobs(), blobs(2, seed=1), tmp_path / "o",
                        progress=False)
    assert other.calls == ["sync", "share", "share"] * 2 and "val_top1" not in hist[0]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []


# ------------------------------------------------------------------------------ the backend boundary
def test_get_backend_refuses_unknown_and_missing_backends(monkeypatch):
    import sys

    from spkid.backends import get_backend
    from spkid.errors import BackendError

    with pytest.raises(BackendError, match="unknown backend 'jax'; valid backends: torch, keras"):
        get_backend("jax")
    for name in ("torch", "keras"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the framework were not installed
        with pytest.raises(BackendError, match=rf"backend '{name}' is not installed .*pip install 'spkid\[{name}\]'"):
            get_backend(name)


def test_backends_satisfy_the_protocol_without_importing_their_framework():
    """``get_backend(name)`` is a :class:`spkid.backends.Backend`; getting it, its name, export formats
    and model list load no framework (a fresh interpreter checks)."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    names = [n for n in ("torch", "keras") if importlib.util.find_spec(n) is not None]
    if not names:
        pytest.skip("no backend installed")
    code = (
        "import sys\n"
        "from spkid.backends import Backend, get_backend\n"
        "from spkid.models.specs import MODEL_NAMES\n"
        f"for name in {names!r}:\n"
        "    b = get_backend(name)\n"
        "    assert isinstance(b, Backend) and b.name == name, b\n"
        "    assert b.list_models() == list(MODEL_NAMES) and 'onnx' in b.export_formats\n"
        "    assert get_backend(name) is b\n"
        "print(','.join(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'tensorflow', 'keras'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"a framework was imported: {out.stdout.strip()}"


class _Counting(NumpyAdapter):
    def build(self, config, spec, n_classes):
        super().build(config, spec, n_classes)
        self.seen = []

    def train_step(self, x, y, lr):
        self.seen.append((x.copy(), y.copy()))
        return super().train_step(x, y, lr)


@pytest.mark.parametrize("max_steps, per_epoch", [(1, None), (4, None), (5, 2), (7, 4)])
def test_max_steps_trains_exactly_that_many_steps_and_resume_continues_the_stream(tmp_path, max_steps, per_epoch):
    cfg = tiny_config(epochs=4, lr=0.5, steps_per_epoch=per_epoch, time_masks=1)  # 18 utts / 6: 3 steps a pass
    whole = _Counting()
    run_training(whole, cfg, blobs(), None, tmp_path / "w", progress=False)
    assert len(whole.seen) == 4 * (per_epoch or 3)
    first = _Counting()
    run_training(first, cfg.replace(max_steps=max_steps), blobs(), None, tmp_path / "r", progress=False)
    assert len(first.seen) == max_steps
    rest = _Counting()
    run_training(rest, cfg, blobs(), None, tmp_path / "r", resume=True, progress=False)
    got = first.seen + rest.seen
    assert len(got) == len(whole.seen)
    for (x, y), (wx, wy) in zip(got, whole.seen):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)
    wa = np.load(read_checkpoint(tmp_path / "w", prefer="last")[1])
    wb = np.load(read_checkpoint(tmp_path / "r", prefer="last")[1])
    np.testing.assert_array_equal(wa["w"], wb["w"])
