"""``spkid demo`` end to end: the synthetic corpus (torch) and an FSDD-style folder of real speech (keras).

Both runs are small but long enough to learn, so the tests check that the demo does what the README says
it does: top-1 (classifier and nearest-centroid gallery) above chance by a margin of ``K_SE`` binomial
standard errors of a chance-level guesser on the test clips -- a bar that guessing clears with
probability below 1e-3 -- and that a second run reuses the corpus and the feature store (the same files,
untouched, and "decoded 0" in its log) while replacing the training run.

Measured (seed 0): synthetic 6 speakers x 20 clips, 10 epochs: top-1 0.72, gallery 0.84 on 25 test clips
(bar 0.47; seed 1: 0.60 / 0.80); FSDD 4 speakers x 15 takes, keras, 8 epochs: top-1 1.0, gallery 1.0 on 20
clips (bar 0.64).
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from spkid.app.cli import main
from tests.output_checks import check_png, manifest_rows

FIGURES = {"history": (1000, 400), "embeddings": (700, 600), "attention": (1000, 600)}
K_SE = 4.0


def above_chance_bar(n_speakers: int, n: int) -> float:
    """Chance (1 / n_speakers) plus K_SE binomial standard errors of a guesser's accuracy on n clips."""
    p = 1.0 / n_speakers
    return p + K_SE * math.sqrt(p * (1 - p) / n)


def file_stamps(folder: Path, pattern: str = "*") -> dict[str, tuple[int, int, int]]:
    """{relative path: (inode, mtime_ns, size)} of the files under ``folder``."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob(pattern) if p.is_file()}


def store_shards(cache_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Stamps of the feature store's shards."""
    return file_stamps(cache_dir, "shard-*.npy")


def check_demo(out: Path, log: str, *, backend: str, n_speakers: int, epochs: int) -> dict:
    """What one demo run wrote and printed; returns metrics.json."""
    from spkid.app import plots
    from spkid.search.gallery import Gallery

    metrics = json.loads((out / "metrics.json").read_text())
    rows = manifest_rows(out / "manifest.txt")
    speakers = sorted({s for _, s, _ in rows})
    n_test = sum(split == "test" for split, _, _ in rows)
    n_train = sum(split == "train" for split, _, _ in rows)
    n_val = sum(split == "val" for split, _, _ in rows)
    assert len(speakers) == n_speakers and metrics["n_test"] == n_test > 0
    assert metrics["backend"] == backend and metrics["epochs"] == epochs
    assert sorted(metrics["per_speaker"]) == speakers
    assert 0 <= metrics["test_top1"] <= metrics["test_top5"] <= 1
    assert f"nearest-centroid identification of all {n_test} test clips: top-1 {100 * metrics['gallery_top1']:.1f}%" in log
    m = re.search(r"top-1 ([\d.]+)%\s+top-5 ([\d.]+)%\s+\((\d+) test clips, chance ([\d.]+)%\)", log)
    assert m and int(m[3]) == n_test and float(m[4]) == pytest.approx(100 / n_speakers, abs=0.05)
    assert float(m[1]) == pytest.approx(100 * metrics["test_top1"], abs=0.05)
    # the identification table: each row's candidates are enrolled speakers, its mark matches the truth
    table = re.findall(r"^\S+\s+(\S+)\s+((?:\S+ -?\d\.\d\d  ){2}\S+ -?\d\.\d\d)\s+\S+ \(-?\d\.\d\d\)\s+(ok|WRONG)$", log, re.M)
    assert table, log[-3000:]
    for truth, cands, mark in table:
        names = cands.split()[::2]
        assert truth in speakers and set(names) <= set(speakers) and len(set(names)) == 3
        assert (names[0] == truth) == (mark == "ok")
    # the gallery enrols every training clip (the manifest's train and val clips, less the validation
    # clips the demo holds out when the manifest has none) of every speaker
    m = re.search(r"^(\d+) training clips, (\d+) validation clips, (\d+) speakers$", log, re.M)
    assert m and int(m[1]) + int(m[2]) == n_train + n_val and int(m[3]) == n_speakers
    gallery = Gallery.load(out / "gallery.json")
    assert gallery.speakers == speakers and gallery.n_utterances() == int(m[1])
    # the run: `epochs` epochs of finite losses, and figures that show them
    history = (out / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + epochs and (out / "run" / "checkpoints" / "best.json").is_file()
    for name, size in FIGURES.items():
        check_png(out / "plots" / f"{name}.png", size)
    check_png(out / "plots" / "confusion.png")
    again = plots.plot_history(out / "run" / "history.csv", out / "history_again.png",
                               title=f"{metrics['model']} ({backend}) on {metrics['data']}")
    assert np.array_equal(check_png(again), check_png(out / "plots" / "history.png"))
    return metrics


def check_above_chance(metrics: dict, n_speakers: int) -> None:
    bar = above_chance_bar(n_speakers, metrics["n_test"])
    print(f"demo top-1 {metrics['test_top1']:.3f}, gallery top-1 {metrics['gallery_top1']:.3f} on "
          f"{metrics['n_test']} clips of {n_speakers} speakers (bar {bar:.3f})")
    assert metrics["test_top1"] >= bar and metrics["gallery_top1"] >= bar, (bar, metrics)


def test_demo_synthetic_torch_learns_and_reuses_corpus_and_cache(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--speakers", "6", "--utterances", "20", "--no-progress"]
    assert main([*args, "--epochs", "10"]) == 0
    log = capsys.readouterr().out
    assert "synthetic corpus: 6 speakers x 20 clips" in log and "decoded 120, reused 0" in log
    metrics = check_demo(out, log, backend="torch", n_speakers=6, epochs=10)
    assert metrics["data"] == "synthetic-seed0-6x20"
    check_above_chance(metrics, 6)

    corpus = out / "corpus" / metrics["data"]
    cache = out / "cache" / metrics["data"]
    wavs, shards = file_stamps(corpus, "*.wav"), store_shards(cache)
    assert len(wavs) == 120 and len(shards) >= 1

    # a second run (one epoch, to be quick) reuses the corpus and the cache and replaces the run
    assert main([*args, "--epochs", "1"]) == 0
    log = capsys.readouterr().out
    assert "decoded 0, reused 120 (from 1 kept shards), failed 0" in log
    assert file_stamps(corpus, "*.wav") == wavs  # not one clip re-synthesised
    assert store_shards(cache) == shards  # not one shard rewritten
    check_demo(out, log, backend="torch", n_speakers=6, epochs=1)  # the old 10-epoch run is gone


def test_demo_fsdd_folder_keras_learns(fsdd_dir, tmp_path, capsys):
    pytest.importorskip("keras")
    data = tmp_path / "fsdd"
    data.mkdir()
    speakers = ("george", "jackson", "nicolas", "theo")
    for speaker in speakers:
        for index in range(15):  # FSDD's split: index 0-4 test, 5-49 train
            shutil.copy(fsdd_dir / f"3_{speaker}_{index}.wav", data)
    out = tmp_path / "demo"
    assert main(["demo", "--backend", "keras", "--data", str(data), "--out", str(out), "--epochs", "8",
                 "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert "60 utterances from 4 speakers" in log
    metrics = check_demo(out, log, backend="keras", n_speakers=4, epochs=8)
    assert metrics["n_test"] == 20 and sorted(metrics["per_speaker"]) == list(speakers)
    assert {s for split, s, rel in manifest_rows(out / "manifest.txt")
            if split == "test"} == set(speakers)
    assert all(int(rel.rsplit("_", 1)[1].split(".")[0]) <= 4 for split, _, rel in manifest_rows(out / "manifest.txt")
               if split == "test")
    check_above_chance(metrics, 4)


def test_above_chance_bar():
    # a guesser on 25 clips of 6 speakers clears 0.47 with probability < 1e-3
    from math import comb

    bar, n, p = above_chance_bar(6, 25), 25, 1 / 6
    tail = sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(math.ceil(bar * n), n + 1))
    assert 0.4 < bar < 0.5 and tail < 1e-3
    bar, n, p = above_chance_bar(4, 20), 20, 1 / 4
    tail = sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(math.ceil(bar * n), n + 1))
    assert tail < 1e-3
