"""Smoke tests of examples/*.py: each runs end to end on tiny trees in the real dataset layouts.

The trees (VCTK 0.80 and 0.92, VoxCeleb1 with iden_split.txt) are made in tmp_path from a few real FSDD
recordings, resampled to the rates of the real corpora; models are tiny and train for one epoch.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SPEAKERS = ("george", "jackson", "lucas")
TINY = ["--tiny", "--epochs", "1", "--batch-size", "4", "--crop-frames", "100"]


def run_example(name: str, *args, cwd: Path) -> str:
    """Run examples/NAME with the test's interpreter; returns stdout+stderr, fails with it on rc != 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{out[-4000:]}"
    return out


def _clips(fsdd: Path, speaker: str, n: int, sr: int):
    """n real FSDD clips of one speaker, resampled to sr."""
    import soxr

    for k in range(n):
        y, rate = sf.read(fsdd / f"{k % 10}_{speaker}_{k // 10}.wav", dtype="float32")
        yield k, soxr.resample(y, rate, sr)


@pytest.fixture(scope="module")
def vctk_trees(fsdd_dir, tmp_path_factory):
    """{version: root} for VCTK 0.80 (wav48/pNNN/pNNN_KKK.wav) and 0.92 (wav48_silence_trimmed/.../_mic1.flac)."""
    roots = {}
    for version, folder, suffix, fmt in (("0.80", "wav48", ".wav", "WAV"),
                                         ("0.92", "wav48_silence_trimmed", "_mic1.flac", "FLAC")):
        root = tmp_path_factory.mktemp(f"vctk{version}")
        info = ["ID  AGE  GENDER  ACCENTS  REGION"]
        for i, speaker in enumerate(SPEAKERS):
            sid = f"p{225 + i}"
            info.append(f"{sid[1:]}  23  M  English  Somewhere")
            (root / folder / sid).mkdir(parents=True)
            for k, y in _clips(fsdd_dir, speaker, 8, 48000):
                sf.write(root / folder / sid / f"{sid}_{k + 1:03d}{suffix}", y, 48000, format=fmt, subtype="PCM_16")
        (root / "speaker-info.txt").write_text("\n".join(info) + "\n")
        roots[version] = root
    return roots


@pytest.fixture(scope="module")
def voxceleb_run(fsdd_dir, tmp_path_factory):
    """A VoxCeleb1 tree (wav/idNNNNN/<video>/NNNNN.wav + iden_split.txt) and a 1-epoch tiny run on it."""
    root = tmp_path_factory.mktemp("vox1")
    lines = []
    for i, speaker in enumerate(SPEAKERS):
        sid = f"id{10001 + i}"
        for k, y in _clips(fsdd_dir, speaker, 6, 16000):
            rel = f"{sid}/vid{k % 2}/{k + 1:05d}.wav"
            (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / rel, y, 16000, subtype="PCM_16")
            lines.append(f"{3 if k == 5 else 2 if k == 4 else 1} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("vox1_out")
    log = run_example("train_voxceleb1.py", root, "--out", out, *TINY, cwd=out)
    return root, out, log


def test_quickstart(tmp_path):
    log = run_example("quickstart.py", "--out", tmp_path / "qs", "--speakers", "3", "--utterances", "6",
                      "--epochs", "1", "--tiny", cwd=tmp_path)
    assert "top-1" in log
    for name in ("history", "confusion", "embeddings", "attention"):
        assert (tmp_path / "qs" / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize("version", ["0.80", "0.92"])
def test_train_vctk(vctk_trees, tmp_path, version):
    log = run_example("train_vctk.py", vctk_trees[version], "--out", tmp_path, "--val-fraction", "0.2",
                      "--test-fraction", "0.25", *TINY, cwd=tmp_path)
    assert "24 utterances from 3 speakers" in log and "test: top-1" in log
    assert (tmp_path / "run" / "checkpoints" / "best.json").is_file()


def test_train_voxceleb1(voxceleb_run):
    _, out, log = voxceleb_run
    assert "18 utterances from 3 speakers (train 12, val 3, test 3)" in log and "test: top-1" in log
    assert (out / "run" / "checkpoints" / "best.json").is_file()


@pytest.mark.parametrize("source", ["cache", "data"])
def test_extract_embeds_and_closest_celeb(voxceleb_run, tmp_path, source):
    root, out, _ = voxceleb_run
    npz = tmp_path / "emb.npz"
    where = out / "cache" if source == "cache" else root
    run_example("extract_embeds.py", out / "run", f"--{source}", where, "--out", npz, cwd=tmp_path)
    with np.load(npz, allow_pickle=False) as z:
        emb, ids, speakers = z["embeddings"], z["ids"], z["speakers"]
    assert emb.shape == (18, 16) and np.isfinite(emb).all()
    assert sorted(set(speakers)) == ["id10001", "id10002", "id10003"] and len(set(ids)) == 18
    if source == "cache":  # the second source gives the same pipeline; query once
        clip = root / "wav" / "id10002" / "vid0" / "00001.wav"
        log = run_example("closest_celeb.py", out / "run", clip, "--embeddings", npz, "--top", "2",
                          "--save-gallery", tmp_path / "gal", cwd=tmp_path)
        assert "gallery: 3 speakers, 18 utterances" in log and "1. id1000" in log
        nearest = log.split("closest utterances:")[1].strip().splitlines()[0]
        assert nearest.startswith("id10002/vid0/00001.wav  (id10002, cosine")  # the clip itself is enrolled
        log = run_example("closest_celeb.py", out / "run", clip, "--gallery", tmp_path / "gal.json", cwd=tmp_path)
        assert "gallery: 3 speakers" in log
