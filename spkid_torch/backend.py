"""The PyTorch backend object, :data:`BACKEND` (a :class:`spkid.backends.Backend`), as
``spkid.backends.get_backend("torch")`` returns it.

Every member imports what it needs on first use: ``list_models`` needs no torch at all. ``evaluate`` and
``embed`` (also ``spkid_torch.evaluate`` / ``spkid_torch.embed``) are the shared
:func:`spkid.training.evaluation.evaluate_with` / :func:`~spkid.training.evaluation.embed_with`
through this object. Export: ONNX and TorchScript with :mod:`spkid_torch.export`; ``.keras`` through
the model's Keras twin (:func:`spkid_keras.export.from_torch_model`), which needs Keras.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spkid.backends import get_backend
from spkid.errors import BackendError, ConfigError
from spkid.inference.backend import BackendBase

__all__ = ["TorchBackend", "BACKEND", "evaluate", "embed"]


class TorchBackend(BackendBase):
    """:class:`spkid.backends.Backend` for ``spkid_torch`` (models are ``torch.nn.Module``)."""

    name = "torch"

    def _models(self):
        import spkid_torch.models

        return spkid_torch.models

    def _train(self):
        import spkid_torch.train

        return spkid_torch.train

    def adapter(self, model=None):
        from spkid_torch.train import TorchAdapter

        return TorchAdapter(model)

    def export(self, model, out: str | os.PathLike, format: str, metadata: dict[str, str] | None = None, *,
               opset: int = 17, **_: Any) -> Path:
        if format == "onnx":
            from spkid_torch.export import to_onnx

            return to_onnx(model, out, metadata, opset=opset)
        if format == "torchscript":
            from spkid_torch.export import to_torchscript

            return to_torchscript(model, out, metadata)
        if format == "keras":
            try:
                keras_backend = get_backend("keras")
            except BackendError:
                raise BackendError("Keras export of a PyTorch model goes through its Keras twin and needs "
                                   "Keras: pip install 'spkid[keras]'") from None
            from spkid_keras.export import from_torch_model

            return keras_backend.export(from_torch_model(model), out, "keras", metadata)
        raise ConfigError(f"the torch backend does not export {format!r}; it exports {', '.join(self.export_formats)}")


BACKEND = TorchBackend()


def evaluate(model_or_run_dir, dataset, *, config=None) -> dict:
    """``dict(top1, top5, per_speaker, confusion, n, loss)`` on ``dataset`` (a model or a checkpoint path;
    ``config`` defaults to the checkpoint's TrainConfig, which decides full-utterance vs windows)."""
    return BACKEND.evaluate(model_or_run_dir, dataset, config=config)


def embed(model_or_run_dir, features_list: Sequence[np.ndarray], *, config=None) -> np.ndarray:
    """(N, embedding_dim) float32 embeddings, one per (T_i, n_mels) utterance."""
    return BACKEND.embed(model_or_run_dir, features_list, config=config)
