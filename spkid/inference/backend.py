"""The half of a backend object both backends share (:class:`BackendBase`).

A backend (``spkid_torch.backend``, ``spkid_keras.backend``) subclasses it, names its two modules
(:meth:`BackendBase._models`, :meth:`BackendBase._train`, each a plain import done on first use so that
``get_backend`` stays cheap) and writes only what differs: its training adapter and its exporters.
Evaluation and embedding are the shared :func:`spkid.training.evaluation.evaluate_with` /
:func:`~spkid.training.evaluation.embed_with` through the object itself.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from spkid.models.registry import list_models
from spkid.training.evaluation import embed_with, evaluate_with

__all__ = ["BackendBase"]


class BackendBase:
    """Shared members of :class:`spkid.backends.Backend` implementations."""

    name: str
    export_formats: tuple[str, ...] = ("onnx", "torchscript", "keras")

    def _models(self) -> ModuleType:
        """The backend's ``models`` package (``create_model``, ``count_params``)."""
        raise NotImplementedError

    def _train(self) -> ModuleType:
        """The backend's ``train`` module (``fit``, ``load_checkpoint``, ``load_model``, ``forward_fn``)."""
        raise NotImplementedError

    def list_models(self) -> list[str]:
        return list_models()

    def create_model(self, name: str, n_classes: int, **overrides: Any):
        return self._models().create_model(name, n_classes, **overrides)

    def count_params(self, model) -> dict[str, int]:
        return self._models().count_params(model)

    def load_checkpoint(self, path: str | os.PathLike, *, prefer: str = "best"):
        return self._train().load_checkpoint(path, prefer=prefer)

    def load_model(self, path: str | os.PathLike, *, prefer: str = "best"):
        return self._train().load_model(path, prefer=prefer)

    def forward_fn(self, model) -> Callable[[np.ndarray, np.ndarray], dict]:
        return self._train().forward_fn(model)

    def adapter(self, model=None):
        raise NotImplementedError

    def fit(self, config, train_set, val_set, out_dir: str | os.PathLike, *, resume: bool = False,
            callbacks: Sequence[Callable] = (), progress: bool = True, model=None) -> list[dict]:
        return self._train().fit(config, train_set, val_set, out_dir, resume=resume, callbacks=callbacks,
                                 progress=progress, model=model)

    def evaluate(self, model_or_path, dataset, *, config=None) -> dict:
        return evaluate_with(self, model_or_path, dataset, config)

    def embed(self, model_or_path, features_list: Sequence[np.ndarray], *, config=None) -> np.ndarray:
        return embed_with(self, model_or_path, features_list, config)

    def export(self, model, out: str | os.PathLike, format: str, metadata: dict[str, str] | None = None,
               **opts: Any) -> Path:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__module__}.BACKEND"
