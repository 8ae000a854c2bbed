"""Framework-free training machinery shared by ``spkid_torch.train`` and ``spkid_keras.train``.

A backend supplies a small adapter (build the model and optimizer, one training step, an eval-mode
forward pass, save/load its state file); :func:`run_training` does the rest identically for both:
epochs over :class:`~spkid.sampling.TrainSampler` batches, validation, the paper's plateau rule
(halve the learning rate after ``plateau_patience`` epochs without a lower validation loss), best-model
tracking, CSV history, TensorBoard scalars, callbacks and crash-safe checkpoints.

Run directory layout::

    RUN/history.csv                    one row per epoch
    RUN/tensorboard/                   scalars (when tensorboard / tf.summary is available)
    RUN/checkpoints/epoch-0007.pt      backend state: weights, optimizer, RNG  (.npz for keras)
    RUN/checkpoints/epoch-0007.json    metadata: backend, model, ModelSpec, labels, FeatureConfig,
                                       TrainConfig, epoch, plateau state, history, sha256 of the state file
    RUN/checkpoints/last.json          copy of the newest epoch's metadata (resume reads this)
    RUN/checkpoints/best.json          copy of the best epoch's metadata (inference reads this)

Each file is written to a temporary name, fsync'ed and renamed (:mod:`spkid.fileio`), and the metadata only after its state
file, so a crash leaves the previous complete checkpoint in place. Old epoch files are deleted once
neither ``last.json`` nor ``best.json`` refers to them.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from .config import FeatureConfig, TrainConfig
from .errors import CheckpointError
from .fileio import atomic_write
from .fileio import atomic_write_json as _atomic_write_json
from .sampling import FeatureSet, TrainSampler
from .specs import ModelSpec, model_spec

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunPaths",
    "atomic_write",
    "atomic_write_json",
    "sha256_file",
    "Plateau",
    "read_checkpoint",
    "check_compatible",
    "resolve_spec",
    "check_model",
    "classification_report",
    "run_training",
]

CHECKPOINT_FORMAT = 1
# TrainConfig fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "num_workers", "devices", "eval_batch_size", "grad_accumulation")


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


@dataclasses.dataclass
class Plateau:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without a lower monitored value
    (never below ``min_lr``); the paper halves it after 10 stalled validation epochs."""

    lr: float
    patience: int
    factor: float
    min_lr: float
    best: float = math.inf
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's monitored value; True when the learning rate was lowered."""
        if value < self.best:
            self.best, self.bad_epochs = float(value), 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.lr > self.min_lr:
            self.lr, self.bad_epochs = max(self.min_lr, self.lr * self.factor), 0
            return True
        return False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["best"] = None if math.isinf(self.best) else self.best
        return d

    def lr_at(self, config: TrainConfig, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` under ``config.lr_schedule`` (this plateau's for
        ``"plateau"``), ramped up over ``config.warmup_epochs``."""
        if config.lr_schedule == "cosine":
            lr = config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * epoch / config.epochs))
        else:
            lr = self.lr
        if epoch < config.warmup_epochs:
            lr *= (epoch + 1) / (config.warmup_epochs + 1)
        return lr

    @classmethod
    def from_dict(cls, d: dict) -> "Plateau":
        d = dict(d)
        d["best"] = math.inf if d.get("best") is None else d["best"]
        return cls(**d)


# ----------------------------------------------------------------------------------------- checkpoints
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


def check_compatible(meta: dict, expected: dict, path: str | os.PathLike) -> None:
    """Refuse a checkpoint made for another backend, architecture, label set or training recipe,
    showing both values."""
    for key in ("backend", "model", "spec", "n_classes", "speakers", "feature_config", "train_config"):
        if key not in expected:
            continue
        got, want = meta.get(key), expected[key]
        if key == "train_config":
            got = {k: v for k, v in (got or {}).items() if k not in _RESUMABLE_CHANGES}
            want = {k: v for k, v in want.items() if k not in _RESUMABLE_CHANGES}
        if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
            raise CheckpointError(f"checkpoint is for another {key}: checkpoint has {got}, this run has {want}",
                                  path=path)


def check_model(model, spec: ModelSpec, n_classes: int):
    """``model`` itself if it was built from ``spec`` for ``n_classes`` classes, else ConfigError showing both."""
    from .errors import ConfigError

    have = getattr(model, "spec", None)
    if have != spec or getattr(model, "n_classes", None) != n_classes:
        raise ConfigError(f"the given model does not match the run: model has {have} with "
                          f"{getattr(model, 'n_classes', None)} classes, the run needs {spec} with {n_classes}")
    return model


def resolve_spec(config: TrainConfig, n_mels: int) -> ModelSpec:
    """The run's ModelSpec: the registered model with the config's overrides and the data's n_mels."""
    return model_spec(config.model, **{**config.model_overrides, "n_mels": n_mels})


def _save_checkpoint(paths: RunPaths, meta: dict, save_state: Callable[[Path], None], suffix: str,
                     best: bool) -> None:
    stem = f"epoch-{meta['epoch']:04d}"
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
    for f in paths.checkpoints.glob("epoch-*"):
        if f.stem not in keep:
            f.unlink(missing_ok=True)


def _write_history(path: Path, history: Sequence[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    atomic_write(path, lambda p: p.write_text(buf.getvalue(), encoding="utf-8"))


# ------------------------------------------------------------------------------------------ evaluation
def classification_report(logits: np.ndarray, labels: np.ndarray, speakers: Sequence[str]) -> dict:
    """``dict(top1, top5, per_speaker {name: accuracy}, confusion (C, C) list, n, loss)`` from logits."""
    from .metrics import confusion_matrix, per_class_accuracy, topk_accuracy

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(speakers)
    pred = logits.argmax(axis=1)
    per = per_class_accuracy(labels, pred, n_classes)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return {
        "top1": float(topk_accuracy(logits, labels, k=1)),
        "top5": float(topk_accuracy(logits, labels, k=min(5, n_classes))),
        "loss": float(-logp[np.arange(len(labels)), labels].mean()),
        "per_speaker": {s: (None if np.isnan(a) else float(a)) for s, a in zip(speakers, per)},
        "confusion": confusion_matrix(labels, pred, n_classes).tolist(),
        "n": int(len(labels)),
    }


# ------------------------------------------------------------------------------------------- training
class Adapter(Protocol):
    """What a backend provides to :func:`run_training`."""

    backend: str  # "torch" | "keras"
    suffix: str  # state file suffix: ".pt" | ".npz"

    def build(self, config: TrainConfig, spec: ModelSpec, n_classes: int) -> None: ...
    def batches(self, sampler: TrainSampler, epoch: int) -> Iterable[tuple[Any, Any]]: ...
    def train_step(self, x: Any, y: Any, lr: float) -> dict: ...  # loss, ce, penalty, acc (floats)
    def forward(self, x: np.ndarray, lengths: np.ndarray) -> dict: ...  # eval mode, numpy outputs
    def save(self, path: Path) -> None: ...
    def load(self, path: Path) -> None: ...
    def summary_writer(self, logdir: Path) -> Callable[[str, float, int], None] | None: ...
    # Optional, for data-parallel adapters (spkid.distributed): ``world`` (number of devices, default 1),
    # ``is_main`` (this process writes checkpoints, logs and progress; default True), ``sync()`` (called
    # at each epoch's end, e.g. to copy rank 0's BatchNorm statistics) and ``share(obj)`` (rank 0's obj).


def run_training(adapter: Adapter, config: TrainConfig, train_set: FeatureSet, val_set: FeatureSet | None,
                 out_dir: str | os.PathLike, *, resume: bool = False, callbacks: Sequence[Callable] = (),
                 progress: bool = True) -> list[dict]:
    """Train with ``adapter``; returns the history (one dict per epoch, including resumed ones).

    Each callback is called as ``cb(row)`` after every epoch (``row`` is that epoch's history dict);
    one returning True stops training after that epoch's checkpoint.

    Data-parallel adapters (see :class:`Adapter`): every process runs this loop on the same global
    batches; only the main process validates, writes checkpoints / history / TensorBoard and shows
    progress, and its epoch row (hence the plateau's learning rate) is shared with the others.
    """
    from tqdm.auto import tqdm

    from .distributed import usable
    from .inference import predict

    paths = RunPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    spec = resolve_spec(config, train_set.n_mels)
    base = {
        "format": CHECKPOINT_FORMAT,
        "backend": adapter.backend,
        "model": config.model,
        "spec": spec.to_dict(),
        "n_classes": train_set.n_classes,
        "speakers": list(train_set.speakers),
        "feature_config": (train_set.feature_config or FeatureConfig()).to_dict(),
        "train_config": config.to_dict(),
    }
    adapter.build(config, spec, train_set.n_classes)
    main = getattr(adapter, "is_main", True)  # known once the adapter has joined its process group
    progress = progress and main
    plateau = Plateau(lr=config.lr, patience=config.plateau_patience, factor=config.lr_factor, min_lr=config.min_lr)
    history: list[dict] = []
    best_key: list | None = None
    start = 0
    if paths.last.is_file():
        if not resume:
            raise CheckpointError("run directory already holds a checkpoint; resume it or pick a new one",
                                  path=paths.last)
        meta, state = read_checkpoint(paths.last)
        check_compatible(meta, base, paths.last)
        adapter.load(state)
        if main:  # temp files of writes a killed run never finished: never read, now removed
            for tmp in paths.checkpoints.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        start, history, best_key = int(meta["epoch"]), list(meta["history"]), meta.get("best_key")
        plateau = Plateau.from_dict(meta["plateau"])
    sampler = TrainSampler(train_set, config)
    scalar = adapter.summary_writer(paths.tensorboard) if main else None
    world, share = getattr(adapter, "world", 1), getattr(adapter, "share", lambda obj: obj)
    for epoch in range(start, config.epochs):
        lr = plateau.lr_at(config, epoch)
        totals: dict[str, float] = {}
        seen = 0
        bar = tqdm(adapter.batches(sampler, epoch), total=len(sampler), disable=not progress, leave=False,
                   desc=f"epoch {epoch + 1}/{config.epochs}")
        for x, y in bar:
            if not usable(len(y), world, config.grad_accumulation):
                continue  # a small trailing batch, skipped by every rank alike
            stats = adapter.train_step(x, y, lr)
            b = len(y)
            seen += b
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + float(v) * b
            bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}")
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{k: v / max(seen, 1) for k, v in totals.items()}}
        if hasattr(adapter, "sync"):
            adapter.sync()
        if main and val_set is not None and len(val_set):
            logits = predict(adapter.forward, val_set.features, config, keys=("logits",))["logits"]
            rep = classification_report(logits, val_set.labels, val_set.speakers)
            row.update(val_loss=rep["loss"], val_top1=rep["top1"], val_top5=rep["top5"])
        row = share(row)
        key = [row["val_top1"], -row["val_loss"]] if "val_top1" in row else [-row["loss"]]
        plateau.update(row.get("val_loss", row["loss"]))
        is_best = best_key is None or key > best_key
        best_key = key if is_best else best_key
        history.append(row)
        meta = {**base, "epoch": epoch + 1, "history": history, "plateau": plateau.to_dict(),
                "best_key": best_key, "metrics": row}
        if main:
            _save_checkpoint(paths, meta, adapter.save, adapter.suffix, is_best)
            _write_history(paths.history_csv, history)
        share(None)  # a barrier: no rank moves on (or resumes) before rank 0's checkpoint is complete
        if scalar is not None:
            for k, v in row.items():
                if k != "epoch":
                    scalar(k, float(v), epoch + 1)
        if progress:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
        if any(cb(row) for cb in callbacks):
            break
    return history
