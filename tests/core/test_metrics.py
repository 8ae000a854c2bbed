"""spkid.metrics against scikit-learn and hand-worked examples."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as skm

from spkid.metrics import compute_eer, confusion_matrix, per_class_accuracy, threshold_at_eer, topk_accuracy, topk_predictions


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_accuracy_matches_sklearn(rng, k):
    scores = rng.normal(size=(200, 7))
    labels = rng.integers(0, 7, size=200)
    expected = skm.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7))
    assert topk_accuracy(scores, labels, k=k) == pytest.approx(expected)


def test_topk_hand_worked():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.3, 0.3, 0.4]])
    labels = np.array([1, 2, 1])
    assert topk_accuracy(scores, labels, k=1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, k=2) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, labels, k=3) == 1.0
    # ties go to the lower class index
    np.testing.assert_array_equal(topk_predictions(scores, 2), [[1, 2], [0, 2], [2, 0]])


@pytest.mark.parametrize("k", [0, 4])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(np.zeros((2, 3)), [0, 1], k=k)


def test_topk_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        topk_accuracy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="shape"):
        topk_accuracy(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.full((2, 3), np.nan), [0, 1])


def test_confusion_and_per_class_match_sklearn(rng):
    y = rng.integers(0, 5, size=300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, size=300))
    cm = confusion_matrix(y, p, 5)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=np.arange(5)))
    assert cm.dtype.kind == "i"
    np.testing.assert_allclose(
        per_class_accuracy(y, p, 5), skm.recall_score(y, p, average=None, labels=np.arange(5))
    )


def test_per_class_accuracy_nan_for_absent_class():
    acc = per_class_accuracy([0, 0, 1], [0, 1, 1], 3)
    np.testing.assert_allclose(acc[:2], [0.5, 1.0])
    assert np.isnan(acc[2])


def _sklearn_eer(scores, is_target):
    fpr, tpr, thr = skm.roc_curve(is_target, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_recipe(seed):
    rng = np.random.default_rng(seed)
    tgt = rng.random(400) < 0.3
    scores = rng.normal(size=400) + 1.5 * tgt
    eer, thr = compute_eer(scores, tgt)
    assert eer == pytest.approx(_sklearn_eer(scores, tgt), abs=1e-9)
    # at the returned threshold both error rates are within one trial of the EER
    far = np.mean(scores[~tgt] >= thr)
    frr = np.mean(scores[tgt] < thr)
    assert abs(far - eer) <= 1 / (~tgt).sum() + 1e-12
    assert abs(frr - eer) <= 1 / tgt.sum() + 1e-12
    assert threshold_at_eer(scores, tgt) == thr


def test_eer_hand_worked():
    # perfectly separated -> 0, threshold at the lowest target score
    assert compute_eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == (0.0, 0.8)
    # fully inverted -> 1
    assert compute_eer([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])[0] == pytest.approx(1.0)
    # targets 0.9, 0.4; non-targets 0.6, 0.1: one of each on the wrong side -> EER 0.5
    assert compute_eer([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0])[0] == pytest.approx(0.5)


def test_eer_rejects_one_sided_and_nonfinite():
    with pytest.raises(ValueError, match="both target and non-target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        compute_eer([np.nan, 0.2], [1, 0])
