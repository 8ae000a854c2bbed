"""benchmarks/accuracy.py and benchmarks/gallery_accuracy.py end to end, on three real libri251 files.

A two-member torch ensemble trains for one epoch (the protocol on a symlinked three-speaker subset);
the gallery script then loads both members. Its classifier-head figure averages the members' posteriors
on the same test segments, so it must equal ``accuracy.py``'s ensemble top-1 exactly: a check that the
two scripts share the protocol and the ensemble rule, not a claim about accuracy (that is the README's,
from the full runs).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = {
    "accuracy": re.compile(r"top1=(\d+\.\d\d) top5=(\d+\.\d\d)"),
    "gallery": re.compile(r"gallery_top1=(\d+\.\d\d) head_top1=(\d+\.\d\d)"),
}


def _run(script: str, *args, returncode: int = 0) -> subprocess.CompletedProcess:
    """``python benchmarks/SCRIPT ARGS`` (single-threaded), checked to exit with ``returncode``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == returncode, proc.stderr[-3000:]
    return proc


def _libri_subset(libri_dir: Path, tmp_path: Path, n: int) -> Path:
    """A ``--data`` root whose librispeech-251 holds the first ``n`` files (n speakers), linked, never copied."""
    data = tmp_path / "data"
    (data / "librispeech-251").mkdir(parents=True)
    for src in sorted(libri_dir.glob("*.flac"))[:n]:
        (data / "librispeech-251" / src.name).symlink_to(src)
    return data


def test_ensemble_accuracy_and_gallery_agree(libri_dir: Path, tmp_path: Path):
    data = _libri_subset(libri_dir, tmp_path, 3)
    out = tmp_path / "runs"
    lines = _run("accuracy.py", "--protocol", "libri251", "--backend", "torch", "--epochs", "1",
                 "--ensemble", "2", "--data", data, "--out", out).stdout.strip().splitlines()
    assert lines[0].startswith("libri251: 3 train / 3 val / "), lines[0]
    assert sum(line.startswith("member seed=") for line in lines) == 2
    assert lines[-2] == "ensemble of 2 (averaged posteriors):"
    ens_top1, _ = LAST_LINE["accuracy"].fullmatch(lines[-1]).groups()

    lines = _run("gallery_accuracy.py", "--model", out / "seed-0", out / "seed-1",
                 "--data", data).stdout.strip().splitlines()
    assert any("ensemble of 2 (averaged scores)" in line for line in lines), lines
    gallery_top1, head_top1 = LAST_LINE["gallery"].fullmatch(lines[-1]).groups()
    assert head_top1 == ens_top1
    assert 0.0 <= float(gallery_top1) <= 100.0


def test_gallery_rejects_members_with_other_features(libri_dir: Path, tmp_path: Path):
    data = _libri_subset(libri_dir, tmp_path, 2)
    runs = {}
    for norm in ("mean", "none"):
        runs[norm] = tmp_path / norm
        _run("accuracy.py", "--protocol", "libri251", "--backend", "torch", "--epochs", "1", "--data", data,
             "--out", runs[norm], "--normalize", norm)
    proc = _run("gallery_accuracy.py", "--model", runs["mean"], runs["none"], "--data", data, returncode=2)
    assert f"{runs['none']}: its features" in proc.stderr


def test_waveform_recipe_with_degraded_validation(libri_dir: Path, tmp_path: Path):
    """A recipe with ``waveform_augment`` trains from waveforms (crops augmented, then featurised) and
    ``--val-degraded`` validates on the clean tails plus one copy per goal condition: 3 files -> 3 x 5 val
    items, each scored in the run's history."""
    data = _libri_subset(libri_dir, tmp_path, 3)
    recipe = tmp_path / "robust.yaml"
    recipe.write_text("features: {normalize: null}\ncrop_frames: 64\ncrops_per_utterance: 2\n"
                      "waveform_augment: {noise_prob: 0.5, reverb_prob: 0.5, telephone_prob: 0.5}\n")
    out = tmp_path / "run"
    lines = _run("accuracy.py", "--protocol", "libri251", "--backend", "torch", "--epochs", "1", "--config", recipe,
                 "--val-degraded", "--data", data, "--out", out).stdout.strip().splitlines()
    assert lines[0].startswith("libri251: 3 train / 15 val / "), lines[0]
    assert '"telephone_prob": 0.5' in lines[1], lines[1]
    assert re.search(r" val_top1=\d+\.\d\d ", lines[-2]), lines[-2]
    assert LAST_LINE["accuracy"].fullmatch(lines[-1]), lines[-1]
    header, row = (out / "history.csv").read_text().strip().splitlines()
    assert float(row.split(",")[header.split(",").index("val_top1")]) >= 0.0


def test_validation_copies_draw_apart_from_the_test():
    """The degradations seeded for validation ([seed, VAL_TAG, cond, i]) differ from the test's
    ([seed, cond, i]) for the same audio, and each is a function of its seed."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("degrade", REPO / "benchmarks" / "degrade.py")
    degrade = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(degrade)
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(16000).astype(np.float32) for _ in range(4)]
    labels = [0, 1, 2, 3]
    for name in degrade.GOAL_CONDITIONS:
        cond = degrade.NAMES.index(name)
        test = degrade.degrade(cond, waves, labels, 16000, 0)
        val = degrade.degrade(cond, waves, labels, 16000, 0, tag=(degrade.VAL_TAG,))
        again = degrade.degrade(cond, waves, labels, 16000, 0, tag=(degrade.VAL_TAG,))
        assert all(np.array_equal(a, b) for a, b in zip(val, again)), name
        if name.startswith("telephone"):  # deterministic channel: no draws to differ
            assert all(np.array_equal(a, b) for a, b in zip(val, test))
        else:
            assert not any(np.array_equal(a, b) for a, b in zip(val, test)), name
