"""Framework-free rules for data-parallel training (both backends follow them).

One optimizer step always consumes one global batch of ``TrainConfig.batch_size`` examples from
:class:`~spkid.data.sampler.TrainSampler` -- the same batch whatever the number of devices. The batch is cut
into ``world * grad_accumulation`` contiguous micro-batches (:func:`micro_batches`); device ``r``
computes micro-batches ``r * grad_accumulation ... (r + 1) * grad_accumulation - 1`` (a
``DistributedSampler``-style disjoint slice of every global batch), weighting each micro-batch's mean
loss by its share of the global batch, so the summed gradient is exactly the global batch's mean
gradient. Only BatchNorm batch statistics depend on the split: they are per micro-batch unless
synchronised across devices (torch ``SyncBatchNorm`` on CUDA, keras ``BatchNormalization(synchronized=True)``).

Engines: PyTorch ``torchrun`` + ``DistributedDataParallel`` (:mod:`spkid_torch.distributed`), keras
``tf.distribute.MirroredStrategy`` / ``MultiWorkerMirroredStrategy`` (:mod:`spkid_keras.distributed`).
"""
from __future__ import annotations

import subprocess
import sys
from typing import Sequence

import numpy as np

from spkid.errors import ConfigError

__all__ = ["device_count", "micro_batches", "rank_rows", "usable", "launch_torchrun"]


def device_count(devices: str) -> int:
    """The number of data-parallel devices a ``TrainConfig.devices`` value asks for ("4" -> 4, "cpu" -> 1)."""
    return int(devices) if str(devices).isdigit() else 1


def micro_batches(n: int, world: int, accumulation: int, rank: int) -> list[tuple[int, int, float]]:
    """Rank ``rank``'s micro-batches of an ``n``-example global batch: ``[(start, stop, weight), ...]``.

    The batch is cut into ``world * accumulation`` contiguous pieces (sizes differ by at most one, like
    ``numpy.array_split``); ``weight = (stop - start) / n`` is the piece's share of the global mean loss.
    Every piece is non-empty: a batch smaller than ``world * accumulation`` is a ConfigError (the
    caller skips such a trailing batch on every rank alike, see :func:`usable`).
    """
    parts = world * accumulation
    if not 0 <= rank < world or accumulation < 1:
        raise ConfigError(f"micro_batches: rank {rank} of world {world}, accumulation {accumulation}")
    if n < parts:
        raise ConfigError(f"a batch of {n} examples cannot be cut into {parts} non-empty micro-batches")
    bounds = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n), parts)])
    return [(int(bounds[k]), int(bounds[k + 1]), float(bounds[k + 1] - bounds[k]) / n)
            for k in range(rank * accumulation, (rank + 1) * accumulation)]


def rank_rows(n: int, *, world: int, accumulation: int, rank: int) -> tuple[int, int]:
    """``(lo, hi)``: the rows of an ``n``-example global batch that rank ``rank``'s micro-batches cover
    (:func:`micro_batches`, contiguous); every row for a batch too small to be trained on (:func:`usable`,
    skipped anyway). Given to :meth:`spkid.data.wavesampler.WaveSampler.only_rows` so that a rank
    augments and featurises its own share, not the whole global batch."""
    if not usable(n, world, accumulation):
        return 0, n
    pieces = micro_batches(n, world, accumulation, rank)
    return pieces[0][0], pieces[-1][1]


def usable(n: int, world: int, accumulation: int) -> bool:
    """Whether an ``n``-example batch can be trained on (every micro-batch holds two or more examples,
    as BatchNorm needs); a smaller trailing batch of an epoch is skipped by every rank alike."""
    return n >= 2 * world * accumulation


def launch_torchrun(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m spkid ARGV`` in ``nproc`` processes under ``torch.distributed.run --standalone`` on
    this machine (what ``spkid train --devices N`` does for torch); returns the job's exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "spkid", *argv]
    return subprocess.call(cmd)
