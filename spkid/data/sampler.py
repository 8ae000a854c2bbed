"""Crops, padding, batches and augmentation on numpy feature arrays, shared by both backends.

Training sees random fixed-length crops of ``crop_frames`` frames (An et al. 2019 use 3 s = 300 frames);
utterances shorter than a crop are repeat-padded (tiled) like the reference implementation. Every random
choice of epoch ``e`` comes from ``numpy.random.default_rng([seed, e])`` (the order) and
``default_rng([seed, e, i])`` (batch ``i``), so:

- the torch and keras backends see exactly the same crops for the same seed,
- a batch can be built in any worker process, in any order,
- resuming at epoch ``e`` needs no sampler state beyond ``e``.

Evaluation (:func:`eval_pieces`, :func:`eval_batches`): ``"full"`` feeds each utterance whole,
repeat-padded to ``crop_frames`` when shorter (the model never saw shorter inputs in training);
``"windows"`` cuts it into ``window_frames`` windows every ``hop_frames`` frames (the last one aligned to
the end) whose outputs the caller averages. Pieces are sorted by length and batched with zero padding and
a ``lengths`` vector so that models mask the padding. The default is ``"full"``: with masked attention
pooling one pass over the whole utterance is exact and cheapest.

Augmentation: SpecAugment time/frequency masks (Park et al., Interspeech 2019) and a random gain (an
additive constant in the log domain) on features; white noise at a random SNR on waveforms
(:func:`add_noise`).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from spkid.training.config import TrainConfig
from spkid.errors import FeatureError
from spkid.data.featuresets import FeatureSet

__all__ = [
    "repeat_pad",
    "TrainSampler",
    "augment_features",
    "add_noise",
    "eval_pieces",
    "eval_batches",
    "EpochSteps",
]


def repeat_pad(x: np.ndarray, n_frames: int, *, offset: int = 0) -> np.ndarray:
    """Tile ``x`` (T, n_mels) along time, starting ``offset`` frames in, to exactly ``n_frames`` frames.

    Returns (n_frames, n_mels) float32; ``x`` itself (a view) when it already has ``n_frames`` frames.
    """
    t = x.shape[0]
    if t == n_frames and offset == 0:
        return x
    reps = math.ceil((n_frames + offset) / t)
    return np.tile(x, (reps, 1))[offset : offset + n_frames]


def _crop(x: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random (n_frames, n_mels) crop; a short utterance is tiled from a random offset."""
    t = x.shape[0]
    if t >= n_frames:
        start = int(rng.integers(0, t - n_frames + 1))
        return x[start : start + n_frames]
    return repeat_pad(x, n_frames, offset=int(rng.integers(0, t)))


def augment_features(x: np.ndarray, config: TrainConfig, rng: np.random.Generator, *,
                     log: str = "natural") -> np.ndarray:
    """Augment a batch (B, T, n_mels) in place and return it.

    Each example independently, each kind with probability ``config.augment_prob``: a gain drawn from
    ``config.gain_db`` added in the log domain (``ln(10)/10`` per dB for natural-log power features, 1 per
    dB for dB features); ``config.time_masks`` time masks of up to ``time_mask_frames`` frames and
    ``config.freq_masks`` frequency masks of up to ``freq_mask_bins`` bands, filled with the example's mean.
    """
    p = config.augment_prob
    b, t, m = x.shape
    per_db = math.log(10.0) / 10.0 if log == "natural" else 1.0
    for i in range(b):
        if config.gain_db is not None and rng.random() < p:
            x[i] += np.float32(rng.uniform(*config.gain_db) * per_db)
        fill = x[i].mean()
        for _ in range(config.time_masks):
            if rng.random() < p:
                w = int(rng.integers(0, min(config.time_mask_frames, t) + 1))
                s = int(rng.integers(0, t - w + 1))
                x[i, s : s + w, :] = fill
        for _ in range(config.freq_masks):
            if rng.random() < p:
                w = int(rng.integers(0, min(config.freq_mask_bins, m) + 1))
                s = int(rng.integers(0, m - w + 1))
                x[i, :, s : s + w] = fill
    return x


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` (n,) plus white Gaussian noise at ``snr_db`` dB signal-to-noise ratio; float32 (n,)."""
    y = np.asarray(y, dtype=np.float32)
    power = float(np.mean(np.square(y, dtype=np.float64)))
    sigma = math.sqrt(power / (10.0 ** (snr_db / 10.0))) if power > 0 else 0.0
    return (y + rng.normal(0.0, sigma, size=y.shape)).astype(np.float32)


class TrainSampler:
    """Seeded batches of random crops over a :class:`FeatureSet`.

    ``sampler.batch(epoch, i)`` -> ``(x (B, crop_frames, n_mels) float32, y (B,) int64)``; the same
    (seed, epoch, i) always gives the same batch. Each utterance appears ``crops_per_utterance`` times
    per epoch in a random order; a last batch of a single example is dropped (BatchNorm needs two).
    """

    def __init__(self, data: FeatureSet, config: TrainConfig):
        if len(data) == 0:
            raise FeatureError("TrainSampler: the training set is empty")
        self.data = data
        self.config = config
        self.log = data.feature_config.log if data.feature_config is not None else "natural"
        n = len(data) * config.crops_per_utterance
        self.batch_size = min(config.batch_size, n)
        full, rest = divmod(n, self.batch_size)
        self._n_batches = full + (1 if rest > 1 else 0)

    def __len__(self) -> int:
        return self._n_batches

    def order(self, epoch: int) -> np.ndarray:
        """Utterance indices of one epoch, in training order."""
        idx = np.repeat(np.arange(len(self.data)), self.config.crops_per_utterance)
        return np.random.default_rng([self.config.seed, epoch]).permutation(idx)

    def batch(self, epoch: int, i: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self._n_batches:
            raise IndexError(f"batch {i} out of range 0..{self._n_batches - 1}")
        order = self.order(epoch) if order is None else order
        chosen = order[i * self.batch_size : (i + 1) * self.batch_size]
        rng = np.random.default_rng([self.config.seed, epoch, i])
        x = np.stack([_crop(self.data.features[j], self.config.crop_frames, rng) for j in chosen])
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.config.augments:
            augment_features(x, self.config, rng, log=self.log)
        return x, self.data.labels[chosen].copy()

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order(epoch)
        for i in range(self._n_batches):
            yield self.batch(epoch, i, order)


class EpochSteps:
    """Training epoch ``epoch``'s steps ``[start, stop)`` of a sampler's endless stream of batches, with the
    sampler's own interface (``len``, ``order``, ``batch``) so the backends' loaders take either.

    Global step ``g`` is batch ``g % len(sampler)`` of data epoch ``g // len(sampler)`` (a data epoch:
    every utterance ``crops_per_utterance`` times), whatever the training epochs' length
    (``TrainConfig.steps_per_epoch``): a run cut into other epochs, stopped by ``max_steps`` or resumed
    sees the same batch at the same step.
    """

    def __init__(self, sampler, start: int, stop: int):
        if not 0 <= start <= stop:
            raise ValueError(f"EpochSteps needs 0 <= start <= stop, got [{start}, {stop})")
        self.sampler, self.start, self.stop = sampler, int(start), int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def locate(self, k: int) -> tuple[int, int]:
        """(data epoch, batch index) of this range's ``k``-th step."""
        if not 0 <= k < len(self):
            raise IndexError(f"step {k} out of range 0..{len(self) - 1}")
        return divmod(self.start + k, len(self.sampler))

    def order(self, epoch: int | None = None) -> dict:
        """The orders of the data epochs these steps draw from (computed once, shared with forked workers)."""
        n = len(self.sampler)
        return {e: self.sampler.order(e) for e in range(self.start // n, (max(self.stop, 1) - 1) // n + 1)}

    def batch(self, epoch: int | None, k: int, order: dict | None = None):
        """Step ``k`` of the range (``epoch`` is ignored: the step alone decides the batch)."""
        e, i = self.locate(k)
        return self.sampler.batch(e, i, None if order is None else order.get(e))

    def epoch(self, epoch: int | None = None):
        order = self.order()
        for k in range(len(self)):
            yield self.batch(None, k, order)


def eval_pieces(features: Sequence[np.ndarray], config: TrainConfig) -> tuple[list, np.ndarray]:
    """Cut utterances into the pieces the model sees at evaluation.

    Returns ``(pieces, owner)``: a list of (T_k, n_mels) arrays and (K,) int64 utterance index of each.
    """
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for u, x in enumerate(features):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < 1:
            raise FeatureError(f"utterance {u}: expected a non-empty (T, n_mels) array, got shape {x.shape}")
        if config.eval_mode == "full":
            pieces.append(repeat_pad(x, config.crop_frames) if x.shape[0] < config.crop_frames else x)
            owner.append(u)
            continue
        w, h = config.window_frames, config.hop_frames
        if x.shape[0] <= w:
            pieces.append(repeat_pad(x, w))
            owner.append(u)
            continue
        starts = list(range(0, x.shape[0] - w + 1, h))
        if starts[-1] + w < x.shape[0]:
            starts.append(x.shape[0] - w)
        pieces.extend(x[s : s + w] for s in starts)
        owner.extend([u] * len(starts))
    return pieces, np.asarray(owner, dtype=np.int64)


def eval_batches(pieces: Sequence[np.ndarray], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Length-sorted, zero-padded batches: yields ``(x (B, T_max, n_mels), lengths (B,) int64, index (B,))``
    where ``index`` are positions in ``pieces``."""
    order = np.argsort([p.shape[0] for p in pieces], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        lengths = np.asarray([pieces[i].shape[0] for i in idx], dtype=np.int64)
        x = np.zeros((len(idx), int(lengths.max()), pieces[idx[0]].shape[1]), dtype=np.float32)
        for row, i in enumerate(idx):
            x[row, : lengths[row]] = pieces[i]
        yield x, lengths, idx
