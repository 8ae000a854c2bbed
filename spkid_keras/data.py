"""Keras data pipeline over :class:`spkid.data.sampler.TrainSampler` (same crops as the torch backend).

:class:`EpochBatches` is a ``keras.utils.PyDataset`` whose item ``i`` is batch ``i`` of an epoch, built
from ``(seed, epoch, i)`` alone; :func:`iterate` walks it in order with an optional bounded thread
prefetch (the crops are numpy work, so threads overlap it with the training step).
"""
from __future__ import annotations

import collections
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


def iterate(dataset: EpochBatches, *, num_workers: int = 0, prefetch: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of ``dataset`` in order; ``num_workers`` threads build up to ``prefetch`` ahead."""
    if num_workers <= 0:
        for i in range(len(dataset)):
            yield dataset[i]
        return
    with ThreadPoolExecutor(num_workers) as pool:
        pending: collections.deque = collections.deque()
        for i in range(len(dataset)):
            pending.append(pool.submit(dataset.__getitem__, i))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
