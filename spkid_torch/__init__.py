"""spkid_torch: the spkid models in PyTorch (same public names as ``spkid_keras``).

``create_model(name, n_classes, **spec_overrides)`` and ``list_models()``; submodules are imported on
first use so ``import spkid_torch`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it (other helpers add their names here)
_LAZY = {
    "create_model": "models",
    "list_models": "models",
    "count_params": "models",
    "SpeakerNet": "models",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spkid_torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# training API (spkid_<backend>.train): fit / evaluate / embed / checkpoints
_LAZY.update({n: "train" for n in ("fit", "evaluate", "embed", "load_model", "load_checkpoint")})
__all__ += ["fit", "evaluate", "embed", "load_model", "load_checkpoint"]
