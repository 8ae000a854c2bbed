"""Training shared by both backends: :class:`TrainConfig`, the epoch loop, checkpoints, evaluation and data-parallel rules.

Public names are imported lazily: ``import spkid.training`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "TrainConfig": "config",
    "Plateau": "loop",
    "Adapter": "loop",
    "AdapterBase": "loop",
    "run_training": "loop",
    "resolve_spec": "loop",
    "check_model": "loop",
    "RunPaths": "checkpoints",
    "read_checkpoint": "checkpoints",
    "check_compatible": "checkpoints",
    "sha256_file": "checkpoints",
    "predict": "evaluation",
    "average_posteriors": "evaluation",
    "classification_report": "evaluation",
    "evaluate_with": "evaluation",
    "embed_with": "evaluation",
    "device_count": "distributed",
    "micro_batches": "distributed",
    "usable": "distributed",
    "launch_torchrun": "distributed",
    "margin_at": "losses",
    "aam_logits": "losses",
    "aam_loss": "losses",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
