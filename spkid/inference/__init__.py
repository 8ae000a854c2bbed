"""From a trained model to embeddings: checkpoint embedders, ONNX embedders and export.

Public names are imported lazily: ``import spkid.inference`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "Embedder": "embedder",
    "load_embedder": "embedder",
    "embed_files": "embedder",
    "evaluate_with": "embedder",
    "embed_with": "embedder",
    "export_metadata": "export",
    "export_model": "export",
    "OnnxEmbedder": "export",
    "open_embedder": "export",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
