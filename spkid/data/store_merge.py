"""Merging stores built with ``--shard I/N`` (wave stores, feature stores) into one (:mod:`spkid.data.waves`
has the layout): shards are hard-linked and re-hashed, indexes concatenated."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

from spkid.errors import CacheError
from spkid.data.waves import WaveStore, file_sha256, shard_name
from spkid.data.waves_build import StoreKind, _clean, _fsync_dir, _write_store, wave_kind

__all__ = ["merge_wave_stores"]


def _describe(kind: StoreKind) -> str:
    return f"{kind.sr} Hz {kind.dtype}" + (f" {kind.extra}" if kind.extra else "")


def merge_wave_stores(dest: str | os.PathLike, sources: Sequence[str | os.PathLike], *, cls: type = WaveStore,
                      kind_of: Callable[[WaveStore], StoreKind] = lambda s: wave_kind(s.sr, s.dtype)) -> WaveStore:
    """Combine the stores ``sources`` (e.g. the roots of ``--shard I/N`` builds) into a new store ``dest``.

    Shards are hard-linked (copied across file systems) and checked against their sha256; indexes are
    concatenated in source order and speakers united. Mismatched sr or dtype, or an utterance in two
    sources, is a CacheError. ``dest`` must not already hold a finished store (leftovers of an
    interrupted merge are removed).
    """
    dest = Path(dest)
    if not sources:
        raise CacheError("merge_wave_stores needs at least one source store", path=dest)
    if (dest / cls.HEADER_FILE).exists():
        raise CacheError(f"destination already holds a {cls.WHAT}; merge into a new folder", path=dest)
    stores = [cls(s) for s in sources]
    first = stores[0]
    for s in stores[1:]:
        if kind_of(s) != kind_of(first):
            raise CacheError(f"cannot merge: store holds {_describe(kind_of(s))}, {first.root} holds "
                             f"{_describe(kind_of(first))}", path=s.root)
    dest.mkdir(parents=True, exist_ok=True)
    _clean(dest, 0)
    seen: dict[str, Path] = {}
    shards, rows = [], []
    for s in stores:
        base = len(shards)
        for k, name in enumerate(s.shard_files):
            src, target = s.root / name, dest / shard_name(len(shards))
            tmp = dest / f".{target.name}.merge.tmp"
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            digest = file_sha256(tmp, "shard")
            if digest != s._shard_sha[k]:
                tmp.unlink(missing_ok=True)
                raise CacheError("shard checksum mismatch (corrupt or tampered); not merged", path=src)
            os.replace(tmp, target)
            shards.append({"file": target.name, "n_samples": s._shard_sizes[k], "sha256": digest})
        for i, relpath in enumerate(s.ids):
            if relpath in seen:
                raise CacheError(f"utterance {relpath!r} is in two sources ({seen[relpath]} and {s.root})",
                                 path=s.root)
            seen[relpath] = s.root
            rows.append((relpath, str(s._split_arr[i]), s.speaker(i), base + int(s._shard[i]), int(s._offset[i]),
                         int(s.lengths[i]), s._sha[i].decode()))
    _fsync_dir(dest)
    speakers = sorted(set().union(*(s.speakers for s in stores)))
    _write_store(dest, kind_of(first), speakers, shards, rows, None)
    return cls(dest)
