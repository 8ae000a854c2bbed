"""Framework-free architecture specs (the single source of truth both backends build from) and the model registry.

Public names are imported lazily: ``import spkid.models`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "AttentionSpec": "specs",
    "VGGSpec": "specs",
    "ResNetSpec": "specs",
    "ModelSpec": "specs",
    "MODEL_NAMES": "specs",
    "model_spec": "specs",
    "conv_output_length": "specs",
    "output_frames": "specs",
    "trunk_channels": "specs",
    "attention_input_dim": "specs",
    "pooled_dim": "specs",
    "list_models": "registry",
    "check_create_args": "registry",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
