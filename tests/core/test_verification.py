"""Verification pieces: minDCF and DET points (hand-computed), trial lists (dialects, missing files), score
files, S-norm / AS-norm against a plain loop, calibration to log-likelihood ratios."""
from __future__ import annotations

import numpy as np
import pytest

from spkid.errors import ConfigError, TrialsError
from spkid.metrics import compute_eer, compute_min_dcf, det_curve
from spkid.search.scoring import Calibration, cohort_stats, normalize_trials, s_norm, score_trial_list
from spkid.search.trials import parse_trials, read_scores, read_trials, write_scores

# targets 0.9 0.8 0.4, non-targets 0.7 0.3 0.2 0.1: accepting >= 0.8 misses 1/3 with no false alarm,
# accepting >= 0.4 misses nothing with 1/4 false alarms
SCORES = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
TARGET = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)


def test_min_dcf_hand_computed():
    # p_target 0.01: cost / 0.01 = P_miss + 99 P_fa -> best 1/3 at threshold 0.8
    dcf, thr = compute_min_dcf(SCORES, TARGET, 0.01)
    assert dcf == pytest.approx(1 / 3) and thr == 0.8
    # p_target 0.05: P_miss + 19 P_fa -> still 1/3
    assert compute_min_dcf(SCORES, TARGET, 0.05)[0] == pytest.approx(1 / 3)
    # p_target 0.5: P_miss + P_fa -> 1/4 at threshold 0.4 (accept the 0.7 non-target too)
    dcf, thr = compute_min_dcf(SCORES, TARGET, 0.5)
    assert dcf == pytest.approx(0.25) and thr == 0.4
    # costs: C_miss 10 at p 0.01 -> (0.1 P_miss + 0.99 P_fa) / 0.1
    assert compute_min_dcf(SCORES, TARGET, 0.01, c_miss=10.0)[0] == pytest.approx(1 / 3)
    # the EER of the same trials: the curves cross on the P_fa = 1/4 step
    assert compute_eer(SCORES, TARGET)[0] == pytest.approx(0.25)


def test_min_dcf_is_at_most_one_and_zero_when_separable():
    assert compute_min_dcf([0.9, 0.8, 0.1], [1, 1, 0])[0] == 0.0
    assert compute_min_dcf([0.1, 0.2, 0.9], [1, 1, 0])[0] == pytest.approx(1.0)  # reversed: accept nothing
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(SCORES, TARGET, 1.0)


def test_det_curve_points():
    p_fa, p_miss, thr = det_curve(SCORES, TARGET)
    np.testing.assert_allclose(p_fa, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(p_miss, [1, 2 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0])
    assert np.isinf(thr[0]) and list(thr[1:]) == sorted(SCORES, reverse=True)


@pytest.mark.parametrize("text", [
    "1 a/x.wav b/y.wav\n0 a/x.wav c/z.wav\n",                       # VoxCeleb1-O
    "\ufeff1\ta/x.wav\tb/y.wav\r\n\r\n0  a/x.wav   c/z.wav\r\n",       # BOM, tabs, CRLF, blank line, spaces
    "# a comment\n1 a/x.wav b/y.wav\n# another\n0 a/x.wav c/z.wav",   # comments, no final newline
    "a/x.wav b/y.wav target\na/x.wav c/z.wav nontarget\n",          # Kaldi / NIST order and words
])
def test_trial_list_dialects(text):
    trials = parse_trials(text)
    assert trials.left == ("a/x.wav", "a/x.wav") and trials.right == ("b/y.wav", "c/z.wav")
    assert trials.labels.tolist() == [1, 0] and trials.labelled
    assert trials.files() == ["a/x.wav", "b/y.wav", "c/z.wav"]


def test_unlabelled_and_malformed_lists(tmp_path):
    assert not parse_trials("a.wav b.wav\n").labelled
    for bad, where in [("1 a.wav\n", "line 1"), ("1 a.wav b.wav\n2 a.wav b.wav\n", "line 2"),
                       ("1 a b c\n", "line 1")]:
        with pytest.raises(TrialsError, match=where):
            parse_trials(bad, tmp_path / "t.txt")
    with pytest.raises(TrialsError, match="mixed"):
        parse_trials("1 a.wav b.wav\na.wav b.wav\n")
    with pytest.raises(TrialsError, match="no trials"):
        parse_trials("# nothing\n\n")
    with pytest.raises(TrialsError, match="trial list not found"):
        read_trials(tmp_path / "missing.txt")


def test_missing_files_drop_their_trials(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "t.txt").write_text("1 a.wav b.wav\n0 a.wav a.wav\n0 /abs/c.wav a.wav\n")
    trials = read_trials(tmp_path / "t.txt")
    where = trials.resolve(tmp_path)
    assert where["a.wav"] == tmp_path / "a.wav" and str(where["/abs/c.wav"]) == "/abs/c.wav"
    missing = [p for p, f in where.items() if not f.exists()]
    assert missing == ["b.wav", "/abs/c.wav"]
    embedded = {"a.wav": np.array([1.0, 0.0])}  # b.wav and c.wav failed
    kept, scores = score_trial_list(trials, embedded)
    assert len(kept) == 1 and kept.left == ("a.wav",) and scores.tolist() == [1.0]


def test_score_file_round_trip(tmp_path):
    path = write_scores(tmp_path / "s.txt", [0.5, -0.25], ["a", "b"], ["c", "d"])
    assert path.read_text() == "0.500000 a c\n-0.250000 b d\n"
    s, left, right = read_scores(path)
    assert s.tolist() == [0.5, -0.25] and left == ["a", "b"] and right == ["c", "d"]
    (tmp_path / "bad.txt").write_text("x a b\n")
    with pytest.raises(TrialsError, match="line 1"):
        read_scores(tmp_path / "bad.txt")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_snorm(emb, left, right, cohort, top_n=None):
    """The textbook loop: each side's cohort scores (their top N), mean / std, average of the two z-scores."""
    e, c = _unit(emb.astype(np.float64)), _unit(cohort.astype(np.float64))
    out = []
    for a, b in zip(left, right):
        s = float(e[a] @ e[b])
        zs = []
        for side in (a, b):
            cs = sorted((float(e[side] @ c[k]) for k in range(len(c))), reverse=True)
            cs = cs[:top_n] if top_n else cs
            zs.append((s - np.mean(cs)) / np.std(cs))
        out.append(0.5 * (zs[0] + zs[1]))
    return np.array(out)


@pytest.mark.parametrize("top_n", [None, 1 << 20, 7])
def test_snorm_and_asnorm_match_a_loop(rng, top_n):
    emb = rng.standard_normal((12, 8)).astype(np.float32)
    cohort = rng.standard_normal((40, 8)).astype(np.float32)
    left, right = rng.integers(0, 12, 30), rng.integers(0, 12, 30)
    got = normalize_trials(emb, left, right, cohort, top_n)
    want = _reference_snorm(emb, left, right, cohort, None if top_n == 1 << 20 else top_n)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cohort_stats_in_blocks_and_errors(rng, monkeypatch):
    import spkid.search.scoring as scoring

    emb, cohort = rng.standard_normal((9, 4)), rng.standard_normal((6, 4))
    whole = cohort_stats(emb, cohort, 3)
    monkeypatch.setattr(scoring, "_CHUNK", 2)
    np.testing.assert_allclose(cohort_stats(emb, cohort, 3), whole, rtol=1e-5, atol=1e-6)
    assert s_norm([1.0], (np.array([0.0]), np.array([1.0])), (np.array([1.0]), np.array([2.0]))).tolist() == [0.5]
    with pytest.raises(ConfigError, match="4-d"):
        cohort_stats(emb, rng.standard_normal((6, 3)))
    with pytest.raises(ConfigError, match="top_n"):
        cohort_stats(emb, cohort, 0)


def test_calibration_gives_llrs(rng, tmp_path):
    # Gaussian scores of equal variance: the true LLR is linear, slope (mu1 - mu0) / var
    tgt, non = rng.normal(1.0, 0.5, 4000), rng.normal(0.0, 0.5, 4000)
    scores, labels = np.r_[tgt, non], np.r_[np.ones(4000, bool), np.zeros(4000, bool)]
    cal = Calibration.fit(scores, labels)
    assert cal.slope == pytest.approx(4.0, rel=0.1) and cal.offset == pytest.approx(-2.0, abs=0.2)
    assert cal(np.array([0.5]))[0] == pytest.approx(0.0, abs=0.15)  # midway: equal likelihoods
    assert Calibration.load(cal.save(tmp_path / "cal.json")) == cal
    with pytest.raises(ConfigError, match="target and non-target"):
        Calibration.fit([0.1, 0.2], [True, True])


def test_det_plot(tmp_path, rng):
    from spkid.app.plots import plot_det
    from tests.output_checks import check_png

    s = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 2000)]
    t = np.r_[np.ones(200, bool), np.zeros(2000, bool)]
    path = plot_det({"a": det_curve(s, t)[:2], "b": det_curve(-s, t)[:2]}, tmp_path / "det.png", dpi=50)
    check_png(path, (300, 300))
