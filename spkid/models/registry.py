"""The model registry both backends build from, framework-free: the names and the checks of ``create_model``.

``spkid_torch.create_model`` and ``spkid_keras.create_model`` call :func:`check_create_args` and build
their network from the :class:`~spkid.models.specs.ModelSpec` it returns, so both accept and refuse
exactly the same arguments with the same messages.
"""
from __future__ import annotations

from typing import Any

from spkid.errors import ConfigError
from spkid.models.specs import MODEL_NAMES, ModelSpec, model_spec

__all__ = ["list_models", "check_create_args"]


def list_models() -> list[str]:
    """Names accepted by ``create_model`` (those of :data:`spkid.models.specs.MODEL_NAMES`)."""
    return list(MODEL_NAMES)


def check_create_args(name: str, n_classes: int, **overrides: Any) -> ModelSpec:
    """The spec ``create_model(name, n_classes, **overrides)`` builds; ConfigError for an unknown name or
    override key (listing the valid ones) or an ``n_classes`` that is not an int >= 1."""
    spec = model_spec(name, **overrides)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"n_classes must be an int >= 1, got {n_classes!r}")
    return spec
