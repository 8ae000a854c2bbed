"""``spkid demo`` end to end on tiny data: the synthetic corpus (torch) and an FSDD-style folder (keras)."""
from __future__ import annotations

import json
import shutil

import pytest

from spkid.app.cli import main

FIGURES = ("history", "confusion", "embeddings", "attention")


def _check_outputs(out, n_test: int) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == n_test and 0.0 <= metrics["test_top1"] <= metrics["test_top5"] <= 1.0
    for name in FIGURES:
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    assert (out / "gallery.json").is_file() and (out / "run" / "checkpoints" / "best.json").is_file()
    return metrics


def test_demo_synthetic_torch(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--speakers", "3", "--utterances", "8", "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "synthetic corpus: 3 speakers x 8 clips" in log and "top-1" in log and "closest speakers" in log
    n_test = sum(line.startswith("test ") for line in (out / "manifest.txt").read_text().splitlines())
    metrics = _check_outputs(out, n_test=n_test)
    assert metrics["backend"] == "torch" and metrics["data"] == "synthetic-seed0-3x8"
    assert main(args) == 0  # a second run reuses corpus and cache and replaces the run


def test_demo_fsdd_folder_keras(fsdd_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    data = tmp_path / "fsdd"
    data.mkdir()
    for speaker in ("george", "jackson", "theo"):
        for index in (0, 1, 5, 6, 7, 8):  # FSDD's split: index 0-4 test, 5-49 train
            shutil.copy(fsdd_dir / f"3_{speaker}_{index}.wav", data)
    out = tmp_path / "demo"
    assert main(["demo", "--backend", "keras", "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--no-progress"]) == 0
    assert "18 utterances from 3 speakers" in capsys.readouterr().out
    assert _check_outputs(out, n_test=6)["backend"] == "keras"
