"""Keras data pipeline over :class:`spkid.data.sampler.TrainSampler` (same crops as the torch backend).

:class:`EpochBatches` is a ``keras.utils.PyDataset`` whose item ``i`` is batch ``i`` of an epoch, built
from ``(seed, epoch, i)`` alone; :func:`iterate` walks it in order with an optional bounded prefetch by
``num_workers`` worker processes (forked, like torch's DataLoader workers: waveform augmentation is Python
and numpy work that threads would serialise on the GIL beside the training step), or threads where fork
is not available.
"""
from __future__ import annotations

import collections
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import keras
import numpy as np

from spkid.data.sampler import TrainSampler

__all__ = ["EpochBatches", "iterate"]


class EpochBatches(keras.utils.PyDataset):
    """Batch ``i`` of epoch ``epoch``: ``(x (B, crop_frames, n_mels) float32, y (B,) int64)``."""

    def __init__(self, sampler: TrainSampler, epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.sampler, self.epoch = sampler, epoch
        self.order = sampler.order(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler.batch(self.epoch, i, self.order)


_DATASET: "EpochBatches | None" = None  # the dataset forked worker processes read (set before the fork)


def _batch(i: int) -> tuple[np.ndarray, np.ndarray]:
    return _DATASET[i]


def iterate(dataset: EpochBatches, *, num_workers: int = 0, prefetch: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of ``dataset`` in order; ``num_workers`` processes (threads without fork) build up to
    ``prefetch`` ahead. A worker's error is raised here, at its batch."""
    global _DATASET
    if num_workers <= 0:
        for i in range(len(dataset)):
            yield dataset[i]
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        with ThreadPoolExecutor(num_workers) as pool:
            yield from _in_order(lambda i: pool.submit(dataset.__getitem__, i).result, len(dataset), prefetch)
        return
    _DATASET = dataset  # inherited by the forked workers: nothing is pickled but batch indices and batches
    try:
        with multiprocessing.get_context("fork").Pool(num_workers) as pool:
            yield from _in_order(lambda i: pool.apply_async(_batch, (i,)).get, len(dataset), prefetch)
    finally:
        _DATASET = None


def _in_order(submit, n: int, prefetch: int) -> Iterator:
    """Results of ``submit(i)()`` for i in 0..n-1, in order, at most ``prefetch`` + 1 in flight."""
    pending: collections.deque = collections.deque()
    for i in range(n):
        pending.append(submit(i))
        if len(pending) > prefetch:
            yield pending.popleft()()
    while pending:
        yield pending.popleft()()
