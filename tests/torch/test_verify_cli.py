"""``spkid verify`` (a pair, a trial list with bad files, S-norm cohort, calibration) and ``spkid identify
--timeline`` end to end with a tiny torch model trained on real FSDD speech (tests/enroll_support.py)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from spkid.app.cli import main
from spkid.audio.io import load_audio
from spkid.inference.embedder import embed_files, load_embedder
from spkid.inference.embeddings import Embeddings, save_embeddings
from spkid.metrics import compute_eer, compute_min_dcf
from spkid.search.scoring import normalize_trials
from spkid.search.trials import read_scores
from tests import enroll_support as es
from tests.output_checks import check_png

pytest.importorskip("torch")

LAST = re.compile(r"EER=(\d+\.\d{3}) minDCF=(\d+\.\d{4})")


@pytest.fixture(scope="module")
def run(fsdd_dir, tmp_path_factory):
    return es.train_tiny("torch", fsdd_dir, tmp_path_factory.mktemp("verify") / "run")


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def test_pair(run, fsdd_dir, capsys):
    a, b = fsdd_dir / "1_george_30.wav", fsdd_dir / "2_george_31.wav"
    emb, _, _ = embed_files([a, b], load_embedder(run))
    want = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    code, out = _cli(capsys, "verify", "--model", run, a, b, "--threshold", -1.0)
    assert code == 0 and out.strip() == f"cosine={want:.4f} threshold=-1.0000 same"
    code, out = _cli(capsys, "verify", "--model", run, a, b, "--threshold", 1.5)
    assert out.strip().endswith("different")
    assert _cli(capsys, "verify", "--model", run, a)[0] == 2  # one clip: a one-line error


def _trial_list(fsdd_dir, tmp_path):
    """All pairs of 2 held-out clips of each speaker (tab-separated, CRLF) plus trials with a missing and a
    text file."""
    clips = [(f"{d}_{s}_30.wav", s) for s in es.FSDD_SPEAKERS for d in (1, 7)]
    lines = [f"{int(sa == sb)}\t{a}\t{b}" for i, (a, sa) in enumerate(clips) for b, sb in clips[i + 1:]]
    (tmp_path / "notes.wav").write_text("not audio")
    lines += [f"1 {clips[0][0]} missing.wav", f"0 {tmp_path / 'notes.wav'} {clips[1][0]}"]
    path = tmp_path / "trials.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    return path, clips, len(lines)


def test_trial_list_eer_equals_its_score_file(run, fsdd_dir, tmp_path, capsys):
    trials, clips, n = _trial_list(fsdd_dir, tmp_path)
    scores = tmp_path / "scores.txt"
    code, out = _cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out", scores,
                     "--no-progress")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert f"skipped {fsdd_dir / 'missing.wav'}: file not found" in lines
    assert any(line.startswith(f"skipped {tmp_path / 'notes.wav'}") for line in lines)
    assert f"{len(clips) + 2} files (2 unreadable), {n - 2} of {n} trials scored" in lines
    eer, dcf = map(float, LAST.fullmatch(lines[-1]).groups())
    s, left, right = read_scores(scores)
    label = {(a, b): int(sa == sb) for a, sa in clips for b, sb in clips}
    target = np.array([label[(a, b)] for a, b in zip(left, right)], dtype=bool)
    assert len(s) == n - 2 and target.sum() == len(es.FSDD_SPEAKERS)
    assert eer == round(100 * compute_eer(s, target)[0], 3)
    assert dcf == round(compute_min_dcf(s, target, 0.01)[0], 4)
    check_png(tmp_path / "scores.txt.det.png")


def test_cohort_and_calibration(run, fsdd_dir, tmp_path, capsys):
    trials, clips, _ = _trial_list(fsdd_dir, tmp_path)
    embedder = load_embedder(run)
    cohort_files = [f for s in es.FSDD_SPEAKERS for f in es.fsdd_files(fsdd_dir, s, [40])[:3]]
    cohort, _, _ = embed_files(cohort_files, embedder)
    npz = save_embeddings(tmp_path / "cohort.npz", Embeddings.from_labels(
        cohort, [f.name for f in cohort_files], [f.name.split("_")[1] for f in cohort_files]))
    out_scores = tmp_path / "asnorm.txt"
    code, out = _cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out", out_scores,
                     "--cohort", npz, "--top-n", 5, "--no-progress", "--batch-files", 5)
    assert code == 0 and "S-norm top-5 over 18 cohort embeddings" in out
    s, left, right = read_scores(out_scores)
    names = [c for c, _ in clips]
    emb, _, _ = embed_files([fsdd_dir / c for c in names], embedder)
    want = normalize_trials(emb, [names.index(a) for a in left], [names.index(b) for b in right], cohort, 5)
    np.testing.assert_allclose(s, want, atol=2e-5)

    cal = tmp_path / "cal.json"
    code, out = _cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out",
                     tmp_path / "raw.txt", "--fit-calibration", cal, "--no-progress")
    raw_eer = LAST.fullmatch(out.strip().splitlines()[-1]).group(1)
    code, out = _cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out",
                     tmp_path / "llr.txt", "--calibration", cal, "--no-progress")
    assert LAST.fullmatch(out.strip().splitlines()[-1]).group(1) == raw_eer  # calibration is monotonic
    slope, offset = (json.loads(cal.read_text())[k] for k in ("slope", "offset"))
    np.testing.assert_allclose(read_scores(tmp_path / "llr.txt")[0], slope * read_scores(tmp_path / "raw.txt")[0]
                               + offset, atol=1e-5)


def test_identify_timeline(run, fsdd_dir, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    assert main(["enroll", "--model", str(run), "--gallery", str(gallery), "--no-progress",
                 "--from-dir", str(es.speaker_tree(fsdd_dir, tmp_path / "speakers"))]) == 0
    sr = 8000
    pause = np.zeros(sr, np.float32)
    turns = [fsdd_dir / f"{d}_{s}_30.wav" for d, s in ((3, "george"), (5, "theo"), (8, "lucas"))]
    y = np.concatenate([pause] + [p for t in turns for p in (load_audio(t, sr=sr), pause)])
    long = tmp_path / "meeting.wav"
    sf.write(long, y, sr, subtype="PCM_16")
    capsys.readouterr()
    code = main(["identify", "--model", str(run), "--gallery", str(gallery), "--timeline", "--json", "--no-progress",
                 str(long), str(tmp_path / "missing.wav")])
    out, err = capsys.readouterr()
    assert code == 0 and f"skipped {tmp_path / 'missing.wav'}: file not found" in err  # stdout stays JSON lines
    docs = [json.loads(line) for line in out.strip().splitlines()]
    assert len(docs) == 1 and list(docs[0]) == ["file", "segments"] and docs[0]["file"] == str(long)
    segments = docs[0]["segments"]
    assert 1 <= len(segments) <= 6
    for s in segments:
        assert list(s) == ["start", "end", "speaker", "score"]
        assert isinstance(s["start"], float) and isinstance(s["end"], float) and 0 <= s["start"] < s["end"]
        assert s["speaker"] is None or s["speaker"] in es.FSDD_SPEAKERS
        assert isinstance(s["score"], float)
    assert segments[-1]["end"] <= len(y) / sr + 0.01
    assert segments[0]["start"] >= 0.8  # the first second is silence
    code, out = _cli(capsys, "identify", "--model", run, "--gallery", gallery, "--timeline", "--no-progress", long)
    assert code == 0 and f"{long}: {len(segments)} segment(s)" in out.splitlines()
