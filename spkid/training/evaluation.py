"""Evaluation shared by both backends: utterance-level outputs over padded batches, and the
classification report (top-1, top-5, per-speaker accuracy, confusion, loss) of An, Thanh & Liu (2019).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spkid.data.sampler import eval_batches, eval_pieces
from spkid.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
from spkid.training.config import TrainConfig

__all__ = ["Forward", "predict", "average_posteriors", "classification_report"]

Forward = Callable[[np.ndarray, np.ndarray], dict]


def predict(forward: Forward, features: Sequence[np.ndarray], config: TrainConfig,
            keys: Sequence[str] = ("logits", "embedding")) -> dict:
    """Run ``forward(x (B, T, n_mels), lengths (B,)) -> dict of (B, ...) arrays`` over utterances.

    Returns ``{key: (N, ...) float32}``, one row per utterance: the output for its whole (padded)
    utterance, or the mean over its windows when ``config.eval_mode == "windows"``.
    """
    pieces, owner = eval_pieces(features, config)
    n = len(features)
    out: dict[str, np.ndarray] = {}
    for x, lengths, idx in eval_batches(pieces, config.eval_batch_size):
        res = forward(x, lengths)
        for k in keys:
            v = np.asarray(res[k], dtype=np.float32)
            if k not in out:
                out[k] = np.zeros((n,) + v.shape[1:], dtype=np.float64)
            np.add.at(out[k], owner[idx], v)
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    return {k: (v / counts.reshape((-1,) + (1,) * (v.ndim - 1))).astype(np.float32) for k, v in out.items()}


def average_posteriors(logits_list: Sequence[np.ndarray]) -> np.ndarray:
    """Ensemble of classifiers over the same classes: ``log(mean_m softmax(logits_m))``, (N, C) float64.

    The result is a valid logit matrix (its softmax is the averaged posterior), so it can go wherever
    one model's logits go (e.g. :func:`classification_report`).
    """
    if not logits_list:
        raise ValueError("average_posteriors needs at least one logit matrix")
    shapes = {np.shape(lg) for lg in logits_list}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"logit matrices must all be (N, C) of one shape, got {sorted(shapes)}")
    total = 0.0
    for lg in logits_list:
        z = np.asarray(lg, dtype=np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        total = total + z / z.sum(axis=1, keepdims=True)
    return np.log(total / len(logits_list))


def classification_report(logits: np.ndarray, labels: np.ndarray, speakers: Sequence[str]) -> dict:
    """``dict(top1, top5, per_speaker {name: accuracy}, confusion (C, C) list, n, loss)`` from logits."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(speakers)
    pred = logits.argmax(axis=1)
    per = per_class_accuracy(labels, pred, n_classes)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "top1": float(topk_accuracy(logits, labels, k=1)),
        "top5": float(topk_accuracy(logits, labels, k=min(5, n_classes))),
        "loss": float(-logp[np.arange(len(labels)), labels].mean()),
        "per_speaker": {s: (None if np.isnan(a) else float(a)) for s, a in zip(speakers, per)},
        "confusion": confusion_matrix(labels, pred, n_classes).tolist(),
        "n": int(len(labels)),
    }

