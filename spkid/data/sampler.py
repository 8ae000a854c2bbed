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

import dataclasses
import math
from typing import Iterator, Sequence

import numpy as np

from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.errors import FeatureError

__all__ = [
    "FeatureSet",
    "load_feature_set",
    "cache_feature_sets",
    "repeat_pad",
    "TrainSampler",
    "augment_features",
    "add_noise",
    "eval_pieces",
    "eval_batches",
    "split_holdout",
]


@dataclasses.dataclass
class FeatureSet:
    """Utterance features with integer labels.

    ``features``: list of (T_i, n_mels) float32 arrays; ``labels``: (N,) int64 indices into ``speakers``
    (the LabelMap's ordered names); ``ids``: one string per utterance (e.g. its relative path).
    """

    features: list
    labels: np.ndarray
    speakers: tuple
    feature_config: FeatureConfig | None = None
    ids: list | None = None

    def __post_init__(self) -> None:
        self.features = [np.asarray(f, dtype=np.float32) for f in self.features]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.speakers = tuple(self.speakers)
        if self.ids is None:
            self.ids = [str(i) for i in range(len(self.features))]
        if not (len(self.features) == len(self.labels) == len(self.ids)):
            raise FeatureError(
                f"FeatureSet: {len(self.features)} feature arrays, {len(self.labels)} labels and "
                f"{len(self.ids)} ids must have the same length"
            )
        dims = {f.shape[1] if f.ndim == 2 else -1 for f in self.features}
        if len(dims) > 1 or -1 in dims or any(f.shape[0] < 1 for f in self.features):
            raise FeatureError(f"FeatureSet: features must be non-empty (T, n_mels) arrays with one n_mels, got {dims}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.speakers)):
            raise FeatureError(f"FeatureSet: labels must be in 0..{len(self.speakers) - 1}")

    def __len__(self) -> int:
        return len(self.features)

    @property
    def n_classes(self) -> int:
        return len(self.speakers)

    @property
    def n_mels(self) -> int:
        return self.features[0].shape[1] if self.features else 0

    def subset(self, index: Sequence[int]) -> "FeatureSet":
        """The utterances at ``index`` (same speakers and feature config)."""
        index = [int(i) for i in index]
        return FeatureSet([self.features[i] for i in index], self.labels[index], self.speakers,
                          self.feature_config, [self.ids[i] for i in index])


def split_holdout(data: FeatureSet, fraction: float, seed: int = 0) -> tuple[FeatureSet, FeatureSet | None]:
    """Hold out ``fraction`` of each speaker's utterances (at least one when it has two or more).

    Returns ``(train, val)``; ``val`` is None when ``fraction`` is 0. Deterministic for a seed.
    """
    if fraction <= 0:
        return data, None
    rng = np.random.default_rng([seed, 7919])
    val: list[int] = []
    for c in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == c)
        if len(idx) < 2:
            continue
        n = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        val.extend(rng.permutation(idx)[:n].tolist())
    held = set(val)
    train = [i for i in range(len(data)) if i not in held]
    return data.subset(train), data.subset(sorted(val))


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


# ------------------------------------------------------------------------------ datasets -> FeatureSet
def load_feature_set(split: str, *, cache=None, data=None, layout: str = "auto", pattern: str | None = None,
                     feature_config: FeatureConfig | None = None, speakers=None,
                     progress: bool = True) -> FeatureSet | None:
    """The utterances of ``split`` as a :class:`FeatureSet` (None if there are none), from a feature
    ``cache`` directory (built by ``spkid prepare``) or a dataset root ``data`` featurised now
    (``layout``/``pattern`` as :func:`spkid.data.splits.load_dataset`; ``feature_config`` default: defaults).

    ``speakers`` fixes the label order (a checkpoint's); default: the data's training speakers; ``"all"``:
    every speaker of the split (sorted). Utterances of speakers outside the label set, and unreadable
    files, are reported and skipped.
    """
    from tqdm.auto import tqdm

    from spkid.errors import SpkidError
    from spkid.data.splits import LabelMap

    if cache:
        from spkid.data.cache import FeatureCache

        fc = FeatureCache(cache, config=feature_config)
        feature_config, utts, labels = fc.config, fc.utterances(split), fc.labels
        load = fc.load
    else:
        from spkid.features.api import extract_features
        from spkid.data.splits import load_dataset

        feature_config = feature_config or FeatureConfig()
        manifest = load_dataset(data, layout, pattern=pattern)
        utts, labels = manifest.split(split), LabelMap.from_manifest(manifest)
        load = lambda u: extract_features(manifest.path_of(u), feature_config)  # noqa: E731
    if speakers == "all":
        speakers = sorted({u.speaker for u in utts})
    names = list(speakers) if speakers is not None else labels.speakers
    index = {s: i for i, s in enumerate(names)}
    feats, ys, ids, skipped = [], [], [], []
    for u in tqdm(utts, disable=not progress, desc=f"load {split}", leave=False):
        if u.speaker not in index:
            skipped.append((u.path, f"speaker {u.speaker!r} not among the {len(names)} known speakers"))
            continue
        try:
            feats.append(load(u))
        except SpkidError as exc:
            skipped.append((u.path, exc.problem))
            continue
        ys.append(index[u.speaker])
        ids.append(u.path)
    for path, why in skipped[:10]:
        print(f"skipped {path}: {why}")
    if len(skipped) > 10:
        print(f"... {len(skipped) - 10} more skipped")
    if not feats:
        return None
    return FeatureSet(feats, ys, tuple(names), feature_config, ids)


def cache_feature_sets(cache_dir, seed: int = 0, progress: bool = True):
    """``(train, val, test)`` FeatureSets of a built cache, labelled by its training speakers; val is
    held out of train (10% of each speaker, seeded) when the split has none; test may be None."""
    train = load_feature_set("train", cache=cache_dir, progress=progress)
    val = load_feature_set("val", cache=cache_dir, speakers=train.speakers, progress=progress)
    test = load_feature_set("test", cache=cache_dir, speakers=train.speakers, progress=progress)
    if val is None:
        train, val = split_holdout(train, 0.1, seed)
    return train, val, test
