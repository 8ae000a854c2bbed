"""Keras side of ``spkid export``: the native ``.keras`` format and the bridge to the PyTorch exporters.

ONNX export of a Keras model goes through the cross-backend weight port
(:func:`spkid_keras.convert.keras_to_torch` into the twin ``spkid_torch`` model, then ``torch.onnx``)
rather than tf2onnx: one exporter for both backends (so both give files with the same graph, inputs,
outputs and metadata, which the same runtime code reads), no tf2onnx / TensorFlow-version coupling, and
the port is exact (the parity tests compare every layer), which the export tests confirm against the
Keras model's own outputs.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import keras

from spkid.errors import CheckpointError

from .convert import keras_to_torch, torch_to_keras
from .models import SpeakerNet, create_model

__all__ = ["to_torch_model", "from_torch_model", "to_keras", "load_keras"]


def to_torch_model(model: SpeakerNet):
    """The ``spkid_torch`` twin of a Keras SpeakerNet with the same weights (eval mode)."""
    import torch

    from spkid_torch import create_model as create_torch_model

    twin = create_torch_model(model.name, model.n_classes, **model.spec.to_dict())
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in keras_to_torch(model).items()}, strict=True)
    return twin.eval()


def from_torch_model(model) -> SpeakerNet:
    """The Keras twin of a ``spkid_torch`` SpeakerNet (weights copied through numpy)."""
    twin = create_model(model.name, model.n_classes, **model.spec.to_dict())
    torch_to_keras({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, twin)
    return twin


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def to_keras(model: SpeakerNet, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """``model.save`` to ``path`` (must end in ``.keras``) plus the metadata in a ``.json`` of the same name beside it
    (a ``.keras`` archive has no slot for it); both written to temporary names and renamed."""
    from spkid.fileio import atomic_write, atomic_write_json

    path = Path(path)
    if path.suffix != ".keras":
        raise CheckpointError("a Keras export must end in .keras", path=path)

    def write(tmp: Path) -> None:  # keras insists on the .keras suffix: save beside, then move
        with tempfile.TemporaryDirectory(prefix=".keras-export-", dir=tmp.parent) as d:
            model.save(Path(d) / "model.keras")
            os.replace(Path(d) / "model.keras", tmp)

    atomic_write(path, write)
    atomic_write_json(_sidecar(path), metadata or {})
    return path


def load_keras(path: str | os.PathLike) -> tuple[SpeakerNet, dict]:
    """``(model, metadata)`` of a file written by :func:`to_keras` (no unsafe deserialisation)."""
    path = Path(path)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
        meta = json.loads(_sidecar(path).read_text(encoding="utf-8")) if _sidecar(path).is_file() else {}
    except Exception as exc:  # zip / h5 / config errors of many kinds
        raise CheckpointError(f"cannot read Keras export: {exc}", path=path) from None
    return model, meta
