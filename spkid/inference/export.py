"""Export trained checkpoints (either backend), and open a checkpoint or an export alike.

``export_model(checkpoint, out, format)`` reads the checkpoint's metadata, loads the model with the
backend that made it (:func:`spkid.backends.get_backend`) and hands it to that backend's
:meth:`~spkid.backends.Backend.export` with the metadata of :func:`spkid.inference.onnx.export_metadata`:

- ``onnx``: dynamic ``batch`` and ``time`` axes, inputs ``features`` (batch, time, n_mels) float32 and
  ``lengths`` (batch,) int64, outputs ``logits``, ``embedding``, ``attention``, the metadata in its
  ``metadata_props``; run it with :class:`spkid.inference.onnx.OnnxEmbedder`.
- ``torchscript``: a traced module with the same signature, metadata inside the archive.
- ``keras``: a ``.keras`` file plus the metadata in a ``.json`` of the same name beside it.

Any backend's checkpoint goes to any format: a backend writes the other framework's formats through its
twin in that framework (the exact weight port of :mod:`spkid_keras.convert`), so exporting a Keras model
to ONNX / TorchScript needs PyTorch and a PyTorch model to ``.keras`` needs Keras. This module imports
no deep-learning framework.
"""
from __future__ import annotations

import os
from pathlib import Path

from spkid.backends import get_backend
from spkid.errors import ConfigError
from spkid.inference.base import Embedder
from spkid.inference.embedder import load_embedder
from spkid.inference.onnx import OnnxEmbedder, export_metadata
from spkid.training.checkpoints import read_checkpoint

__all__ = ["FORMATS", "export_model", "open_embedder"]

FORMATS = ("onnx", "torchscript", "keras")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "keras": ".keras"}


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, format: str = "onnx", *,
                 prefer: str = "best", opset: int = 17) -> Path:
    """Export the checkpoint (run dir, metadata ``.json`` or state file) to ``out``; returns the path written.

    ``format``: ``"onnx"``, ``"torchscript"`` or ``"keras"``. A missing suffix is added (``.onnx`` /
    ``.pt`` / ``.keras``). BackendError when a framework the export needs is not installed.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix != _SUFFIX[format]:
        out = out.with_name(out.name + _SUFFIX[format])
    meta, _ = read_checkpoint(checkpoint, prefer=prefer)
    backend = get_backend(meta["backend"])
    if format not in backend.export_formats:
        raise ConfigError(f"the {backend.name} backend does not export {format!r}; it exports "
                          f"{', '.join(backend.export_formats)}")
    model = backend.load_model(checkpoint, prefer=prefer)
    return backend.export(model, out, format, export_metadata(meta), opset=opset)


def open_embedder(path: str | os.PathLike, *, prefer: str = "best", serving: bool = False) -> Embedder:
    """An :class:`~spkid.inference.onnx.OnnxEmbedder` for a ``.onnx`` file, else
    :func:`spkid.inference.embedder.load_embedder`. ``serving``: an ONNX session for a server that runs
    requests in parallel threads: one intra-op thread, no spinning (``benchmarks/serve_load.py``: identify
    p95 91 -> 56 ms with 8 clients on a loaded 2-core machine)."""
    if Path(path).suffix == ".onnx":
        return OnnxEmbedder(path, threads=1, spin=False) if serving else OnnxEmbedder(path)
    return load_embedder(path, prefer=prefer)
