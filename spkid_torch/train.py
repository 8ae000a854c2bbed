"""Train and load the PyTorch models (same public names as ``spkid_keras.train``).

Loss = cross-entropy (with label smoothing) + ``penalty_coef`` * mean attention penalty (Lin et al. 2017);
with ``loss="aam"`` the cross-entropy is taken on the additive angular margin logits
(:func:`spkid_torch.losses.margin_logits`; Deng et al., ArcFace, CVPR 2019) at the epoch's margin
(:func:`spkid.training.losses.margin_at`), accuracy on the margin-free logits.
Adam / SGD with decoupled weight decay (applied as ``w -= lr * wd * w`` before the update, like Keras'
optimizers), learning rate driven by :class:`spkid.training.Plateau`. The epoch loop, validation,
checkpoints and history are shared with the keras backend in :func:`spkid.training.run_training`.

Data-parallel training (``torchrun``, ``devices="N"``, ``grad_accumulation``, AMP) follows
:mod:`spkid.training.distributed` with :mod:`spkid_torch.distributed`.

Checkpoint state files are ``torch.save`` dicts of tensors (weights, optimizer state, RNG state), read
back with ``torch.load(..., weights_only=True)``. ``evaluate`` / ``embed`` and the rest of the backend
interface: :mod:`spkid_torch.backend`.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from spkid.training.config import TrainConfig
from spkid.training.distributed import micro_batches, rank_rows
from spkid.errors import CheckpointError
from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import TrainSampler
from spkid.models.specs import ModelSpec, model_spec
from spkid.training.checkpoints import check_compatible, read_checkpoint
from spkid.training.loop import AdapterBase, check_model, run_training
from spkid.training.losses import margin_at

from . import distributed
from .data import train_loader
from .losses import margin_logits
from .models import create_model

__all__ = ["fit", "load_model", "load_checkpoint", "forward_fn", "TorchAdapter"]


def _device(devices: str) -> torch.device:
    if devices in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(devices)


def _build_model(spec: ModelSpec, n_classes: int, name: str) -> torch.nn.Module:
    return create_model(name, n_classes, **spec.to_dict())


class TorchAdapter(AdapterBase):
    """The torch side of :func:`spkid.training.run_training`; ``model`` (optional)
    is a ready model to start from instead of a freshly initialised one."""

    def __init__(self, model=None):
        self.initial_model = model

    backend = "torch"
    suffix = ".pt"

    def build(self, config: TrainConfig, spec: ModelSpec, n_classes: int) -> None:
        self.config = config
        self.margin = margin_at(config.aam_margin, config.aam_margin_warmup_epochs, 0)
        self.dist = distributed.context(config.devices)
        self.world, self.is_main = self.dist.world, self.dist.is_main
        self.device = self.dist.device(config.devices) if self.world > 1 else _device(config.devices)
        self.amp = config.mixed_precision and self.device.type == "cuda"
        if config.mixed_precision and not self.amp:
            warnings.warn("mixed_precision needs a CUDA device; training in float32", stacklevel=2)
        # bf16 where the GPU has it (no loss scaling needed), else fp16 with a GradScaler
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        torch.manual_seed(config.seed)
        model = self.initial_model or _build_model(spec, n_classes, config.model)
        self.model = check_model(model, spec, n_classes).to(self.device)
        self.net = self.model
        if self.world > 1:
            if self.device.type == "cuda":  # SyncBatchNorm is CUDA-only in PyTorch
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = self.model.parameters()
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=config.lr, eps=1e-8)
        else:
            self.opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

    def begin_epoch(self, epoch: int) -> None:
        """Set the AAM margin of 0-based ``epoch`` (its warm-up ramp)."""
        c = self.config
        self.margin = margin_at(c.aam_margin, c.aam_margin_warmup_epochs, epoch)

    def batches(self, sampler: TrainSampler, epoch: int):
        return train_loader(sampler, epoch, num_workers=self.config.num_workers,
                            pin_memory=self.device.type == "cuda")

    def train_step(self, x, y, lr: float) -> dict:
        """One optimizer step on the global batch ``(x, y)``; this rank computes its micro-batches
        (:func:`spkid.training.distributed.micro_batches`). Returns the global batch's mean statistics."""
        c = self.config
        self.model.train()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        pieces = micro_batches(len(y), self.world, c.grad_accumulation, self.dist.rank)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for k, (start, stop, weight) in enumerate(pieces):
            xb = x[start:stop].to(self.device, non_blocking=True)
            yb = y[start:stop].to(self.device, non_blocking=True)
            last = k == len(pieces) - 1  # DDP all-reduces the gradients on the last backward only
            with contextlib.nullcontext() if last or self.world == 1 else self.net.no_sync():
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    out = self.net(xb)
                    logits = out["logits"].float()
                    if c.loss == "aam":
                        logits = margin_logits(logits, yb, c.aam_scale, self.margin)
                    ce = F.cross_entropy(logits, yb, label_smoothing=c.label_smoothing)
                    penalty = out["penalty"].float().mean()
                    loss = ce + c.penalty_coef * penalty
                # DDP averages over ranks: weight * world makes the sum the global batch's mean gradient
                self.scaler.scale(loss * (weight * self.world)).backward()
            correct = (out["logits"].argmax(1) == yb).sum()
            n = stop - start
            sums += torch.stack([loss.detach() * n, ce.detach() * n, penalty.detach() * n, correct.float()]).double()
        if self.world > 1:
            torch.distributed.all_reduce(sums)
        if c.weight_decay:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(1.0 - lr * c.weight_decay)
        self.scaler.step(self.opt)
        self.scaler.update()
        return dict(zip(("loss", "ce", "penalty", "acc"), (sums / len(y)).tolist()))

    def sync(self) -> None:
        """Copy rank 0's BatchNorm running statistics to every rank (each rank updated them with its own
        micro-batches), so that all ranks hold the weights rank 0 saves."""
        if self.world > 1:
            for b in self.model.buffers():
                torch.distributed.broadcast(b, src=0)

    def share(self, obj):
        return self.dist.share(obj) if self.world > 1 else obj

    def row_share(self):
        """Under DDP, the rows of each global batch this rank's micro-batches cover (train_step's pieces)."""
        if self.world == 1:
            return None
        return functools.partial(rank_rows, world=self.world, accumulation=self.config.grad_accumulation,
                                 rank=self.dist.rank)

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> dict:
        return _forward(self.model, x, lengths)

    def save(self, path: Path) -> None:
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "torch_rng": torch.get_rng_state()}, str(path))

    def load(self, path: Path) -> None:
        state = _torch_load(path)
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"state does not fit this model/optimizer: {exc}", path=path) from None

    def summary_writer(self, logdir: Path) -> Callable | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: skip quietly
            return None
        writer = SummaryWriter(str(logdir))

        def scalar(name: str, value: float, step: int) -> None:
            writer.add_scalar(name, value, step)
            writer.flush()

        return scalar


def _torch_load(path: str | os.PathLike) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of many kinds
        raise CheckpointError(f"cannot read torch checkpoint: {exc}", path=path) from None


@torch.no_grad()
def _forward(model: torch.nn.Module, x: np.ndarray, lengths: np.ndarray | None) -> dict:
    model.eval()
    dev = next(model.parameters()).device
    lengths = None if lengths is None else torch.as_tensor(lengths, device=dev)
    x = np.asarray(x)
    if not x.flags.writeable:  # a read-only view of a feature store's map: torch wants memory it may write
        x = x.copy()
    out = model(torch.as_tensor(x, device=dev), lengths)
    return {k: v.float().cpu().numpy() for k, v in out.items()}


def forward_fn(model: torch.nn.Module) -> Callable[[np.ndarray, np.ndarray], dict]:
    """``f(x (B, T, n_mels), lengths (B,)) -> dict`` of numpy outputs, in eval mode."""
    return lambda x, lengths: _forward(model, x, lengths)


def fit(config: TrainConfig, train_set: FeatureSet, val_set: FeatureSet | None, out_dir: str | os.PathLike, *,
        resume: bool = False, callbacks: Sequence[Callable] = (), progress: bool = True, model=None) -> list[dict]:
    """Train ``config.model`` on ``train_set``; checkpoints in ``out_dir`` (see :mod:`spkid.training`).

    Returns the history: one dict per epoch (lr, loss, ce, penalty, acc, val_loss, val_top1, val_top5).
    ``resume=True`` continues from ``out_dir/checkpoints/last.json``; on CPU with a fixed seed the final
    weights equal those of an uninterrupted run. ``model``: start from this model (its spec and
    n_classes must be the run's) instead of a fresh seeded initialisation, e.g. weights ported from the
    other backend.
    """
    adapter = TorchAdapter(model)
    try:
        return run_training(adapter, config, train_set, val_set, out_dir, resume=resume, callbacks=callbacks,
                            progress=progress)
    finally:
        if adapter.world > 1:
            adapter.net = adapter.model  # drop the DDP wrapper (its reducer) before its process group goes
            distributed.close()


def load_checkpoint(path: str | os.PathLike, *, prefer: str = "best") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on CPU, metadata) from a run dir / metadata json / state file (verified sha256)."""
    meta, state = read_checkpoint(path, prefer=prefer)
    check_compatible(meta, {"backend": "torch"}, state)
    spec = model_spec(meta["model"], **meta["spec"])
    model = _build_model(spec, int(meta["n_classes"]), meta["model"])
    weights = _torch_load(state).get("model")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"weights do not fit {meta['model']} ({spec.describe()}): {exc}", path=state) from None
    return model.eval(), meta


def load_model(path: str | os.PathLike, *, prefer: str = "best") -> torch.nn.Module:
    """The model of a checkpoint (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, prefer=prefer)[0]
