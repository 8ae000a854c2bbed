"""Feature store: the log-mel frames of a corpus in a few large memory-mapped shards, so that training,
evaluation and embedding stream random crops from the map instead of loading the corpus into memory.

The layout is the wave store's (:mod:`spkid.data.waves`: checksummed shards of contiguous rows, an
``index.npz`` of offsets and per-utterance sha256, the header written last) with ``features.json`` as the
header (``"format": "spkid-feature-store"``, plus the ``feature_config`` and ``n_mels``) and shards of
``(n_frames, n_mels)`` float32 rows. It is built by the same resumable, ``--shard``-able builder
(:func:`spkid.data.waves_build.build_store`), from audio (:func:`build_feature_store`) or from an older
per-utterance cache folder (:func:`convert_cache`, one pickle-free pass through the restricted reader).

Why this format (measured in ``benchmarks/scale_data.py``): a random 3 s crop is one slice of a memory
map (no decode, no per-file open), the OS page cache shares the pages between the processes of one
machine (DDP ranks, loader workers), and nothing but plain ``.npy`` / ``.npz`` is read (no pickle).

:class:`StoredFeatures` is the lazy ``features`` sequence of a :class:`~spkid.data.featuresets.FeatureSet`
over a store: item ``k`` is a read-only view into the map, copied only where a crop is taken.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from spkid.errors import CacheError, ConfigError, SpkidError
from spkid.features.config import FeatureConfig
from spkid.data.manifest import Manifest
from spkid.data.waves import WaveStore
from spkid.data.waves_build import StoreKind, WaveBuildReport, build_store

__all__ = ["FEATURE_FORMAT", "FEATURE_HEADER", "FeatureStore", "StoredFeatures", "is_feature_store",
           "is_legacy_cache", "build_feature_store", "convert_cache", "merge_feature_stores", "feature_kind"]

FEATURE_FORMAT = "spkid-feature-store"
FEATURE_HEADER = "features.json"


def is_feature_store(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished feature store (its ``features.json``)."""
    return (Path(path) / FEATURE_HEADER).is_file()


def is_legacy_cache(path: str | os.PathLike) -> bool:
    """True when ``path`` is a per-utterance feature cache of the older format (``cache.json`` + ``entries/``)."""
    return (Path(path) / "cache.json").is_file() and not is_feature_store(path)


class FeatureStore(WaveStore):
    """Read access to a feature store: :meth:`read` copies ``(n_frames, n_mels)`` float32 rows out,
    :meth:`view` maps them without a copy. ``feature_config`` is the recipe the frames were made with."""

    HEADER_FILE = FEATURE_HEADER
    FORMAT = FEATURE_FORMAT
    WHAT = "feature store"

    def _check_header(self, header: dict) -> None:
        path = self.root / self.HEADER_FILE
        raw = header.get("feature_config")
        try:
            self.feature_config = FeatureConfig.from_dict(raw)
        except (ConfigError, TypeError, ValueError) as exc:
            raise CacheError(f"bad feature_config in feature store header: {exc}"[:300], path=path) from None
        if header["dtype"] != "float32" or header["sr"] != self.feature_config.sr:
            raise CacheError(f"feature store header holds {header['dtype']} at {header['sr']} Hz; expected float32 "
                             f"at its feature_config's {self.feature_config.sr} Hz", path=path)
        if header.get("n_mels") != self.feature_config.n_mels:
            raise CacheError(f"n_mels {header.get('n_mels')!r} in feature store header disagrees with its "
                             f"feature_config ({self.feature_config.n_mels})", path=path)
        self.row_shape = (self.feature_config.n_mels,)

    @property
    def n_mels(self) -> int:
        return self.row_shape[0]

    def view(self, i: int) -> np.ndarray:
        """The frames of utterance ``i``: a read-only ``(n_frames, n_mels)`` float32 view of the map."""
        return self._raw(i, 0, None)

    def __repr__(self) -> str:
        hours = float(self.lengths.sum()) * self.feature_config.frame_shift / 3600
        return (f"FeatureStore({str(self.root)!r}: {len(self)} utterances, {len(self.speakers)} speakers, "
                f"{hours:.2f} h of {self.n_mels}-band frames, {len(self.shard_files)} shards)")


class StoredFeatures(Sequence):
    """The frames of utterances ``index`` of a :class:`FeatureStore`, as a lazy sequence: ``seq[k]`` is a
    read-only view of utterance ``index[k]`` (nothing is read until a slice of it is used)."""

    lazy = True  # FeatureSet keeps it as it is (no per-item conversion)

    def __init__(self, store: FeatureStore, index: Sequence[int]):
        self.store = store
        self.index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(self.index) and not (-len(store) <= self.index.min() and self.index.max() < len(store)):
            raise IndexError(f"utterance index out of range for a store of {len(store)}")
        self.lengths = store.lengths[self.index]
        self.lengths.setflags(write=False)
        # the per-item fast path of __getitem__ (a crop costs microseconds: no per-call checks); numpy
        # arrays, not lists: 16 bytes an utterance instead of about 70
        self._shard = store._shard[self.index].astype(np.int32)
        self._start = store._offset[self.index]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return StoredFeatures(self.store, self.index[k])
        start = self._start[k]
        return self.store._map(int(self._shard[k]))[start:start + self.lengths[k]]

    @property
    def n_mels(self) -> int:
        return self.store.n_mels

    def subset(self, index: Sequence[int]) -> "StoredFeatures":
        return StoredFeatures(self.store, self.index[np.asarray(index, dtype=np.int64)])

    def __repr__(self) -> str:
        return f"StoredFeatures({len(self)} utterances of {self.store!r})"


# -------------------------------------------------------------------------------------------- building
def _featurise_one(job: tuple[str, str, dict]) -> tuple[str, np.ndarray | None, str]:
    """Worker: (audio root, relpath, feature config dict) -> (relpath, frames or None, failure reason)."""
    root, relpath, config_dict = job
    try:
        from spkid.audio.io import load_audio
        from spkid.features.api import extract_features

        config = FeatureConfig.from_dict(config_dict)
        feats = extract_features(load_audio(Path(root) / relpath, sr=config.sr, min_duration=0.0), config)
    except SpkidError as exc:
        return relpath, None, exc.problem
    except Exception as exc:  # never abort the build: report and go on
        return relpath, None, f"{type(exc).__name__}: {exc}"
    return _checked(relpath, feats)


def _entry_one(job: tuple[str, str, dict]) -> tuple[str, np.ndarray | None, str]:
    """Worker: (old cache folder, relpath, config dict) -> its entry's frames (restricted unpickler)."""
    cache_dir, relpath, config_dict = job
    from spkid.data.cache import entry_path
    from spkid.data.entries import load_entry

    try:
        entry = load_entry(entry_path(cache_dir, relpath))
    except SpkidError as exc:
        return relpath, None, exc.problem
    if entry["source"] != relpath or entry["feature_config"] != config_dict:
        return relpath, None, "entry was built for another file or feature config (rebuild it)"
    return _checked(relpath, entry["features"])


def _checked(relpath: str, feats) -> tuple[str, np.ndarray | None, str]:
    feats = np.ascontiguousarray(feats, dtype="<f4")
    if feats.ndim != 2 or feats.shape[0] < 1:
        return relpath, None, f"no frames to store (features of shape {feats.shape}; audio shorter than a frame?)"
    return relpath, feats, ""


def feature_kind(config: FeatureConfig, produce=_featurise_one) -> StoreKind:
    """The :class:`~spkid.data.waves_build.StoreKind` of a feature store of ``config``."""
    d = config.to_dict()
    return StoreKind(FeatureStore, config.sr, "float32", produce, (d,), (config.n_mels,),
                     {"feature_config": d, "n_mels": config.n_mels})


def _open_check(root: Path, config: FeatureConfig) -> None:
    if is_legacy_cache(root):
        raise CacheError("folder holds a per-utterance feature cache of the older format; convert it into a new "
                         "folder with `spkid prepare OLD_CACHE --cache NEW`", path=root)
    if is_feature_store(root):
        have = FeatureStore(root).feature_config
        if have != config:
            raise CacheError(f"feature store was built with {have.describe()}, asked for {config.describe()}; "
                             "build into a new folder", path=root)


def build_feature_store(manifest: Manifest, root: str | os.PathLike, config: FeatureConfig | None = None, *,
                        workers: int = 1, shard: tuple[int, int] | None = None, progress: bool = False,
                        shard_rows: int | None = None) -> WaveBuildReport:
    """Featurise the utterances of ``manifest`` into a feature store at ``root`` (resumable after a crash,
    ``shard=(i, n)`` as :func:`~spkid.data.waves_build.build_wave_store`; merge the parts with
    ``merge_wave_stores(dest, parts, cls=FeatureStore, kind_of=...)`` as :func:`merge_feature_stores`)."""
    config = config or FeatureConfig()
    root = Path(root)
    _open_check(root, config)
    return build_store(manifest, root, feature_kind(config), shard_rows=shard_rows, workers=workers, shard=shard,
                       progress=progress, desc="storing features")


def convert_cache(old: str | os.PathLike, root: str | os.PathLike, *, workers: int = 1,
                  progress: bool = False) -> WaveBuildReport:
    """Pack an older per-utterance cache folder ``old`` (its ``manifest.txt`` and entries) into a feature
    store at ``root``; entries that are missing or fail their checks are reported, as in a build."""
    from spkid.data.cache import FeatureCache

    old = Path(old)
    cache = FeatureCache(old)
    manifest = cache.manifest
    _open_check(Path(root), cache.config)
    kind = feature_kind(cache.config, produce=_entry_one)
    return build_store(manifest, root, kind, workers=workers, progress=progress, source_root=old,
                       desc="converting cache")


def merge_feature_stores(dest: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> FeatureStore:
    """Combine feature stores built with ``--shard I/N`` into a new store ``dest`` (same feature config)."""
    from spkid.data.store_merge import merge_wave_stores

    return merge_wave_stores(dest, sources, cls=FeatureStore, kind_of=lambda s: feature_kind(s.feature_config))
