"""Utterance features with integer labels (:class:`FeatureSet`), and loading them from caches or datasets.

A :class:`FeatureSet` holds one ``(T_i, n_mels)`` float32 array per utterance, its class index into an
ordered speaker list (a :class:`~spkid.data.labels.LabelMap`'s or a checkpoint's), and an id per utterance
(its relative path). :func:`load_feature_set` reads one split from a feature cache built by
``spkid prepare`` (:mod:`spkid.data.cache`) or featurises a dataset root on the fly;
:func:`cache_feature_sets` gives train/val/test of a cache, holding val out of train
(:func:`split_holdout`) when the split has none.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from spkid.features.config import FeatureConfig
from spkid.errors import FeatureError

__all__ = ["FeatureSet", "split_holdout", "holdout_index", "load_feature_set", "cache_feature_sets"]


@dataclasses.dataclass
class FeatureSet:
    """Utterance features with integer labels.

    ``features``: list of (T_i, n_mels) float32 arrays, or a lazy sequence of read-only views into a
    feature store (:class:`~spkid.data.featstore.StoredFeatures`: streamed, never loaded whole);
    ``labels``: (N,) int64 indices into ``speakers`` (the LabelMap's ordered names); ``ids``: one string
    per utterance (e.g. its relative path).
    """

    features: list
    labels: np.ndarray
    speakers: tuple
    feature_config: FeatureConfig | None = None
    ids: list | None = None

    def __post_init__(self) -> None:
        lazy = getattr(self.features, "lazy", False)
        if not lazy:
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
        if lazy:  # (T_i, n_mels) rows checked by the store; T_i >= 1 by its index check
            dims = {self.features.n_mels}
        else:
            dims = {f.shape[1] if f.ndim == 2 else -1 for f in self.features}
        if len(dims) > 1 or -1 in dims or (not lazy and any(f.shape[0] < 1 for f in self.features)):
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
        if getattr(self.features, "lazy", False):
            return self.features.n_mels
        return self.features[0].shape[1] if self.features else 0

    def subset(self, index: Sequence[int]) -> "FeatureSet":
        """The utterances at ``index`` (same speakers and feature config)."""
        index = [int(i) for i in index]
        feats = (self.features.subset(index) if getattr(self.features, "lazy", False)
                 else [self.features[i] for i in index])
        return FeatureSet(feats, self.labels[index], self.speakers, self.feature_config, [self.ids[i] for i in index])


def holdout_index(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``fraction`` of each label's items (at least one when it has two or more, never
    all of them): the validation part of :func:`split_holdout`, for any labelled collection. Deterministic
    for a seed; empty when ``fraction`` is 0."""
    labels = np.asarray(labels)
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 7919])
    val: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        n = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        val.extend(rng.permutation(idx)[:n].tolist())
    return np.asarray(sorted(val), dtype=np.int64)


def split_holdout(data: FeatureSet, fraction: float, seed: int = 0) -> tuple[FeatureSet, FeatureSet | None]:
    """Hold out ``fraction`` of each speaker's utterances (:func:`holdout_index`).

    Returns ``(train, val)``; ``val`` is None when ``fraction`` is 0. Deterministic for a seed.
    """
    if fraction <= 0:
        return data, None
    val = holdout_index(data.labels, fraction, seed)
    held = set(val.tolist())
    train = [i for i in range(len(data)) if i not in held]
    return data.subset(train), data.subset(val.tolist())


# ------------------------------------------------------------------------------ datasets -> FeatureSet
def load_feature_set(split: str, *, cache=None, data=None, layout: str = "auto", pattern: str | None = None,
                     feature_config: FeatureConfig | None = None, speakers=None,
                     progress: bool = True) -> FeatureSet | None:
    """The utterances of ``split`` as a :class:`FeatureSet` (None if there are none), from a feature
    ``cache`` directory (built by ``spkid prepare``) or a dataset root ``data`` featurised now (``layout`` /
    ``pattern`` as :func:`spkid.data.layouts.registry.load_dataset`; ``feature_config`` default: defaults).

    ``speakers`` fixes the label order (a checkpoint's); default: the data's training speakers; ``"all"``:
    every speaker of the split (sorted). Utterances of speakers outside the label set, and unreadable
    files, are reported and skipped.
    """
    from tqdm.auto import tqdm

    from spkid.errors import SpkidError
    from spkid.data.labels import LabelMap

    if cache:
        from spkid.data.featstore import is_feature_store, is_legacy_cache

        if is_feature_store(cache):
            return _from_store(split, cache, feature_config, speakers)
        if is_legacy_cache(cache) and progress:
            print(f"note: {cache} is a per-utterance cache of the older format, loaded whole into memory; "
                  f"`spkid prepare {cache} --cache NEW` converts it into a feature store that streams")
        from spkid.data.cache import FeatureCache

        fc = FeatureCache(cache, config=feature_config)
        feature_config, utts, labels = fc.config, fc.utterances(split), fc.labels
        load = fc.load
    else:
        from spkid.features.api import extract_features
        from spkid.data.layouts.registry import load_dataset

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


def _from_store(split: str, root, feature_config: FeatureConfig | None, speakers) -> FeatureSet | None:
    """The utterances of ``split`` in the feature store at ``root``, streamed (:class:`StoredFeatures`)."""
    from spkid.errors import CacheError
    from spkid.data.featstore import FeatureStore, StoredFeatures

    store = FeatureStore.open(root)
    if feature_config is not None and feature_config != store.feature_config:
        raise CacheError(f"feature store holds {store.feature_config.describe()}, asked for "
                         f"{feature_config.describe()}", path=root)
    idx, names = store.select(split, speakers)
    skipped = len(store.indices(split)) - len(idx)
    if skipped:
        print(f"skipped {skipped} utterances of {split} whose speakers are not among the {len(names)} known speakers")
    if not len(idx):
        return None
    who = store.utterance_speakers[idx]
    labels = np.searchsorted(np.asarray(sorted(names), dtype=str), who)
    order = np.argsort(np.asarray(names, dtype=str), kind="stable")
    labels = order[labels]  # position in ``names`` (sorted or not)
    return FeatureSet(StoredFeatures(store, idx), labels, tuple(names), store.feature_config,
                      [store.ids[i] for i in idx.tolist()])


def cache_feature_sets(cache_dir, seed: int = 0, progress: bool = True):
    """``(train, val, test)`` FeatureSets of a built cache, labelled by its training speakers; val is
    held out of train (10% of each speaker, seeded) when the split has none; test may be None."""
    train = load_feature_set("train", cache=cache_dir, progress=progress)
    val = load_feature_set("val", cache=cache_dir, speakers=train.speakers, progress=progress)
    test = load_feature_set("test", cache=cache_dir, speakers=train.speakers, progress=progress)
    if val is None:
        train, val = split_holdout(train, 0.1, seed)
    return train, val, test
