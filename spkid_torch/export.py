"""Export a PyTorch :class:`~spkid_torch.models.SpeakerNet` to ONNX or TorchScript.

Both formats trace :class:`ExportWrapper` -- ``(features (B, T, n_mels) float32, lengths (B,) int64) ->
(logits (B, C), embedding (B, E), attention (B, hops, T'))`` -- with the **batch and time axes dynamic**:
the masking / valid-length arithmetic of the models (``spkid.models.specs.conv_output_length``, ``arange(T) <
lengths``) is traced as shape operations, so one file serves any clip length (tests check 3 lengths, up
to 1000 frames, against the eager model).

Exporter choice (torch 2.13): the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``).
The torch.export-based ("dynamo") exporter needs the extra ``onnxscript`` package and symbolic shape
guards for T; the TorchScript exporter needs nothing beyond torch, produces only standard opset-17 ops
(Conv, MaxPool, MatMul, Softmax, Where, ...) and matches eager outputs to ~1e-7 at every length tried.
Its DeprecationWarning is silenced here.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from spkid.errors import CheckpointError

__all__ = ["ExportWrapper", "OUTPUT_NAMES", "to_onnx", "to_torchscript", "load_torchscript"]

INPUT_NAMES = ("features", "lengths")
OUTPUT_NAMES = ("logits", "embedding", "attention")
_META_FILE = "spkid.json"  # TorchScript extra file holding the export metadata


class ExportWrapper(nn.Module):
    """Tuple-returning, always-masked view of a SpeakerNet for tracing (``penalty`` is training-only)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        out = self.model(features, lengths)
        return tuple(out[k] for k in OUTPUT_NAMES)


def _example(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-example batch of unequal lengths, so the traced graph keeps the masking path."""
    x = torch.randn(2, 96, model.spec.n_mels, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([96, 61], dtype=torch.int64)


def _eval_wrapper(model: nn.Module) -> ExportWrapper:
    # export / trace restore the *wrapper's* training flag afterwards, so the wrapper itself must be in
    # eval mode, or the wrapped model would be left in training mode
    return ExportWrapper(model.cpu()).eval()


def to_onnx(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None, *,
            opset: int = 17) -> Path:
    """Write ``model`` as ONNX to ``path`` with dynamic ``batch`` and ``time`` axes.

    Inputs ``features`` (batch, time, n_mels) float32 and ``lengths`` (batch,) int64; outputs
    ``logits``, ``embedding``, ``attention`` (batch, hops, frames). ``metadata`` (str -> str) goes into the
    model's ``metadata_props``. The file is written to a temporary name and renamed (atomic).
    """
    import onnx

    from spkid.fileio import atomic_write

    wrapper = _eval_wrapper(model)
    dynamic = {"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"},
               "embedding": {0: "batch"}, "attention": {0: "batch", 2: "frames"}}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation + tracer notes on constants
            torch.onnx.export(wrapper, _example(model), str(tmp), dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        for key, value in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        proto.producer_name = "spkid"
        onnx.save(proto, str(tmp))

    return atomic_write(path, write)


def to_torchscript(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Trace ``model`` (same signature as the ONNX file) and save it with ``torch.jit.save``; the metadata
    travels inside the archive as the extra file ``spkid.json``."""
    from spkid.fileio import atomic_write

    wrapper = _eval_wrapper(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, _example(model), check_trace=False)
    extra = {_META_FILE: json.dumps(metadata or {}, sort_keys=True)}
    return atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """``(module, metadata)`` of a file written by :func:`to_torchscript`; CheckpointError if unreadable."""
    extra = {_META_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[_META_FILE] or "{}")
    except Exception as exc:  # zip / pickle / json errors of many kinds
        raise CheckpointError(f"cannot read TorchScript export: {exc}", path=path) from None
    return module.eval(), meta
