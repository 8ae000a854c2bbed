"""Evaluation shared by both backends: utterance-level outputs over padded batches, the
classification report (top-1, top-5, per-speaker accuracy, confusion, loss) of An, Thanh & Liu (2019),
and the bodies of every backend's ``evaluate`` / ``embed`` (:func:`evaluate_with`, :func:`embed_with`),
which reach the framework only through a :class:`spkid.backends.Backend`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from spkid.backends import Backend
from spkid.data.sampler import eval_batches, eval_pieces
from spkid.errors import CheckpointError
from spkid.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
from spkid.training.checkpoints import read_checkpoint
from spkid.training.config import TrainConfig

__all__ = ["Forward", "predict", "average_posteriors", "classification_report", "evaluate_with", "embed_with"]

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



def _model_and_config(backend: Backend, model_or_path: Any, config: TrainConfig | None):
    """(model, TrainConfig, checkpoint speakers or None) from a model object or a checkpoint path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        meta, _ = read_checkpoint(model_or_path)
        model = backend.load_model(model_or_path)
        return model, config or TrainConfig.from_dict(meta["train_config"]), list(meta["speakers"])
    return model_or_path, config or TrainConfig(), None


def evaluate_with(backend: Backend, model_or_path: Any, dataset, config: TrainConfig | None = None) -> dict:
    """:meth:`Backend.evaluate <spkid.backends.Backend.evaluate>`: ``dict(top1, top5, per_speaker,
    confusion, n, loss)`` of a model or checkpoint on ``dataset`` (a FeatureSet). ``config`` defaults to
    the checkpoint's TrainConfig (full utterances vs windows); a checkpoint's speakers must be the data's."""
    model, config, speakers = _model_and_config(backend, model_or_path, config)
    if speakers is not None and list(dataset.speakers) != speakers:
        raise CheckpointError(
            f"the data set's {len(dataset.speakers)} speakers differ from the checkpoint's {len(speakers)} "
            f"(first: {list(dataset.speakers)[:3]} vs {speakers[:3]})", path=os.fspath(model_or_path))
    logits = predict(backend.forward_fn(model), dataset.features, config, keys=("logits",))["logits"]
    return classification_report(logits, dataset.labels, dataset.speakers)


def embed_with(backend: Backend, model_or_path: Any, features_list: Sequence[np.ndarray],
               config: TrainConfig | None = None) -> np.ndarray:
    """:meth:`Backend.embed <spkid.backends.Backend.embed>`: (N, E) float32 embeddings."""
    model, config, _ = _model_and_config(backend, model_or_path, config)
    return predict(backend.forward_fn(model), features_list, config, keys=("embedding",))["embedding"]
