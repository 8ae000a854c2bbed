"""``spkid verify`` (a pair, a trial list with bad files, S-norm cohort, calibration) and ``spkid identify
--timeline`` end to end with a tiny torch model trained on real FSDD speech (tests/verify_support.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spkid.inference.embedder import embed_files, load_embedder
from spkid.inference.embeddings import Embeddings, save_embeddings
from spkid.search.scoring import normalize_trials
from spkid.search.trials import read_scores
from tests import enroll_support as es
from tests import verify_support as vs

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(fsdd_dir, tmp_path_factory):
    return es.train_tiny("torch", fsdd_dir, tmp_path_factory.mktemp("verify") / "run")


def test_pair(run, fsdd_dir, capsys):
    a, b = fsdd_dir / "1_george_30.wav", fsdd_dir / "2_george_31.wav"
    emb, _, _ = embed_files([a, b], load_embedder(run))
    want = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    code, out = vs.cli(capsys, "verify", "--model", run, a, b, "--threshold", -1.0)
    assert code == 0 and out.strip() == f"cosine={want:.4f} threshold=-1.0000 same"
    code, out = vs.cli(capsys, "verify", "--model", run, a, b, "--threshold", 1.5)
    assert out.strip().endswith("different")
    assert vs.cli(capsys, "verify", "--model", run, a)[0] == 2  # one clip: a one-line error


def test_trial_list_eer_equals_its_score_file(run, fsdd_dir, tmp_path, capsys):
    vs.check_trial_list(capsys, run, fsdd_dir, tmp_path)


def test_cohort_and_calibration(run, fsdd_dir, tmp_path, capsys):
    trials, clips, _ = vs.trial_list(fsdd_dir, tmp_path)
    embedder = load_embedder(run)
    cohort_files = [f for s in es.FSDD_SPEAKERS for f in es.fsdd_files(fsdd_dir, s, [40])[:3]]
    cohort, _, _ = embed_files(cohort_files, embedder)
    npz = save_embeddings(tmp_path / "cohort.npz", Embeddings.from_labels(
        cohort, [f.name for f in cohort_files], [f.name.split("_")[1] for f in cohort_files]))
    out_scores = tmp_path / "asnorm.txt"
    code, out = vs.cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out", out_scores,
                       "--cohort", npz, "--top-n", 5, "--no-progress", "--batch-files", 5)
    assert code == 0 and "S-norm top-5 over 18 cohort embeddings" in out
    s, left, right = read_scores(out_scores)
    names = [c for c, _ in clips]
    emb, _, _ = embed_files([fsdd_dir / c for c in names], embedder)
    want = normalize_trials(emb, [names.index(a) for a in left], [names.index(b) for b in right], cohort, 5)
    np.testing.assert_allclose(s, want, atol=2e-5)

    cal = tmp_path / "cal.json"
    code, out = vs.cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out",
                       tmp_path / "raw.txt", "--fit-calibration", cal, "--no-progress")
    raw_eer = vs.LAST.fullmatch(out.strip().splitlines()[-1]).group(1)
    code, out = vs.cli(capsys, "verify", "--model", run, "--trials", trials, "--root", fsdd_dir, "--out",
                       tmp_path / "llr.txt", "--calibration", cal, "--no-progress")
    assert vs.LAST.fullmatch(out.strip().splitlines()[-1]).group(1) == raw_eer  # calibration is monotonic
    slope, offset = (json.loads(cal.read_text())[k] for k in ("slope", "offset"))
    np.testing.assert_allclose(read_scores(tmp_path / "llr.txt")[0], slope * read_scores(tmp_path / "raw.txt")[0]
                               + offset, atol=1e-5)


def test_identify_timeline(run, fsdd_dir, tmp_path, capsys):
    vs.check_timeline(capsys, run, fsdd_dir, tmp_path)
