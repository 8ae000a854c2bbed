"""Training batches read straight from waveforms: :class:`WaveSource`, :class:`InMemoryWaves`,
:class:`WaveSet` and the seeded :class:`WaveSampler`.

:class:`WaveSampler` has :class:`~spkid.data.sampler.TrainSampler`'s interface (``order(epoch)``,
``batch(epoch, i, order=None)``, ``__len__``, ``epoch(epoch)``), so both backends' loaders take it
unchanged, but each crop is cut from the waveform, augmented there (:class:`~spkid.audio.augment.Augmenter`:
noise, reverberation, channels ... before the fbank, as wespeaker and voxceleb_trainer do) and only then
turned into ``crop_frames`` log-mel frames.

Crop length: ``crop_samples = win_length + (crop_frames - 1) * hop_length`` samples of the
:class:`~spkid.features.config.FeatureConfig`, exactly ``crop_frames`` frames. An utterance of
``L >= crop_samples`` samples gives the slice ``[start, start + crop_samples)``; a shorter one is tiled
(repeat-padded in the waveform domain) from offset ``start`` in ``0..L-1``.

Determinism (no sampler state beyond the epoch, as TrainSampler):

- the epoch order is TrainSampler's: ``default_rng([seed, epoch]).permutation`` of every utterance
  repeated ``crops_per_utterance`` times; batch ``i`` is ``order[i * B:(i + 1) * B]``;
- item ``k`` of batch ``i`` uses ``default_rng([seed, epoch, i, k, ITEM_TAG])``: first its crop start
  (:meth:`WaveSampler.crop_starts` recomputes them), then the augmenter's draws, so an item does not
  depend on the other items' augmentation, on worker processes or on the order batches are built;
- the babble pool of item ``k`` is the raw crops of the batch's items with another label (when none has,
  crops of other-label utterances of the set drawn with ``default_rng([seed, epoch, i, k, BABBLE_TAG])``);
- feature-level augmentation (:func:`~spkid.data.sampler.augment_features`, when ``config.augments``)
  draws from ``default_rng([seed, epoch, i])`` over the whole batch, as TrainSampler.

(The tags matter: numpy's SeedSequence treats ``[s, e, i]`` and ``[s, e, i, 0]`` as the same entropy.)
"""
from __future__ import annotations

import math
import time
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from spkid.audio.augment import Augmenter
from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import TrainSampler, augment_features
from spkid.errors import ConfigError, FeatureError
from spkid.features.api import fbank, fbank_batch
from spkid.features.config import FeatureConfig
from spkid.features.mel import n_frames
from spkid.training.config import TrainConfig

__all__ = ["WaveSource", "InMemoryWaves", "WaveSet", "WaveSampler", "load_wave_set", "make_sampler", "ITEM_TAG",
           "BABBLE_TAG"]

ITEM_TAG = 0x57415645  # "WAVE": last entropy word of an item's rng
BABBLE_TAG = 0x42414242  # "BABB": last entropy word of an item's fallback babble rng


@runtime_checkable
class WaveSource(Protocol):
    """Utterance waveforms with labels: what :class:`WaveSet` reads (a memory-mapped store or
    :class:`InMemoryWaves`). ``labels`` (N,) int64 index ``speakers``; ``lengths`` (N,) int64 samples;
    ``read(i, start, length)`` -> float32 ``(length,)`` copy of samples ``start..start+length`` of
    utterance ``i`` (``length=None``: to its end)."""

    sr: int
    speakers: tuple
    ids: tuple
    labels: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int: ...

    def read(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray: ...


class InMemoryWaves:
    """A :class:`WaveSource` over 1-D waveforms held in memory (copied to float32).

    ``waves``: sequence of ``(L_i,)`` arrays at ``sr`` Hz; ``labels``: (N,) indices into ``speakers``;
    ``ids``: one string per utterance (default ``"0"``, ``"1"``, ...).
    """

    def __init__(self, waves: Sequence, labels, speakers: Sequence[str], *, sr: int = 16000,
                 ids: Sequence[str] | None = None):
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ConfigError(f"InMemoryWaves: sr must be a positive integer (Hz), got {sr!r}")
        self.sr = int(sr)
        self._waves = [np.ascontiguousarray(w, dtype=np.float32) for w in waves]
        if any(w.ndim != 1 or w.size < 1 for w in self._waves):
            raise FeatureError("InMemoryWaves: every waveform must be a non-empty 1-D array")
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.speakers = tuple(speakers)
        self.ids = tuple(str(i) for i in range(len(self._waves))) if ids is None else tuple(ids)
        if not len(self._waves) == len(self.labels) == len(self.ids):
            raise FeatureError(f"InMemoryWaves: {len(self._waves)} waveforms, {len(self.labels)} labels and "
                               f"{len(self.ids)} ids must have the same length")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.speakers)):
            raise FeatureError(f"InMemoryWaves: labels must be in 0..{len(self.speakers) - 1}")
        self.lengths = np.asarray([w.size for w in self._waves], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._waves)

    def read(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        w = self._waves[int(i)]
        stop = w.size if length is None else int(start) + int(length)
        if not 0 <= int(start) <= stop <= w.size:
            raise ConfigError(f"InMemoryWaves.read: samples {start}..{stop} outside utterance {i} "
                               f"of {w.size} samples")
        return w[int(start) : stop].copy()


class WaveSet:
    """The utterances ``index`` of a :class:`WaveSource` (default all; e.g. one split), labelled by
    their own ``speakers`` (default: the source's speakers present, in the source's order; given, e.g.
    the training set's for validation, an utterance of another speaker is a FeatureError).

    Stands where a :class:`~spkid.data.featuresets.FeatureSet` stands for evaluation: ``labels`` (N,)
    int64, ``speakers``, ``n_classes``, ``ids``, ``feature_config``, ``n_mels`` and ``features`` (list of
    (T_i, n_mels) float32 whole-utterance fbanks, computed on first use and kept).
    """

    def __init__(self, source: WaveSource, index: Sequence[int] | None = None, *,
                 feature_config: FeatureConfig | None = None, speakers: Sequence[str] | None = None):
        self.source = source
        self.index = (np.arange(len(source), dtype=np.int64) if index is None
                      else np.asarray(index, dtype=np.int64).reshape(-1))
        if len(self.index) and (self.index.min() < 0 or self.index.max() >= len(source)):
            raise FeatureError(f"WaveSet: indices must be in 0..{len(source) - 1}")
        self.feature_config = FeatureConfig(sr=int(source.sr)) if feature_config is None else feature_config
        if self.feature_config.sr != source.sr:
            raise ConfigError(f"WaveSet: feature_config.sr={self.feature_config.sr} differs from the "
                              f"waveforms' sr={source.sr} (resample the store or set sr)")
        names = np.asarray(source.speakers, dtype=object)[np.asarray(source.labels)[self.index]]
        if speakers is None:
            present = set(names.tolist())
            speakers = [s for s in source.speakers if s in present]
        self.speakers = tuple(speakers)
        pos = {s: k for k, s in enumerate(self.speakers)}
        unknown = sorted({s for s in names.tolist() if s not in pos})
        if unknown:
            raise FeatureError(f"WaveSet: {len(unknown)} speaker(s) not among the {len(pos)} given, e.g. "
                               f"{unknown[0]!r}")
        self.labels = np.asarray([pos[s] for s in names.tolist()], dtype=np.int64)
        self.ids = [source.ids[int(j)] for j in self.index]
        self.lengths = np.asarray(source.lengths, dtype=np.int64)[self.index]
        self._features: list | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_classes(self) -> int:
        return len(self.speakers)

    @property
    def n_mels(self) -> int:
        return self.feature_config.n_mels

    @property
    def sr(self) -> int:
        return self.feature_config.sr

    def read(self, k: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Samples of the set's utterance ``k``: float32 ``(length,)``."""
        return self.source.read(int(self.index[k]), start, length)

    @property
    def features(self) -> list:
        """Whole-utterance fbanks, (T_i, n_mels) float32 each (computed once)."""
        if self._features is None:
            self._features = [fbank(self.read(k), config=self.feature_config) for k in range(len(self))]
        return self._features

    def subset(self, index: Sequence[int]) -> "WaveSet":
        """The set's utterances at ``index`` (same speakers and feature config)."""
        return WaveSet(self.source, self.index[np.asarray(index, dtype=np.int64)],
                       feature_config=self.feature_config, speakers=self.speakers)

    def to_feature_set(self) -> FeatureSet:
        """A :class:`FeatureSet` of :attr:`features` (for code that needs the class itself)."""
        return FeatureSet(self.features, self.labels, self.speakers, self.feature_config, list(self.ids))


def _tile(y: np.ndarray, n: int, offset: int) -> np.ndarray:
    """``y`` (L,) tiled from ``offset`` to exactly ``n`` samples."""
    reps = math.ceil((n + offset) / y.size)
    return np.tile(y, reps)[offset : offset + n]


class WaveSampler:
    """Seeded batches of augmented waveform crops turned into fbanks (rules: module docstring).

    ``sampler.batch(epoch, i)`` -> ``(x (B, crop_frames, n_mels) float32, y (B,) int64)``. Each
    utterance appears ``crops_per_utterance`` times per epoch; a last batch of one example is dropped.
    After :meth:`only_rows` (a data-parallel process that trains on a slice of each global batch), only
    that slice is augmented and featurised: its rows equal the full batch's, the other rows are zeros.
    ``last_batch_seconds`` / ``total_batch_seconds`` / ``batches_built`` time :meth:`batch` in this
    process (DataLoader workers keep their own copies).
    """

    def __init__(self, waveset: WaveSet, config: TrainConfig, *, augmenter: Augmenter | None = None):
        if len(waveset) == 0:
            raise FeatureError("WaveSampler: the training set is empty")
        fc = waveset.feature_config
        if augmenter is not None and augmenter.sr != fc.sr:
            raise ConfigError(f"WaveSampler: the augmenter's sr={augmenter.sr} differs from the waveforms' "
                              f"sr={fc.sr}")
        self.data, self.config, self.augmenter = waveset, config, augmenter
        self.log = fc.log
        self.crop_samples = fc.win_length + (config.crop_frames - 1) * fc.hop_length
        if n_frames(self.crop_samples, fc.win_length, fc.hop_length) != config.crop_frames:  # pragma: no cover
            raise ConfigError("WaveSampler: crop_samples does not give crop_frames frames")
        self._babble = augmenter is not None and augmenter.config.babble_prob > 0
        if self._babble and len(np.unique(waveset.labels)) < 2:
            raise ConfigError("WaveSampler: babble needs at least two speakers in the training set")
        n = len(waveset) * config.crops_per_utterance
        self.batch_size = min(config.batch_size, n)
        full, rest = divmod(n, self.batch_size)
        self._n_batches = full + (1 if rest > 1 else 0)
        self.last_batch_seconds = 0.0
        self.total_batch_seconds = 0.0
        self.batches_built = 0
        self.rows = None

    def __len__(self) -> int:
        return self._n_batches

    def only_rows(self, rows) -> None:
        """Build only rows ``[lo, hi) = rows(B)`` of each B-example batch (e.g.
        :func:`spkid.training.distributed.rank_rows` for this rank; picklable for DataLoader workers);
        None: every row. Crops and labels are still drawn for the whole batch (babble pools and feature
        masks draw as before), so the rows built are exactly the full batch's."""
        self.rows = rows

    def order(self, epoch: int) -> np.ndarray:
        """Utterance indices (into the set) of one epoch, in training order (TrainSampler's rule)."""
        idx = np.repeat(np.arange(len(self.data)), self.config.crops_per_utterance)
        return np.random.default_rng([self.config.seed, epoch]).permutation(idx)

    def _chosen(self, epoch: int, i: int, order: np.ndarray | None) -> np.ndarray:
        if not 0 <= i < self._n_batches:
            raise IndexError(f"batch {i} out of range 0..{self._n_batches - 1}")
        order = self.order(epoch) if order is None else order
        return order[i * self.batch_size : (i + 1) * self.batch_size]

    def _item_rng(self, epoch: int, i: int, k: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, epoch, i, k, ITEM_TAG])

    def _start(self, j: int, rng: np.random.Generator) -> int:
        length = int(self.data.lengths[j])
        if length >= self.crop_samples:
            return int(rng.integers(0, length - self.crop_samples + 1))
        return int(rng.integers(0, length))

    def _read(self, j: int, start: int) -> np.ndarray:
        length = int(self.data.lengths[j])
        if length >= self.crop_samples:
            return self.data.read(j, start, self.crop_samples)
        return _tile(self.data.read(j), self.crop_samples, start)

    def crop_starts(self, epoch: int, i: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(chosen (B,), starts (B,))`` int64 of batch ``i``: set indices and crop starts (the tiling
        offset for utterances shorter than ``crop_samples``), as :meth:`batch` draws them."""
        chosen = self._chosen(epoch, i, order)
        starts = [self._start(int(j), self._item_rng(epoch, i, k)) for k, j in enumerate(chosen)]
        return chosen.astype(np.int64), np.asarray(starts, dtype=np.int64)

    def _pool(self, epoch: int, i: int, k: int, crops: list, labels: np.ndarray) -> list:
        pool = [c for c, lab in zip(crops, labels) if lab != labels[k]]
        if pool:
            return pool
        rng = np.random.default_rng([self.config.seed, epoch, i, k, BABBLE_TAG])
        others = np.flatnonzero(self.data.labels != labels[k])
        hi = self.augmenter.config.babble_speakers[1]
        picks = rng.choice(others, size=min(hi, len(others)), replace=False)
        return [self._read(int(j), self._start(int(j), rng)) for j in picks]

    def batch(self, epoch: int, i: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        chosen = self._chosen(epoch, i, order)
        labels = self.data.labels[chosen].copy()
        rngs = [self._item_rng(epoch, i, k) for k in range(len(chosen))]
        crops = [self._read(int(j), self._start(int(j), rng)) for j, rng in zip(chosen, rngs)]
        lo, hi = (0, len(chosen)) if self.rows is None else self.rows(len(chosen))
        mine = crops[lo:hi]
        if self.augmenter is not None:
            mine = [self.augmenter(crops[k], rngs[k], babble_pool=self._pool(epoch, i, k, crops, labels)
                                   if self._babble else None) for k in range(lo, hi)]
        feats = np.stack(fbank_batch(mine, config=self.data.feature_config)).astype(np.float32, copy=False)
        if (lo, hi) == (0, len(chosen)):
            x = np.ascontiguousarray(feats)
        else:  # (B, crop_frames, n_mels): this process's rows, zeros elsewhere
            x = np.zeros((len(chosen), *feats.shape[1:]), dtype=np.float32)
            x[lo:hi] = feats
        if self.config.augments:  # drawn over the whole batch, so a slice's masks are the full batch's
            augment_features(x, self.config, np.random.default_rng([self.config.seed, epoch, i]), log=self.log)
            x[:lo], x[hi:] = 0.0, 0.0
        self.last_batch_seconds = time.perf_counter() - t0
        self.total_batch_seconds += self.last_batch_seconds
        self.batches_built += 1
        return x, labels

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order(epoch)
        for i in range(self._n_batches):
            yield self.batch(epoch, i, order)


def load_wave_set(root, split: str, *, feature_config: FeatureConfig | None = None, speakers=None) -> WaveSet | None:
    """The ``split`` utterances of the wave store at ``root`` as a :class:`WaveSet` (None if there are
    none), labelled like :func:`~spkid.data.featuresets.load_feature_set` does: ``speakers`` fixes the
    label order, default the store's training speakers, ``"all"`` every speaker of the split; others are
    left out. Features at the store's rate unless ``feature_config`` says otherwise (then it must match)."""
    from spkid.data.waves import WaveStore

    store = WaveStore.open(root)
    if not len(store.indices(split)):
        return None
    if feature_config is not None and feature_config.sr != store.sr:
        raise ConfigError(f"the feature config's sr={feature_config.sr} differs from the wave store's "
                          f"sr={store.sr} ({root}); rebuild the store with --sr {feature_config.sr}")
    index, speakers = store.select(split, speakers)
    if not len(index):
        return None
    return WaveSet(store, index, feature_config=feature_config, speakers=speakers)


def make_sampler(data, config: TrainConfig):
    """The training sampler for ``data``: a :class:`WaveSampler` for a :class:`WaveSet` (augmented with
    ``config.waveform_augment`` over ``config.noise_dir`` / ``config.rir_dir``), else a
    :class:`~spkid.data.sampler.TrainSampler`. Waveform augmentation asked for on pre-computed features
    is refused, not ignored."""
    aug = config.waveform_augment
    if isinstance(data, WaveSet):
        augmenter = (Augmenter(aug, noise_dir=config.noise_dir, rir_dir=config.rir_dir, sr=data.feature_config.sr)
                     if aug.enabled else None)
        return WaveSampler(data, config, augmenter=augmenter)
    if aug.enabled or config.noise_dir or config.rir_dir:
        raise ConfigError("waveform_augment, noise_dir and rir_dir need waveforms: build a wave store "
                          "(spkid prepare DATA --waves DIR) and train from it (spkid train --waves DIR)")
    return TrainSampler(data, config)
