"""Run exported ONNX files without any framework, and the metadata every export carries.

:class:`OnnxEmbedder` runs a ``.onnx`` written by :func:`spkid.inference.export.export_model` with
onnxruntime behind the same interface as :class:`spkid.inference.base.Embedder` (``embed`` / ``logits``
/ ``attention`` / ``identify``, ``labels``, ``feature_config``), so the CLI and the HTTP service work
from a checkpoint or an ONNX file alike. The graph: inputs ``features`` (batch, time, n_mels) float32
and ``lengths`` (batch,) int64, outputs ``logits``, ``embedding``, ``attention``.

The export metadata (:func:`export_metadata`, read back by :func:`parse_metadata`) holds everything
inference needs -- feature config, training config for cropping / windows, labels, model name, spec --
as strings: an ONNX file's ``metadata_props``; TorchScript and ``.keras`` exports carry the same dict.
This module imports no deep-learning framework; onnxruntime only when an OnnxEmbedder is made.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from spkid.errors import CheckpointError
from spkid.inference.base import Embedder

__all__ = ["EXPORT_FORMAT", "export_metadata", "parse_metadata", "OnnxEmbedder"]

EXPORT_FORMAT = 1
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


def parse_metadata(props: dict[str, str], path: str | os.PathLike) -> dict:
    """Checkpoint-style metadata (``backend="onnx"``) back from :func:`export_metadata`'s strings;
    CheckpointError naming ``path`` if they are not a spkid export's."""
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


class OnnxEmbedder(Embedder):
    """An exported ``.onnx`` behind the :class:`~spkid.inference.base.Embedder` interface (onnxruntime, CPU).

    ``backend`` is ``"onnx"``; ``metadata["source_backend"]`` names the framework that trained it.
    ``threads``: onnxruntime intra-op threads (None: its default); ``spin=False`` lets its idle threads
    sleep instead of spinning. Sessions are safe to share between threads (the HTTP service does, with
    one thread a request and no spinning: requests then run side by side on the service's threads instead
    of contending inside each one).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, spin: bool = True):
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
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise CheckpointError(f"cannot load ONNX model: {exc}", path=path) from None
        meta = parse_metadata(dict(session.get_modelmeta().custom_metadata_map), path)
        names = [o.name for o in session.get_outputs()]
        self.path = path
        super().__init__(session, self._run, {**meta, "outputs": names})

    def _run(self, x: np.ndarray, lengths: np.ndarray) -> dict:
        feeds = {"features": np.ascontiguousarray(x, dtype=np.float32),
                 "lengths": np.asarray(lengths, dtype=np.int64).reshape(-1)}
        return dict(zip(self.metadata["outputs"], self.model.run(None, feeds)))
