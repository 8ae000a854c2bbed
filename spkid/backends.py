"""Pick a deep-learning backend by name without importing it until asked.

Both backend packages expose the same public names (``create_model``, ``list_models``, ...), so code
written against one runs against the other: ``get_backend("torch").create_model("resnet18", n_classes=10)``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from spkid.errors import BackendError

BACKENDS = {"torch": "spkid_torch", "keras": "spkid_keras"}


def get_backend(name: str) -> ModuleType:
    """Import and return ``spkid_torch`` or ``spkid_keras``; a clear error if unknown or not installed."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        extra = "torch" if name == "torch" else "keras"
        raise BackendError(
            f"backend {name!r} is not installed ({exc}); install it with: pip install 'spkid[{extra}]'"
        ) from None
