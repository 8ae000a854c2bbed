"""From a trained model to embeddings: checkpoint embedders, ONNX embedders, export and embeddings files.

Public names are imported lazily: ``import spkid.inference`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "Embedder": "base",
    "BackendBase": "backend",
    "load_embedder": "embedder",
    "embed_files": "embedder",
    "export_metadata": "onnx",
    "parse_metadata": "onnx",
    "export_model": "export",
    "OnnxEmbedder": "onnx",
    "open_embedder": "export",
    "Embeddings": "embeddings",
    "save_embeddings": "embeddings",
    "load_embeddings": "embeddings",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
