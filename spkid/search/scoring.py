"""Cosine scoring of verification trials, score normalisation and calibration (framework-free).

- :func:`cosine_trials`: the cosine similarity of each trial's two embeddings.
- :func:`cohort_stats` / :func:`s_norm`: symmetric score normalisation (S-norm) and adaptive S-norm
  (AS-norm). Each side of a trial is scored against a cohort of embeddings of other speakers (e.g. the
  training set); with ``top_n`` only its ``top_n`` highest cohort scores are kept (AS-norm). The trial's
  score becomes ``0.5 * ((s - mu_1) / sigma_1 + (s - mu_2) / sigma_2)`` -- Kenny, "Bayesian speaker
  verification with heavy-tailed priors", Odyssey 2010 (S-norm); Cumani et al., "Comparison of speaker
  recognition approaches for real applications", Interspeech 2011, and Matejka et al., "Analysis of score
  normalization in multilingual speaker recognition", Interspeech 2017 (adaptive, top-N cohort).
- :class:`Calibration`: scores to log-likelihood ratios with prior-weighted logistic regression
  (Brümmer and du Preez, "Application-independent evaluation of speaker detection", 2006): the classes
  are weighted to an effective prior of 0.5, so ``a * score + b`` is an LLR.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from spkid.errors import ConfigError
from spkid.fileio import atomic_write_json, check_format, read_json_file
from spkid.search.index import l2_normalize

__all__ = ["cosine_trials", "cohort_stats", "s_norm", "normalize_trials", "score_trial_list", "Calibration"]

_CHUNK = 2048  # rows of the (chunk, C) cohort score block


def _unit(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"{what} must be a non-empty (N, D) array, got shape {x.shape}")
    return l2_normalize(x)


def cosine_trials(embeddings, left, right) -> np.ndarray:
    """(n,) float64 cosine of ``embeddings[left[i]]`` and ``embeddings[right[i]]``; ``embeddings`` (N, D),
    ``left`` / ``right`` (n,) int row indices."""
    x = _unit(embeddings, "embeddings")
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    return np.einsum("ij,ij->i", x[left], x[right], dtype=np.float64)


def cohort_stats(embeddings, cohort, top_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation, both (N,) float64, of each embedding's cosine scores against the cohort.

    ``embeddings`` (N, D), ``cohort`` (C, D); ``top_n``: keep only each row's ``top_n`` highest cohort
    scores (AS-norm; ``None`` or ``>= C``: all of them, S-norm). Computed in blocks of rows, so memory
    stays ``O(block * C)``.
    """
    x, c = _unit(embeddings, "embeddings"), _unit(cohort, "cohort")
    if x.shape[1] != c.shape[1]:
        raise ConfigError(f"cohort embeddings are {c.shape[1]}-d, the trials' {x.shape[1]}-d")
    if top_n is not None and top_n < 1:
        raise ConfigError(f"top_n must be at least 1, got {top_n}")
    k = c.shape[0] if top_n is None else min(int(top_n), c.shape[0])
    mean, std = np.empty(x.shape[0]), np.empty(x.shape[0])
    for i in range(0, x.shape[0], _CHUNK):
        s = (x[i:i + _CHUNK] @ c.T).astype(np.float64)
        if k < c.shape[0]:
            s = np.partition(s, c.shape[0] - k, axis=1)[:, c.shape[0] - k:]
        mean[i:i + _CHUNK], std[i:i + _CHUNK] = s.mean(axis=1), s.std(axis=1)
    return mean, np.maximum(std, 1e-8)


def s_norm(scores, stats_left, stats_right) -> np.ndarray:
    """``0.5 * ((s - mu_l) / sd_l + (s - mu_r) / sd_r)``: ``scores`` (n,), each stats a ``(mean, std)`` of (n,)."""
    s = np.asarray(scores, dtype=np.float64)
    (ml, sl), (mr, sr) = stats_left, stats_right
    return 0.5 * ((s - ml) / sl + (s - mr) / sr)


def normalize_trials(embeddings, left, right, cohort=None, top_n: int | None = None) -> np.ndarray:
    """Cosine trial scores (:func:`cosine_trials`), S-normalised against ``cohort`` when one is given
    (adaptive with ``top_n``). Each distinct embedding's cohort statistics are computed once."""
    raw = cosine_trials(embeddings, left, right)
    if cohort is None:
        return raw
    mean, std = cohort_stats(embeddings, cohort, top_n)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    return s_norm(raw, (mean[left], std[left]), (mean[right], std[right]))


def score_trial_list(trials, embedded: dict, cohort=None, top_n: int | None = None):
    """Scores of a :class:`~spkid.search.trials.TrialList` whose files were embedded: ``embedded`` maps a
    list path to its (D,) embedding (files missing from it failed). Returns ``(kept, scores)``: the trials
    whose two files are both embedded (a TrialList) and their (n,) float64 (S-normalised) cosine scores."""
    names = list(embedded)
    row = {p: i for i, p in enumerate(names)}
    keep = np.array([a in row and b in row for a, b in zip(trials.left, trials.right)], dtype=bool)
    kept = trials.subset(keep)
    if not len(kept):
        return kept, np.zeros(0)
    emb = np.stack([np.asarray(embedded[p], dtype=np.float32) for p in names])
    return kept, normalize_trials(emb, [row[a] for a in kept.left], [row[b] for b in kept.right], cohort, top_n)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """``llr = slope * score + offset`` (natural log), fitted by :meth:`fit`."""

    slope: float
    offset: float

    @classmethod
    def fit(cls, scores, is_target) -> "Calibration":
        """Prior-weighted (0.5) logistic regression of the labels on the scores (nearly unregularised)."""
        from sklearn.linear_model import LogisticRegression

        s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        t = np.asarray(is_target).astype(bool)
        if t.shape != (s.shape[0],) or t.all() or not t.any():
            raise ConfigError("calibration needs labelled target and non-target trials")
        model = LogisticRegression(C=1e6, class_weight="balanced", max_iter=1000).fit(s, t)
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]))

    def __call__(self, scores) -> np.ndarray:
        """(n,) float64 log-likelihood ratios of ``scores`` (n,)."""
        return self.slope * np.asarray(scores, dtype=np.float64) + self.offset

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, {"format": "spkid-calibration", "version": 1, **dataclasses.asdict(self)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        data = check_format(read_json_file(path, "calibration file", ConfigError), "spkid-calibration", 1,
                            "calibration file", error=ConfigError, path=path)
        try:
            return cls(float(data["slope"]), float(data["offset"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError("calibration file lacks numeric 'slope' / 'offset'", path=path) from None
