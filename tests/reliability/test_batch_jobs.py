"""Batch jobs on partly bad data: `spkid prepare` and `spkid embed` skip bad files, keep going, list what
was skipped and why, and exit non-zero only when nothing usable was produced."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spkid.data.featstore import FeatureStore
from spkid.app.cli import main
from tests.train_cases import blobs, tiny_config

GOOD = {"george": ["0_george_5.wav", "1_george_6.wav"], "theo": ["0_theo_5.wav", "1_theo_6.wav"]}


def _bad_files(folder: Path) -> dict[str, str]:
    """Write one bad file of each kind into ``folder``; name -> a word its failure message contains."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_bytes(b"not audio at all\n" * 40)
    sf.write(folder / "silent.wav", np.zeros(8000, np.float32), 8000)
    nan = tone.copy()
    nan[10] = np.nan
    sf.write(folder / "nan.wav", nan, 8000, subtype="FLOAT")
    sf.write(folder / "short.wav", tone[:40], 8000)
    sf.write(folder / "ok.flac", tone, 8000)
    cut = (folder / "ok.flac").read_bytes()
    (folder / "ok.flac").unlink()
    (folder / "cut.flac").write_bytes(cut[: len(cut) // 2])
    return {"empty.wav": "empty", "text.wav": "cannot decode", "silent.wav": "silent", "nan.wav": "NaN",
            "short.wav": "short", "cut.flac": "cannot decode"}


@pytest.fixture
def dataset(fsdd_dir, tmp_path) -> tuple[Path, dict[str, str]]:
    """Folder-per-speaker tree: 4 real FSDD files and, for speaker `bad`, 6 broken ones."""
    root = tmp_path / "data"
    for spk, names in GOOD.items():
        (root / spk).mkdir(parents=True)
        for n in names:
            shutil.copy(fsdd_dir / n, root / spk / n)
    return root, {f"bad/{k}": v for k, v in _bad_files(root / "bad").items()}


def test_prepare_skips_bad_files_lists_them_and_succeeds(dataset, tmp_path, capsys):
    root, bad = dataset
    cache = tmp_path / "cache"
    args = ["prepare", str(root), "--cache", str(cache), "--layout", "folders", "--sr", "8000", "--n-fft", "256",
            "--val-fraction", "0", "--test-fraction", "0", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"decoded 4, reused 0 (from 0 kept shards), failed {len(bad)}" in out
    for rel, word in bad.items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"failed: {rel}:"))
        assert word in line, line
    assert sorted(FeatureStore(cache).ids) == sorted(
        f"{s}/{n}" for s, names in GOOD.items() for n in names)
    assert main(args) == 0  # a rerun builds nothing new and reports the same failures
    assert f"decoded 0, reused 4 (from 1 kept shards), failed {len(bad)}" in capsys.readouterr().out


def test_prepare_with_only_bad_files_exits_1(tmp_path, capsys):
    _bad_files(tmp_path / "data" / "bad")
    _bad_files(tmp_path / "data" / "worse")
    assert main(["prepare", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), "--layout", "folders",
                 "--sr", "8000", "--n-fft", "256", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "failed 12" in out and "nothing usable was produced" in out


def test_prepare_warns_when_a_speaker_is_only_in_test(fsdd_dir, tmp_path, capsys):
    root = tmp_path / "fsdd"
    root.mkdir()
    names = ["0_george_5.wav", "0_george_1.wav", "0_theo_2.wav", "0_theo_3.wav"]  # theo: indices 0-4 = test
    for n in names:
        (root / n).symlink_to(fsdd_dir / n)
    assert main(["prepare", str(root), "--cache", str(tmp_path / "cache"), "--pattern", "fsdd", "--sr", "8000",
                 "--n-fft", "256", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "closed-set identification needs every val/test speaker in train" in out and ": theo" in out


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A tiny torch model (FeatureConfig defaults: 16 kHz, 40 mels) trained for one epoch."""
    torch = pytest.importorskip("torch")
    from spkid_torch import train

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("model") / "run"
    train.fit(tiny_config(epochs=1), blobs(), None, run, progress=False)
    return run


def test_embed_skips_bad_files_and_writes_the_rest(dataset, model_run, tmp_path, capsys):
    root, bad = dataset
    out = tmp_path / "emb.npz"
    assert main(["embed", "--model", str(model_run), "--data", str(root), "--layout", "folders", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    skipped = {ln.split(":")[0].removeprefix("skipped ") for ln in text.splitlines() if ln.startswith("skipped ")}
    assert skipped == set(bad), text
    with np.load(out) as z:
        assert sorted(z["ids"]) == sorted(f"{s}/{n}" for s, names in GOOD.items() for n in names)
        assert list(z["speakers"]) == ["george", "theo"] and np.isfinite(z["embeddings"]).all()
    assert json.loads(out.with_suffix(".json").read_text())["speakers"] == ["george", "theo"]


def test_embed_with_nothing_usable_fails_without_writing(model_run, tmp_path, capsys):
    _bad_files(tmp_path / "data" / "bad")
    out = tmp_path / "emb.npz"
    assert main(["embed", "--model", str(model_run), "--data", str(tmp_path / "data"), "--layout", "folders",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no usable utterances to embed" in err and "Traceback" not in err
    assert not out.exists()
