"""The backend boundary: pick a deep-learning backend by name and use it through one typed interface.

``get_backend("torch")`` / ``get_backend("keras")`` return the backend object (``spkid_torch.backend.BACKEND``,
``spkid_keras.backend.BACKEND``), which satisfies :class:`Backend`: code written against one runs against
the other, e.g. ``get_backend(meta["backend"]).load_model(run_dir)``. Nothing here imports a framework;
the backend objects import theirs on first use of a member that needs it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from spkid.errors import BackendError

__all__ = ["BACKENDS", "Backend", "get_backend"]

# backend name -> package; the package's ``backend`` module defines the ``BACKEND`` object
BACKENDS = {"torch": "spkid_torch", "keras": "spkid_keras"}
# backend name -> the framework module it cannot work without (the 'spkid[NAME]' extra installs it)
_FRAMEWORK = {"torch": "torch", "keras": "keras"}


@runtime_checkable
class Backend(Protocol):
    """What a backend provides. Models are the backend's own objects; arrays in and out are numpy.

    ``config`` is a :class:`spkid.training.config.TrainConfig`, data sets are
    :class:`spkid.data.featuresets.FeatureSet`, ``path`` / ``model_or_path`` a run directory, checkpoint
    ``.json`` or state file (see :mod:`spkid.training.checkpoints`).
    """

    name: str  # "torch" | "keras": the ``backend`` field of the checkpoints it writes
    export_formats: tuple[str, ...]  # formats :meth:`export` writes (see spkid.inference.export.FORMATS)

    def list_models(self) -> list[str]:
        """Registered model names (framework-free: :func:`spkid.models.registry.list_models`)."""

    def create_model(self, name: str, n_classes: int, **overrides: Any) -> Any:
        """A fresh model; overrides go to :func:`spkid.models.specs.model_spec` (ConfigError if invalid)."""

    def count_params(self, model: Any) -> dict[str, int]:
        """``{"trainable": ..., "total": ...}`` (total includes BatchNorm statistics)."""

    def load_checkpoint(self, path: str | os.PathLike, *, prefer: str = "best") -> tuple[Any, dict]:
        """``(model in inference mode, checkpoint metadata)``; CheckpointError if missing or corrupt."""

    def load_model(self, path: str | os.PathLike, *, prefer: str = "best") -> Any:
        """The model of a checkpoint."""

    def forward_fn(self, model: Any) -> Callable[[Any, Any], dict]:
        """``f(x (B, T, n_mels) float32, lengths (B,)) -> {"logits", "embedding", "attention", "penalty"}``,
        numpy in and out, inference mode (:data:`spkid.training.evaluation.Forward`)."""

    def adapter(self, model: Any = None) -> Any:
        """The training adapter for :func:`spkid.training.loop.run_training` (an
        :class:`spkid.training.loop.AdapterBase`); ``model``: start from it instead of a fresh one."""

    def fit(self, config: Any, train_set: Any, val_set: Any, out_dir: str | os.PathLike, *, resume: bool = False,
            callbacks: Sequence[Callable] = (), progress: bool = True, model: Any = None) -> list[dict]:
        """Train (checkpoints in ``out_dir``); the history, one dict per epoch."""

    def evaluate(self, model_or_path: Any, dataset: Any, *, config: Any = None) -> dict:
        """``dict(top1, top5, per_speaker, confusion, n, loss)`` on ``dataset``."""

    def embed(self, model_or_path: Any, features_list: Sequence[Any], *, config: Any = None) -> Any:
        """(N, embedding_dim) float32, one row per (T_i, n_mels) utterance."""

    def export(self, model: Any, out: str | os.PathLike, format: str, metadata: dict[str, str] | None = None,
               **opts: Any) -> Path:
        """Write ``model`` in ``format`` (one of :attr:`export_formats`) to ``out``, with the string
        ``metadata`` inside (or beside) it; ``opts``: ``opset`` (ONNX). Returns the path written."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False


def get_backend(name: str) -> Backend:
    """The backend object for ``"torch"`` or ``"keras"``; BackendError if unknown or not installed.

    Cheap: the framework itself is only imported when a member that needs it is used.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    try:
        if not _installed(_FRAMEWORK[name]):
            raise ImportError(f"No module named {_FRAMEWORK[name]!r}")
        module = importlib.import_module(f"{BACKENDS[name]}.backend")
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} is not installed ({exc}); install it with: pip install 'spkid[{name}]'"
        ) from None
    return module.BACKEND
