"""examples/*.py end to end on tiny trees in the real dataset layouts, checking what they write.

The trees (VCTK 0.80 and 0.92, VoxCeleb1 with iden_split.txt) are made in tmp_path from a few real FSDD
recordings, resampled to the rates of the real corpora; models are tiny and train for one epoch, so the
tests check content and consistency (every file in the manifest with the right speaker and split, one
finite embedding per utterance, figures that show the run's numbers, identification answers that name
enrolled speakers), never accuracy.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spkid.inference.embeddings import load_embeddings
from tests.output_checks import check_png, manifest_rows

REPO = Path(__file__).resolve().parents[2]
SPEAKERS = ("george", "jackson", "lucas")
TINY = ["--tiny", "--epochs", "1", "--batch-size", "4", "--crop-frames", "100"]
EMBEDDING_DIM = 16  # TINY_OVERRIDES["vgg_attention"]["embedding_dim"]


def run_example(name: str, *args, cwd: Path) -> str:
    """Run examples/NAME with the test's interpreter; returns stdout+stderr, fails with it on rc != 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{out[-4000:]}"
    return out


# ----------------------------------------------------------------------------- content checks
def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_history(run: Path, epochs: int) -> None:
    rows = read_history(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        assert np.isfinite(float(r["loss"])) and float(r["loss"]) > 0
        assert 0 <= float(r["acc"]) <= 1


def score_line(log: str) -> tuple[float, float, int]:
    """(top-1 %, top-5 %, clips) from a training example's "test: top-1 ..." line."""
    m = re.search(r"test: top-1 ([\d.]+)%\s+top-5 ([\d.]+)%\s+\((\d+) clips\)", log)
    assert m, log[-2000:]
    return float(m[1]), float(m[2]), int(m[3])


def check_training_run(out: Path, log: str, expected: set[tuple[str, str, str]], speakers: list[str]) -> None:
    """The manifest is exactly ``expected``; the feature store holds finite (T, 40) frames for each of its
    utterances; the run has one epoch and a checkpoint of these speakers; the test line counts the
    manifest's test clips and (3 speakers) puts every clip's true speaker in its top 5."""
    from spkid.data.featstore import FeatureStore

    rows = manifest_rows(out / "manifest.txt")
    assert len(rows) == len(set(rows)) and set(rows) == expected
    store = FeatureStore(out / "cache")
    assert sorted(store.ids) == sorted(rel for _, _, rel in rows) and store.verify() >= 1
    for i in range(len(store)):
        feats = store.read(i)
        assert feats.ndim == 2 and feats.shape[1] == 40 and feats.shape[0] > 10 and np.isfinite(feats).all()
    check_history(out / "run", epochs=1)
    import json

    best = json.loads((out / "run" / "checkpoints" / "best.json").read_text())
    assert best["speakers"] == speakers and best["n_classes"] == len(speakers) and best["epoch"] == 1
    top1, top5, n = score_line(log)
    assert n == sum(split == "test" for split, _, _ in rows) > 0
    assert 0 <= top1 <= 100 and top5 == 100.0  # 3 speakers: the truth is always among the top 5


# ----------------------------------------------------------------------------- data trees
def _clips(fsdd: Path, speaker: str, n: int, sr: int):
    """n real FSDD clips of one speaker, resampled to sr."""
    import soxr

    for k in range(n):
        y, rate = sf.read(fsdd / f"{k % 10}_{speaker}_{k // 10}.wav", dtype="float32")
        yield k, soxr.resample(y, rate, sr)


@pytest.fixture(scope="module")
def vctk_trees(fsdd_dir, tmp_path_factory):
    """{version: (root, audio folder)} for VCTK 0.80 (wav48/pNNN/pNNN_KKK.wav) and 0.92
    (wav48_silence_trimmed/.../_mic1.flac)."""
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
        roots[version] = root, root / folder
    return roots


@pytest.fixture(scope="module")
def voxceleb_run(fsdd_dir, tmp_path_factory):
    """A VoxCeleb1 tree (wav/idNNNNN/<video>/NNNNN.wav + iden_split.txt), its expected manifest and a
    1-epoch tiny run on it."""
    root = tmp_path_factory.mktemp("vox1")
    lines, expected = [], set()
    for i, speaker in enumerate(SPEAKERS):
        sid = f"id{10001 + i}"
        for k, y in _clips(fsdd_dir, speaker, 6, 16000):
            rel = f"{sid}/vid{k % 2}/{k + 1:05d}.wav"
            (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / rel, y, 16000, subtype="PCM_16")
            code = 3 if k == 5 else 2 if k == 4 else 1
            lines.append(f"{code} {rel}")
            expected.add(({1: "train", 2: "val", 3: "test"}[code], sid, rel))
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("vox1_out")
    log = run_example("train_voxceleb1.py", root, "--out", out, *TINY, cwd=out)
    return root, out, log, expected


# ----------------------------------------------------------------------------- tests
def test_quickstart(tmp_path):
    from spkid.app import plots

    out = tmp_path / "qs"
    log = run_example("quickstart.py", "--out", out, "--speakers", "3", "--utterances", "6", "--epochs", "1",
                      "--tiny", cwd=tmp_path)
    enrolled = sorted(p.name for p in (out / "corpus").iterdir() if p.is_dir())
    assert len(enrolled) == 3 and all(len(list((out / "corpus" / s).glob("*.wav"))) == 6 for s in enrolled)
    check_history(out / "run", epochs=1)
    m = re.search(r"top-1 ([\d.]+)%, top-5 ([\d.]+)%", log)
    assert m and 0 <= float(m[1]) <= 100 and float(m[2]) == 100.0  # 3 speakers
    # step 5: each identified test clip lists every enrolled speaker once (top 3 of 3), best first
    answers = re.findall(r"^\s+(\S+): true (\S+), closest (.+)$", log, re.M)
    assert answers, log[-2000:]
    for clip, truth, closest in answers:
        assert clip.split("/")[0] == truth and truth in enrolled
        cands = [(name, float(score)) for name, score in re.findall(r"(\S+) \((-?[\d.]+)\)", closest)]
        assert sorted(name for name, _ in cands) == enrolled, closest
        scores = [s for _, s in cands]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    check_png(out / "confusion.png", (600, 500))  # 3 speakers: a 5 x 5 in matrix + colour bar, 100 dpi
    check_png(out / "embeddings.png", (700, 600))
    check_png(out / "attention.png", (1000, 600))
    history = check_png(out / "history.png", (1000, 400))
    # the figure shows this run's curves: it is the picture of run/history.csv, pixel for pixel
    again = plots.plot_history(out / "run" / "history.csv", tmp_path / "history_again.png")
    assert np.array_equal(history, check_png(again, (1000, 400)))


@pytest.mark.parametrize("version", ["0.80", "0.92"])
def test_train_vctk(vctk_trees, tmp_path, version):
    root, audio = vctk_trees[version]
    log = run_example("train_vctk.py", root, "--out", tmp_path, "--val-fraction", "0.2",
                      "--test-fraction", "0.25", *TINY, cwd=tmp_path)
    files = sorted(p.relative_to(audio).as_posix() for p in audio.rglob("*") if p.is_file())
    assert len(files) == 24
    rows = manifest_rows(tmp_path / "manifest.txt")
    # every file once, with its folder's speaker; the split is a seeded hash, so take it from the manifest
    assert sorted(rel for _, _, rel in rows) == files
    assert {split for split, _, _ in rows} == {"train", "val", "test"}
    expected = {(split, rel.split("/")[0], rel) for split, _, rel in rows}
    check_training_run(tmp_path, log, expected, ["p225", "p226", "p227"])


def test_train_voxceleb1(voxceleb_run):
    _, out, log, expected = voxceleb_run
    # the manifest follows iden_split.txt exactly (1/2/3 = train/val/test)
    check_training_run(out, log, expected, ["id10001", "id10002", "id10003"])


def _embeddings(npz: Path):
    written = load_embeddings(npz)  # the `spkid embed` format
    emb, ids = np.asarray(written.embeddings), list(written.ids)
    labels = list(written.speaker_labels)
    assert emb.shape == (18, EMBEDDING_DIM) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.linalg.norm(emb, axis=1).min() > 0
    assert tuple(written.speakers) == ("id10001", "id10002", "id10003")
    assert len(set(ids)) == 18 and labels == [i.split("/")[0] for i in ids]  # each row is its file's speaker
    return dict(zip(ids, emb))


@pytest.fixture(scope="module")
def embedded(voxceleb_run, tmp_path_factory):
    """extract_embeds.py from the feature cache and from the audio folder: {source: (npz, {id: vector})}."""
    root, out, _, _ = voxceleb_run
    result = {}
    for source, where in (("cache", out / "cache"), ("data", root)):
        npz = tmp_path_factory.mktemp(f"emb_{source}") / "emb.npz"
        run_example("extract_embeds.py", out / "run", f"--{source}", where, "--out", npz, cwd=npz.parent)
        result[source] = npz, _embeddings(npz)
    return result


def test_extract_embeds_cache_and_audio_agree(voxceleb_run, embedded):
    root, _, _, _ = voxceleb_run
    by_cache, by_data = embedded["cache"][1], embedded["data"][1]
    files = sorted(p.relative_to(root / "wav").as_posix() for p in (root / "wav").rglob("*.wav"))
    assert sorted(by_cache) == sorted(by_data) == files  # one row per utterance of the data set
    # the cache holds the checkpoint's own features of the same audio: the same embeddings
    for rel in files:
        np.testing.assert_allclose(by_cache[rel], by_data[rel], rtol=1e-4, atol=1e-6, err_msg=rel)


def test_closest_celeb_names_enrolled_speakers(voxceleb_run, embedded, tmp_path):
    root, out, _, _ = voxceleb_run
    npz, vectors = embedded["cache"]
    enrolled = {"id10001", "id10002", "id10003"}
    clip = root / "wav" / "id10002" / "vid0" / "00001.wav"
    log = run_example("closest_celeb.py", out / "run", clip, "--embeddings", npz, "--top", "2",
                      "--save-gallery", tmp_path / "gal", cwd=tmp_path)
    assert "gallery: 3 speakers, 18 utterances" in log
    answer = log.split(str(clip), 1)[1]
    ranked = re.findall(r"^\s+(\d+)\. (\S+)\s+cosine (-?[\d.]+)$", answer, re.M)
    assert [int(r) for r, _, _ in ranked] == [1, 2]  # --top 2
    assert {name for _, name, _ in ranked} <= enrolled and len({name for _, name, _ in ranked}) == 2
    scores = [float(s) for _, _, s in ranked]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1.0005 for s in scores)
    near = re.findall(r"^\s+(\S+\.wav)\s+\((\S+), cosine (-?[\d.]+)\)$", answer.split("closest utterances:")[1], re.M)
    assert len(near) == 2 and all(rel in vectors and rel.split("/")[0] == spk for rel, spk, _ in near)
    assert near[0][:2] == ("id10002/vid0/00001.wav", "id10002") and float(near[0][2]) == pytest.approx(1, abs=5e-4)
    # the saved gallery holds the 18 enrolled utterances and answers the same from disk
    from spkid.search.gallery import Gallery

    gallery = Gallery.load(tmp_path / "gal.json")
    assert sorted(gallery.speakers) == sorted(enrolled) and gallery.n_utterances() == 18
    again = run_example("closest_celeb.py", out / "run", clip, "--gallery", tmp_path / "gal.json", "--top", "2",
                        cwd=tmp_path)
    assert again.split(str(clip), 1)[1] == answer
