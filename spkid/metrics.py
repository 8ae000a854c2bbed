"""Identification and verification metrics on plain numpy arrays.

- :func:`topk_accuracy` / :func:`topk_predictions`: closed-set identification from a score matrix
  ``(N, C)`` (logits, probabilities or similarities: larger is better).
- :func:`confusion_matrix` / :func:`per_class_accuracy`: rows are true classes, columns predictions.
- :func:`compute_eer`: the equal error rate of a set of trials, the point of the ROC where the false
  acceptance rate equals the false rejection rate (as reported for VoxCeleb verification, Nagrani et al.,
  "VoxCeleb: a large-scale speaker identification dataset", Interspeech 2017).
- :func:`compute_min_dcf`: the minimum normalised detection cost of the NIST SRE / VoxCeleb challenge
  evaluation plans, ``C_det = C_miss P_miss P_target + C_fa P_fa (1 - P_target)`` divided by
  ``min(C_miss P_target, C_fa (1 - P_target))``, minimised over thresholds (p_target 0.01 or 0.05,
  C_miss = C_fa = 1 in VoxSRC).
- :func:`det_curve`: the miss / false-alarm rates of every threshold (the points of a DET plot).

Ties between scores are broken in favour of the lower class index everywhere, so results are
deterministic.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "topk_predictions",
    "topk_accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "compute_eer",
    "threshold_at_eer",
    "compute_min_dcf",
    "det_curve",
]


def _score_matrix(scores) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"scores must have shape (N, C) with C >= 1, got {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s


def _class_labels(labels, n: int, n_classes: int, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {y.shape}")
    if n and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return y


def topk_predictions(scores, k: int = 1) -> np.ndarray:
    """The ``k`` best classes of each row of ``scores`` (N, C), best first: (N, k) int64.

    Equal scores are ordered by class index (lower first).
    """
    s = _score_matrix(scores)
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be in 1..{s.shape[1]} (number of classes), got {k}")
    return np.argsort(-s, axis=1, kind="stable")[:, :k].astype(np.int64)


def topk_accuracy(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores.

    ``scores`` (N, C) with larger = more likely, ``labels`` (N,) int class indices. Returns a float
    in [0, 1]; ``nan`` when N == 0.
    """
    s = _score_matrix(scores)
    y = _class_labels(labels, s.shape[0], s.shape[1])
    if s.shape[0] == 0:
        return float("nan")
    top = topk_predictions(s, k)
    return float((top == y[:, None]).any(axis=1).mean())


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: entry ``[i, j]`` is how many examples of class ``i`` were predicted ``j``."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t = np.asarray(y_true)
    if t.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {t.shape}")
    t = _class_labels(t, t.shape[0], n_classes, "y_true")
    p = _class_labels(y_pred, t.shape[0], n_classes, "y_pred")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def per_class_accuracy(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C,) float64: for each true class, the fraction of its examples predicted correctly (recall).

    Classes with no examples get ``nan`` (not 0), so averages can skip them with ``np.nanmean``.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def _roc(scores, is_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False acceptance / false rejection rates and thresholds, from the strictest threshold down.

    Point ``i`` accepts every trial with score >= ``thresholds[i]``; point 0 (threshold +inf) accepts
    nothing.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(is_target)
    if s.ndim != 1 or t.shape != s.shape:
        raise ValueError(f"scores and is_target must be 1-D of equal length, got {s.shape} and {t.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if t.dtype != bool:
        if not np.isin(t, (0, 1)).all():
            raise ValueError("is_target must be boolean (or 0/1)")
        t = t.astype(bool)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"need both target and non-target trials, got {n_pos} target and {n_neg} non-target"
        )
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last trial of each distinct score
    tp = np.cumsum(t)[last]
    fp = np.cumsum(~t)[last]
    far = np.r_[0.0, fp / n_neg]
    frr = np.r_[1.0, 1.0 - tp / n_pos]
    thresholds = np.r_[np.inf, s[last]]
    return far, frr, thresholds


def compute_eer(scores, is_target) -> tuple[float, float]:
    """Equal error rate of a set of trials and the threshold where it occurs.

    ``scores`` (n,) float, larger = more likely the same speaker; ``is_target`` (n,) bool. The ROC is
    swept from the strictest threshold down; the EER is where the false-rejection and
    false-acceptance curves cross, linearly interpolated between the two ROC points around the
    crossing (the same value as the common ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)``
    recipe on scikit-learn's ``roc_curve``). The threshold is interpolated the same way; accept a
    trial when ``score >= threshold``.

    Returns ``(eer, threshold)``, ``eer`` in [0, 1].
    """
    far, frr, thr = _roc(scores, is_target)
    diff = frr - far  # starts at +1 (accept nothing), ends at -1 (accept everything)
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0 or i == 0:
        return float(far[i]), float(thr[i])
    a = diff[i - 1] / (diff[i - 1] - diff[i])
    eer = far[i - 1] + a * (far[i] - far[i - 1])
    if np.isinf(thr[i - 1]):  # crossing before the first score: accept from the top score on
        return float(eer), float(thr[i])
    return float(eer), float(thr[i - 1] + a * (thr[i] - thr[i - 1]))


def threshold_at_eer(scores, is_target) -> float:
    """Only the threshold of :func:`compute_eer`."""
    return compute_eer(scores, is_target)[1]


def det_curve(scores, is_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_fa, p_miss, thresholds)``, each (K + 1,) float64 for K distinct scores: point ``i`` accepts the
    trials with ``score >= thresholds[i]``; point 0 (threshold ``+inf``) accepts nothing (p_fa 0, p_miss 1),
    the last accepts everything (p_fa 1, p_miss 0)."""
    return _roc(scores, is_target)


def compute_min_dcf(scores, is_target, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
                    ) -> tuple[float, float]:
    """Minimum normalised detection cost and the threshold reaching it (accept ``score >= threshold``).

    ``scores`` (n,), ``is_target`` (n,) bool. ``C_det(t) = c_miss P_miss(t) p_target + c_fa P_fa(t)
    (1 - p_target)``, normalised by the cost of the better trivial system ``min(c_miss p_target,
    c_fa (1 - p_target))``, minimised over every threshold (accept nothing and accept all included, so
    the value is at most 1). Returns ``(min_dcf, threshold)``.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    p_fa, p_miss, thr = _roc(scores, is_target)
    cost = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    cost /= min(c_miss * p_target, c_fa * (1.0 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i]), float(thr[i])
