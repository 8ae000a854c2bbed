"""Shared pieces of the ``spkid verify`` / ``spkid identify --timeline`` CLI tests (tests/torch, tests/keras): a
tiny model trained on real FSDD speech (tests/enroll_support.py), a trial list of held-out clips with bad files,
and a recording of three enrolled speakers with pauses."""
from __future__ import annotations

import json
import re

import numpy as np
import soundfile as sf

from spkid.app.cli import main
from spkid.audio.io import load_audio
from spkid.metrics import compute_eer, compute_min_dcf
from spkid.search.trials import read_scores
from tests import enroll_support as es
from tests.output_checks import check_png

LAST = re.compile(r"EER=(\d+\.\d{3}) minDCF=(\d+\.\d{4})")


def cli(capsys, *argv) -> tuple[int, str]:
    """``spkid ARGV``: (exit status, stdout)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def trial_list(fsdd_dir, tmp_path):
    """All pairs of 2 held-out clips of each speaker (tab-separated, CRLF) plus trials with a missing and a
    text file: (path, [(clip, speaker)], number of trials)."""
    clips = [(f"{d}_{s}_30.wav", s) for s in es.FSDD_SPEAKERS for d in (1, 7)]
    lines = [f"{int(sa == sb)}\t{a}\t{b}" for i, (a, sa) in enumerate(clips) for b, sb in clips[i + 1:]]
    (tmp_path / "notes.wav").write_text("not audio")
    lines += [f"1 {clips[0][0]} missing.wav", f"0 {tmp_path / 'notes.wav'} {clips[1][0]}"]
    path = tmp_path / "trials.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    return path, clips, len(lines)


def check_trial_list(capsys, run, fsdd_dir, tmp_path) -> None:
    """``spkid verify --trials``: bad files reported, their trials skipped, and the printed EER / minDCF are
    those recomputed from the score file; a DET plot is written."""
    trials, clips, n = trial_list(fsdd_dir, tmp_path)
    scores = tmp_path / "scores.txt"
    code, out = cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out", scores,
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


def check_timeline(capsys, run, fsdd_dir, tmp_path) -> None:
    """``spkid identify --timeline [--json]`` on three enrolled speakers' clips joined by 1 s pauses: one JSON
    object per readable file with exactly the issue's keys, unreadable files reported on stderr."""
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
    code, out = cli(capsys, "identify", "--model", run, "--gallery", gallery, "--timeline", "--no-progress", long)
    assert code == 0 and f"{long}: {len(segments)} segment(s)" in out.splitlines()
