"""Run directories and checkpoints: atomic, checksummed, refused when they belong to another run.

Run directory layout::

    RUN/history.csv                    one row per epoch
    RUN/tensorboard/                   scalars (when tensorboard / tf.summary is available)
    RUN/checkpoints/epoch-0007.pt      backend state: weights, optimizer, RNG  (.npz for keras)
    RUN/checkpoints/epoch-0007.json    metadata: backend, model, ModelSpec, labels, FeatureConfig,
                                       TrainConfig, epoch, plateau state, history, sha256 of the state file
    RUN/checkpoints/last.json          copy of the newest epoch's metadata (resume reads this)
    RUN/checkpoints/best.json          copy of the best epoch's metadata (inference reads this)

Each file is written to a temporary name, fsync'ed and renamed (:mod:`spkid.fileio`), and the metadata
only after its state file, so a crash leaves the previous complete checkpoint in place. Old epoch files
are deleted once neither ``last.json`` nor ``best.json`` refers to them.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from spkid.errors import CheckpointError, ConfigError
from spkid.fileio import atomic_write
from spkid.fileio import atomic_write_json as _atomic_write_json
from spkid.models.specs import ModelSpec
from spkid.training.config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunPaths",
    "atomic_write_json",
    "sha256_file",
    "read_checkpoint",
    "check_compatible",
    "save_checkpoint",
    "write_history",
]

CHECKPOINT_FORMAT = 1
# TrainConfig fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "max_steps", "num_workers", "devices", "eval_batch_size", "grad_accumulation")
# What a checkpoint's spec and recipe mean today: read through their config classes, so fields added
# since fill in at their defaults (a linear head, softmax, no waveform augmentation: what runs written
# before them did) and fields withdrawn at their old defaults drop out (TrainConfig.from_dict).
_CONFIGS = {"spec": ModelSpec, "train_config": TrainConfig}


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where a training run keeps its files (see the module docstring)."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.json"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.json"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`spkid.fileio.atomic_write_json` that also writes numpy scalars and arrays."""
    return _atomic_write_json(path, obj, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()




def _checkpoint_json(path: str | os.PathLike, prefer: str) -> Path:
    """The metadata file behind a run dir, a checkpoints dir, a ``.json`` or a state file."""
    p = Path(path)
    if p.is_dir():
        ck = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        for name in (f"{prefer}.json", "last.json", "best.json"):
            if (ck / name).is_file():
                return ck / name
        raise CheckpointError("no checkpoint found (expected checkpoints/last.json)", path=p)
    if p.suffix == ".json":
        return p
    return p.with_suffix(".json") if p.suffix in (".pt", ".npz") else p


def read_checkpoint(path: str | os.PathLike, *, prefer: str = "best") -> tuple[dict, Path]:
    """Read and verify a checkpoint: ``(metadata, state_file)``.

    ``path`` is a run directory (``prefer`` picks ``best`` or ``last``), a metadata ``.json`` or a state
    file. Raises :class:`CheckpointError` naming the file when it is missing, unreadable, not a spkid
    checkpoint, or when the state file's sha256 differs from the one recorded (truncated / tampered).
    """
    meta_path = _checkpoint_json(path, prefer)
    if not meta_path.is_file():
        raise CheckpointError("checkpoint not found", path=meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint metadata: {exc}", path=meta_path) from None
    needed = {"format", "backend", "model", "spec", "n_classes", "speakers", "feature_config",
              "train_config", "epoch", "weights", "sha256"}
    if not isinstance(meta, dict) or not needed <= set(meta):
        missing = sorted(needed - set(meta)) if isinstance(meta, dict) else sorted(needed)
        raise CheckpointError(f"not a spkid checkpoint (missing {', '.join(missing)})", path=meta_path)
    if meta["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint format {meta['format']} is not {CHECKPOINT_FORMAT}", path=meta_path)
    state = meta_path.parent / Path(str(meta["weights"])).name
    if not state.is_file():
        raise CheckpointError(f"state file missing (named by {meta_path.name})", path=state)
    digest = sha256_file(state)
    if digest != meta["sha256"]:
        raise CheckpointError(
            f"sha256 mismatch: file has {digest[:12]}..., {meta_path.name} records {str(meta['sha256'])[:12]}... "
            "(truncated, corrupt or tampered)", path=state)
    return meta, state


def _current(key: str, value: Any) -> Any:
    """``value`` as today's config class writes it (unchanged when it has none or cannot be read:
    then it is compared as written, and refused with both values shown)."""
    cls = _CONFIGS.get(key)
    if cls is None or not isinstance(value, dict):
        return value
    try:
        return cls.from_dict(value).to_dict()
    except ConfigError:
        return value


def check_compatible(meta: dict, expected: dict, path: str | os.PathLike) -> None:
    """Refuse a checkpoint made for another backend, architecture, label set or training recipe,
    showing both values."""
    for key in ("backend", "model", "spec", "n_classes", "speakers", "feature_config", "train_config"):
        if key not in expected:
            continue
        got, want = _current(key, meta.get(key)), _current(key, expected[key])
        if key == "train_config":
            got = {k: v for k, v in (got or {}).items() if k not in _RESUMABLE_CHANGES}
            want = {k: v for k, v in want.items() if k not in _RESUMABLE_CHANGES}
        if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
            raise CheckpointError(f"checkpoint is for another {key}: checkpoint has {got}, this run has {want}",
                                  path=path)




def save_checkpoint(paths: RunPaths, meta: dict, save_state: Callable[[Path], None], suffix: str,
                     best: bool) -> None:
    # a run stopped by max_steps inside an epoch saves that step's state beside the epochs' ones
    stem = f"step-{meta['step']:09d}" if meta.get("partial") else f"epoch-{meta['epoch']:04d}"
    state = atomic_write(paths.checkpoints / f"{stem}{suffix}", save_state)
    meta = {**meta, "weights": state.name, "sha256": sha256_file(state)}
    atomic_write_json(paths.checkpoints / f"{stem}.json", meta)
    if best:
        atomic_write_json(paths.best, meta)
    atomic_write_json(paths.last, meta)
    keep = {stem}
    for ref in (paths.best, paths.last):
        if ref.is_file():
            keep.add(Path(json.loads(ref.read_text(encoding="utf-8"))["weights"]).stem)
    for f in [*paths.checkpoints.glob("epoch-*"), *paths.checkpoints.glob("step-*")]:
        if f.stem not in keep:
            f.unlink(missing_ok=True)


def write_history(path: Path, history: Sequence[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write(path, lambda p: p.write_text(buf.getvalue(), encoding="utf-8"))
