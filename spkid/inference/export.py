"""Export trained checkpoints (either backend) and run exported ONNX files without any framework.

``export_model(checkpoint, out, format)`` loads the checkpoint with the backend that made it and writes:

- ``onnx``: through ``torch.onnx`` for both backends (a Keras model is first ported to its PyTorch twin
  with the exact weight map of :mod:`spkid_keras.convert`; see :mod:`spkid_keras.export` for why), with
  dynamic ``batch`` and ``time`` axes: inputs ``features`` (batch, time, n_mels) float32 and ``lengths``
  (batch,) int64, outputs ``logits``, ``embedding``, ``attention``. ``metadata_props`` carry everything
  inference needs (feature config, training config for cropping / windows, labels, model name, spec).
- ``torchscript``: a traced module with the same signature, metadata inside the archive.
- ``keras``: a ``.keras`` file plus the metadata in a ``.json`` of the same name beside it.

:class:`OnnxEmbedder` runs an exported ``.onnx`` with onnxruntime behind the same interface as
:class:`spkid.inference.Embedder` (``embed`` / ``logits`` / ``attention`` / ``identify``, ``labels``,
``feature_config``), so the CLI and the HTTP service work from a checkpoint or an ONNX file alike
(:func:`open_embedder`). This module imports no deep-learning framework; onnxruntime only when used.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from spkid.errors import CheckpointError, ConfigError
from spkid.inference.embedder import Embedder, load_embedder

__all__ = ["FORMATS", "EXPORT_FORMAT", "export_metadata", "export_model", "OnnxEmbedder", "open_embedder"]

FORMATS = ("onnx", "torchscript", "keras")
EXPORT_FORMAT = 1
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "keras": ".keras"}
# metadata keys stored as JSON text (ONNX metadata_props values are strings)
_JSON_KEYS = ("spec", "speakers", "feature_config", "train_config")


def export_metadata(meta: dict) -> dict[str, str]:
    """String-valued export metadata from a checkpoint's metadata (see :func:`spkid.training.read_checkpoint`)."""
    from spkid import __version__

    out = {"spkid_export": str(EXPORT_FORMAT), "spkid_version": __version__, "model": meta["model"],
           "source_backend": meta["backend"], "n_classes": str(meta["n_classes"]), "epoch": str(meta["epoch"]),
           "inputs": "features,lengths", "outputs": "logits,embedding,attention"}
    out.update({k: json.dumps(meta[k], sort_keys=True) for k in _JSON_KEYS})
    return out


def _parse_metadata(props: dict[str, str], path: Path) -> dict:
    """Checkpoint-style metadata (``backend="onnx"``) back from :func:`export_metadata`'s strings."""
    missing = sorted({"spkid_export", "model", "n_classes", *_JSON_KEYS} - set(props))
    if missing:
        raise CheckpointError(f"not a spkid export (metadata lacks {', '.join(missing)})", path=path)
    if props["spkid_export"] != str(EXPORT_FORMAT):
        raise CheckpointError(f"export format {props['spkid_export']} is not {EXPORT_FORMAT}", path=path)
    try:
        meta = {k: json.loads(props[k]) for k in _JSON_KEYS}
        meta["n_classes"] = int(props["n_classes"])
    except ValueError as exc:
        raise CheckpointError(f"corrupt export metadata: {exc}", path=path) from None
    if len(meta["speakers"]) != meta["n_classes"]:
        raise CheckpointError(f"{len(meta['speakers'])} speaker names for {meta['n_classes']} classes", path=path)
    return {**meta, "backend": "onnx", "model": props["model"],
            "source_backend": props.get("source_backend", "?"), "export": dict(props)}


def _train_module(backend: str):
    from spkid.backends import get_backend

    return importlib.import_module(get_backend(backend).__name__ + ".train")


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, format: str = "onnx", *,
                 prefer: str = "best", opset: int = 17) -> Path:
    """Export the checkpoint (run dir, metadata ``.json`` or state file) to ``out``; returns the path written.

    ``format``: ``"onnx"``, ``"torchscript"`` or ``"keras"`` (any backend's checkpoint to any format: the
    weight port bridges the two frameworks). A missing suffix is added (``.onnx`` / ``.pt`` / ``.keras``).
    """
    from spkid.backends import get_backend
    from spkid.training.checkpoints import read_checkpoint

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix != _SUFFIX[format]:
        out = out.with_name(out.name + _SUFFIX[format])
    meta, _ = read_checkpoint(checkpoint, prefer=prefer)
    model = _train_module(meta["backend"]).load_model(checkpoint, prefer=prefer)
    props = export_metadata(meta)
    if format == "keras":
        kx = importlib.import_module(get_backend("keras").__name__ + ".export")
        return kx.to_keras(model if meta["backend"] == "keras" else kx.from_torch_model(model), out, props)
    tx = importlib.import_module(get_backend("torch").__name__ + ".export")
    if meta["backend"] == "keras":
        model = importlib.import_module(get_backend("keras").__name__ + ".export").to_torch_model(model)
    if format == "onnx":
        return tx.to_onnx(model, out, props, opset=opset)
    return tx.to_torchscript(model, out, props)


class OnnxEmbedder(Embedder):
    """An exported ``.onnx`` behind the :class:`~spkid.inference.Embedder` interface (onnxruntime, CPU).

    ``backend`` is ``"onnx"``; ``metadata["source_backend"]`` names the framework that trained it.
    ``threads``: onnxruntime intra-op threads (None: its default). Sessions are safe to share between
    threads (the HTTP service does).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError("running an ONNX export needs onnxruntime: pip install 'spkid[onnx]'",
                                  path=path) from None
        path = Path(path)
        if not path.is_file():
            raise CheckpointError("ONNX file not found", path=path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = opts.inter_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise CheckpointError(f"cannot load ONNX model: {exc}", path=path) from None
        meta = _parse_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
        names = [o.name for o in session.get_outputs()]
        self.path = path
        super().__init__(session, self._run, {**meta, "outputs": names})

    def _run(self, x: np.ndarray, lengths: np.ndarray) -> dict:
        feeds = {"features": np.ascontiguousarray(x, dtype=np.float32),
                 "lengths": np.asarray(lengths, dtype=np.int64).reshape(-1)}
        return dict(zip(self.metadata["outputs"], self.model.run(None, feeds)))


def open_embedder(path: str | os.PathLike, *, prefer: str = "best") -> Embedder:
    """An :class:`OnnxEmbedder` for a ``.onnx`` file, else :func:`spkid.inference.load_embedder`."""
    if Path(path).suffix == ".onnx":
        return OnnxEmbedder(path)
    return load_embedder(path, prefer=prefer)
