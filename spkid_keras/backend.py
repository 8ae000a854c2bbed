"""The Keras backend object, :data:`BACKEND` (a :class:`spkid.backends.Backend`), as
``spkid.backends.get_backend("keras")`` returns it.

Every member imports what it needs on first use: ``list_models`` needs no Keras / TensorFlow at all.
``evaluate`` and ``embed`` (also ``spkid_keras.evaluate`` / ``spkid_keras.embed``) are the shared
:func:`spkid.training.evaluation.evaluate_with` / :func:`~spkid.training.evaluation.embed_with`
through this object. Export: ``.keras`` natively; ONNX and TorchScript through the model's PyTorch twin
(the exact weight port of :mod:`spkid_keras.convert`, then the torch backend's exporters; see
:mod:`spkid_keras.export` for why), so those two formats need PyTorch installed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spkid.backends import get_backend
from spkid.errors import BackendError, ConfigError
from spkid.inference.backend import BackendBase

__all__ = ["KerasBackend", "BACKEND", "TWIN_EXPORT_NEEDS_TORCH", "evaluate", "embed"]

TWIN_EXPORT_NEEDS_TORCH = ("ONNX/TorchScript export of a Keras model goes through its PyTorch twin (the weight "
                           "port of spkid_keras.convert) and needs PyTorch: pip install 'spkid[torch]'")


class KerasBackend(BackendBase):
    """:class:`spkid.backends.Backend` for ``spkid_keras`` (models are ``keras.Model``)."""

    name = "keras"

    def _models(self):
        import spkid_keras.models

        return spkid_keras.models

    def _train(self):
        import spkid_keras.train

        return spkid_keras.train

    def adapter(self, model=None):
        from spkid_keras.train import KerasAdapter

        return KerasAdapter(model)

    def export(self, model, out: str | os.PathLike, format: str, metadata: dict[str, str] | None = None,
               **opts: Any) -> Path:
        if format == "keras":
            from spkid_keras.export import to_keras

            return to_keras(model, out, metadata)
        if format not in self.export_formats:
            raise ConfigError(f"the keras backend does not export {format!r}; it exports "
                              f"{', '.join(self.export_formats)}")
        try:
            torch_backend = get_backend("torch")
        except BackendError:
            raise BackendError(TWIN_EXPORT_NEEDS_TORCH) from None
        from spkid_keras.export import to_torch_model

        return torch_backend.export(to_torch_model(model), out, format, metadata, **opts)


BACKEND = KerasBackend()


def evaluate(model_or_run_dir, dataset, *, config=None) -> dict:
    """``dict(top1, top5, per_speaker, confusion, n, loss)`` on ``dataset`` (a model or a checkpoint path)."""
    return BACKEND.evaluate(model_or_run_dir, dataset, config=config)


def embed(model_or_run_dir, features_list: Sequence[np.ndarray], *, config=None) -> np.ndarray:
    """(N, embedding_dim) float32 embeddings, one per (T_i, n_mels) utterance."""
    return BACKEND.embed(model_or_run_dir, features_list, config=config)
