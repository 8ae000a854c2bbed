"""PyTorch data pipeline over :class:`spkid.data.sampler.TrainSampler` (same crops as the keras backend).

Each Dataset item is a whole batch, built from ``(seed, epoch, batch index)`` alone, so DataLoader
workers can build batches in parallel and in any order without changing the result.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from spkid.data.sampler import TrainSampler

__all__ = ["EpochBatches", "train_loader"]


class EpochBatches(Dataset):
    """Batch ``i`` of epoch ``epoch``: ``(x (B, crop_frames, n_mels) float32, y (B,) int64)`` tensors."""

    def __init__(self, sampler: TrainSampler, epoch: int):
        self.sampler, self.epoch = sampler, epoch
        self.order = sampler.order(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int):
        x, y = self.sampler.batch(self.epoch, i, self.order)
        return torch.from_numpy(x), torch.from_numpy(y)


def train_loader(sampler: TrainSampler, epoch: int, *, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader yielding the batches of one epoch in order (``batch_size=None``: items are batches)."""
    return DataLoader(EpochBatches(sampler, epoch), batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory)
