"""Framework-free training machinery shared by ``spkid_torch.train`` and ``spkid_keras.train``.

A backend supplies a small adapter (build the model and optimizer, one training step, an eval-mode
forward pass, save/load its state file); :func:`run_training` does the rest identically for both:
epochs over :class:`~spkid.data.sampler.TrainSampler` batches (or
:class:`~spkid.data.wavesampler.WaveSampler` batches of waveform crops), validation, the paper's plateau rule
(halve the learning rate after ``plateau_patience`` epochs without a lower validation loss), best-model
tracking, CSV history, TensorBoard scalars, callbacks and crash-safe checkpoints.

Run directory layout: :mod:`spkid.training.checkpoints`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import EpochSteps, TrainSampler
from spkid.data.wavesampler import WaveSampler, make_sampler
from spkid.errors import CheckpointError, ConfigError
from spkid.features.config import FeatureConfig
from spkid.models.specs import ModelSpec, model_spec
from spkid.training.checkpoints import (CHECKPOINT_FORMAT, RunPaths, check_compatible, read_checkpoint,
                                        save_checkpoint, write_history)
from spkid.training.config import TrainConfig
from spkid.training.distributed import usable
from spkid.training.evaluation import classification_report, predict

__all__ = ["Plateau", "Adapter", "AdapterBase", "resolve_spec", "check_model", "run_training"]


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


def check_model(model, spec: ModelSpec, n_classes: int):
    """``model`` itself if it was built from ``spec`` for ``n_classes`` classes, else ConfigError showing both."""
    have = getattr(model, "spec", None)
    if have != spec or getattr(model, "n_classes", None) != n_classes:
        raise ConfigError(f"the given model does not match the run: model has {have} with "
                          f"{getattr(model, 'n_classes', None)} classes, the run needs {spec} with {n_classes}")
    return model


def resolve_spec(config: TrainConfig, n_mels: int) -> ModelSpec:
    """The run's ModelSpec: the registered model with the config's overrides and the data's n_mels."""
    return model_spec(config.model, **{**config.model_spec_overrides(), "n_mels": n_mels})


class Adapter(Protocol):
    """What a backend provides to :func:`run_training`; derive from :class:`AdapterBase` for the defaults
    of the members a single-process adapter does not need (``world``, ``is_main``, ``sync``, ``share``,
    ``summary_writer``)."""

    backend: str  # "torch" | "keras"
    suffix: str  # state file suffix: ".pt" | ".npz"
    world: int  # data-parallel processes / replicas (spkid.training.distributed)
    is_main: bool  # this process writes checkpoints, logs and progress (known once ``build`` has run)

    def build(self, config: TrainConfig, spec: ModelSpec, n_classes: int) -> None: ...
    # ``sampler``: the epoch's steps (an EpochSteps over the TrainSampler / WaveSampler), with its interface
    def batches(self, sampler: TrainSampler, epoch: int) -> Iterable[tuple[Any, Any]]: ...
    def begin_epoch(self, epoch: int) -> None: ...  # before the epoch's first step (e.g. its AAM margin)
    def train_step(self, x: Any, y: Any, lr: float) -> dict: ...  # loss, ce, penalty, acc (floats)
    def forward(self, x: np.ndarray, lengths: np.ndarray) -> dict: ...  # eval mode, numpy outputs
    def save(self, path: Path) -> None: ...
    def load(self, path: Path) -> None: ...
    def sync(self) -> None: ...  # at each epoch's end, e.g. to copy rank 0's BatchNorm statistics
    def share(self, obj: Any) -> Any: ...  # rank 0's ``obj`` on every rank (also a barrier)
    def summary_writer(self, logdir: Path) -> Callable[[str, float, int], None] | None: ...
    def row_share(self) -> Callable[[int], tuple[int, int]] | None: ...  # rows of a global batch this process trains


class AdapterBase:
    """Base of the training adapters: the single-process defaults of :class:`Adapter`.

    A subclass sets ``backend`` and ``suffix`` and implements ``build``, ``batches``, ``train_step``,
    ``forward``, ``save`` and ``load``; data-parallel adapters set ``world`` / ``is_main`` in ``build``
    and override ``sync`` / ``share``; ``summary_writer`` returns None (no TensorBoard) unless overridden.
    """

    backend: str = ""
    suffix: str = ""
    world: int = 1
    is_main: bool = True

    def build(self, config: TrainConfig, spec: ModelSpec, n_classes: int) -> None:
        raise NotImplementedError

    def batches(self, sampler: TrainSampler, epoch: int) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Called before the first step of 0-based ``epoch`` (resumed runs too); nothing by default."""

    def train_step(self, x: Any, y: Any, lr: float) -> dict:
        raise NotImplementedError

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> dict:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        """Nothing to synchronise in one process."""

    def share(self, obj: Any) -> Any:
        """``obj`` itself: one process is its own rank 0."""
        return obj

    def summary_writer(self, logdir: Path) -> Callable[[str, float, int], None] | None:
        """None: no TensorBoard scalars."""
        return None

    def row_share(self) -> Callable[[int], tuple[int, int]] | None:
        """None: this process trains on every row of each global batch (one process, or replicas fed by
        one process as Keras' MirroredStrategy). A data-parallel process that trains on a slice returns
        a picklable ``rows(B) -> (lo, hi)``, and waveform batches are then built for that slice only."""
        return None


def _save_partial(adapter, paths: RunPaths, base: dict, epoch: int, step: int, history: list, plateau: Plateau,
                  best_key, partial: dict) -> None:
    """Checkpoint a run stopped by ``max_steps`` inside 0-based ``epoch`` (as ``last``; also as ``best`` while
    no epoch has finished), with the epoch's running sums so that a resume ends it as an unbroken run would."""
    meta = {**base, "epoch": epoch, "step": step, "history": history, "plateau": plateau.to_dict(),
            "best_key": best_key, "metrics": history[-1] if history else {}, "partial": partial}
    if adapter.is_main:
        save_checkpoint(paths, meta, adapter.save, adapter.suffix, best_key is None)
    adapter.share(None)  # every rank waits for the checkpoint


def run_training(adapter: Adapter, config: TrainConfig, train_set: FeatureSet, val_set: FeatureSet | None,
                 out_dir: str | os.PathLike, *, resume: bool = False, callbacks: Sequence[Callable] = (),
                 progress: bool = True) -> list[dict]:
    """Train with ``adapter``; returns the history (one dict per epoch, including resumed ones).

    Each callback is called as ``cb(row)`` after every epoch (``row`` is that epoch's history dict);
    one returning True stops training after that epoch's checkpoint.

    Data-parallel adapters (``adapter.world > 1``): every process runs this loop on the same global
    batches; only the main process validates, writes checkpoints / history / TensorBoard and shows
    progress, and its epoch row (hence the plateau's learning rate) is shared with the others.
    """
    from tqdm.auto import tqdm

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
    main = adapter.is_main  # known once the adapter has joined its process group
    progress = progress and main
    plateau = Plateau(lr=config.lr, patience=config.plateau_patience, factor=config.lr_factor, min_lr=config.min_lr)
    history: list[dict] = []
    best_key: list | None = None
    start, step, partial = 0, None, None
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
        step, partial = meta.get("step"), meta.get("partial")
        plateau = Plateau.from_dict(meta["plateau"])
    sampler = make_sampler(train_set, config)
    per_epoch = config.steps_per_epoch or len(sampler)
    end = config.epochs * per_epoch if config.max_steps is None else min(config.epochs * per_epoch, config.max_steps)
    step = start * per_epoch if step is None else int(step)
    rows = adapter.row_share()
    if rows is not None and isinstance(sampler, WaveSampler):
        sampler.only_rows(rows)  # augment and featurise this rank's share of each batch, not all of it
    scalar = adapter.summary_writer(paths.tensorboard) if main else None
    world, share = adapter.world, adapter.share
    for epoch in range(start, config.epochs):
        first, last = max(epoch * per_epoch, step), min((epoch + 1) * per_epoch, end)
        if first >= last:
            break  # max_steps reached
        lr = plateau.lr_at(config, epoch)
        adapter.begin_epoch(epoch)
        totals: dict[str, float] = {}
        seen = steps = 0
        if partial is not None and epoch == start:  # resumed inside this epoch: its running sums so far
            totals, seen, steps = dict(partial["totals"]), int(partial["seen"]), int(partial["steps"])
        waited = 0.0  # seconds this process waited for the data pipeline's next batch
        plan = EpochSteps(sampler, first, last)
        bar = tqdm(adapter.batches(plan, epoch), total=len(plan), disable=not progress, leave=False,
                   desc=f"epoch {epoch + 1}/{config.epochs}")
        ready = time.perf_counter()
        for x, y in bar:
            waited += time.perf_counter() - ready
            if usable(len(y), world, config.grad_accumulation):  # else a small trailing batch, skipped by all
                stats = adapter.train_step(x, y, lr)
                b = len(y)
                seen, steps = seen + b, steps + 1
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * b
                bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}")
            ready = time.perf_counter()
        step = last
        if last < (epoch + 1) * per_epoch:  # stopped by max_steps inside the epoch: save exactly this step
            _save_partial(adapter, paths, base, epoch, step, history, plateau, best_key,
                          {"totals": totals, "seen": seen, "steps": steps})
            if main:
                print(f"stopped at step {step} (max_steps), inside epoch {epoch + 1}; --resume goes on from there",
                      flush=True)
            break
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{k: v / max(seen, 1) for k, v in totals.items()}}
        # The mean wait per step for the next batch (near 0 when the model, not the data pipeline, is the
        # bottleneck): printed and logged, but kept out of the history so that stays reproducible.
        timing = {"data_wait_ms": 1000.0 * waited / max(steps, 1)}
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
        meta = {**base, "epoch": epoch + 1, "step": step, "history": history, "plateau": plateau.to_dict(),
                "best_key": best_key, "metrics": row}
        if main:
            save_checkpoint(paths, meta, adapter.save, adapter.suffix, is_best)
            write_history(paths.history_csv, history)
        share(None)  # a barrier: no rank moves on (or resumes) before rank 0's checkpoint is complete
        if scalar is not None:
            for k, v in {**row, **timing}.items():
                if k != "epoch":
                    scalar(k, float(v), epoch + 1)
        if progress:
            shown = {**row, **timing}
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()), flush=True)
        if any(cb(row) for cb in callbacks):
            break
    return history
