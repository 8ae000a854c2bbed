"""The write-through half of :class:`~spkid.search.gallery.Gallery`: a gallery opened on a store, either a SQLite
database (``G.db``, :mod:`spkid.search.sqlite_store`, opened fast through its memory-mapped snapshot,
:mod:`spkid.search.snapshot`) or a LanceDB directory (``G.lance``, :mod:`spkid.search.lance_store`, needs the
``lancedb`` extra). Both offer the same operations: every write a durable transaction when it returns, each
read first catching up with other processes' commits (``seq``: a counter of write transactions; ``removals``:
of removals), erasure on removal, a checksum per stored chunk.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spkid.errors import GalleryError
from spkid.search.live_index import LiveIndex
from spkid.search.sqlite_store import SQLiteStore, is_store_path
from spkid.search.snapshot import AUTO_ROWS, drop_stale, open_snapshot, write_snapshot, zero_extent

__all__ = ["StoredGallery", "is_lance_path", "is_database_path", "open_store"]


def is_lance_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a LanceDB gallery: a directory whose name ends in ``.lance``."""
    return Path(path).suffix.lower() == ".lance"


def is_database_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a gallery written through (SQLite ``.db`` or LanceDB ``.lance``), not the pair."""
    return is_store_path(path) or is_lance_path(path)


def open_store(path, *, create: bool, metadata=None, threshold=None):
    """The store behind ``path``: LanceDB for ``*.lance``, else SQLite."""
    if is_lance_path(path):
        from spkid.search.lance_store import LanceStore

        return LanceStore(path, create=create, metadata=metadata, threshold=threshold)
    return SQLiteStore(path, create=create, metadata=metadata, threshold=threshold)


class StoredGallery:
    """Mixin: the database-backed part of :class:`~spkid.search.gallery.Gallery` (which sets ``_store``,
    ``_live``, ``_seq``, ``_removals``, ``_data_version`` and provides ``_add`` / ``_drop`` / ``_prepare_all``)."""

    _use_snapshot = True  # opening maps a SQLite gallery's snapshot when there is one
    _corrupt: str | None = None  # a database row failed its checksum (found after a snapshot open)

    @classmethod
    def open(cls, path: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None,
             threshold: float | None = None, index: str = "auto", create: bool = True,
             expected_metadata: Mapping[str, Any] | None = None, snapshot: bool = True):
        """The gallery stored at ``path`` -- a SQLite database (``.db``, ``.sqlite``, ``.sqlite3``) or a LanceDB
        directory (``.lance``) -- created with ``metadata`` and ``threshold`` when missing and ``create``; changes
        are written through, durable when each call returns. ``snapshot`` (SQLite): open through the memory-mapped
        snapshot, and write one when opening had to read :data:`~spkid.search.snapshot.AUTO_ROWS` rows or more
        without it; False: read every row from the database and write none."""
        store = open_store(path, create=create, metadata=metadata, threshold=threshold)
        header = store.header()
        gallery = cls(header["metadata"], header["threshold"], index=index)
        gallery._store, gallery._use_snapshot = store, bool(snapshot)
        gallery._catch_up()
        gallery._check_metadata(expected_metadata, store.path)
        if snapshot and isinstance(store, SQLiteStore) and gallery.n_utterances() - gallery._covered >= AUTO_ROWS:
            try:
                gallery.snapshot()
            except (OSError, GalleryError) as exc:  # a read-only folder: the next open is slow again, nothing lost
                warnings.warn(f"{store.path}: cannot write the snapshot: {exc}", RuntimeWarning, stacklevel=2)
        return gallery

    @property
    def storage_path(self) -> Path | None:
        """The database this gallery writes through to (``None``: in memory, saved with :meth:`save`)."""
        return None if self._store is None else self._store.path

    def refresh(self):
        """Catch up with what other processes committed to the database (cheap when nothing did)."""
        self._settle()
        if self._store is not None and self._store.data_version() != self._data_version:
            self._catch_up()
        return self

    def _settle(self, wait: bool = False) -> None:
        """Once the snapshot open's background checks are done (``wait``: block until they are): replace the
        speakers whose snapshot bytes failed from the database (their rows checked there), with a warning naming
        the file; a database row that failed makes this and every later call raise GalleryError."""
        if self._corrupt is not None:
            raise GalleryError(self._corrupt, path=self._store.path)
        check = self._pending
        bad = None if check is None else check.result(wait)
        if bad is None:
            return
        self._pending = None
        if check.db_error is not None:
            self._corrupt = f"checksum mismatch in the row of speaker {check.db_error!r} (corrupt or edited)"
            raise GalleryError(self._corrupt, path=self._store.path)
        if not bad:
            return
        warnings.warn(f"{check.path}: the snapshot rows of {len(bad)} speaker(s) ({', '.join(map(repr, bad[:3]))}"
                      f"{', ...' if len(bad) > 3 else ''}) fail their checksum; read from the database instead",
                      RuntimeWarning, stacklevel=3)
        for name in bad:
            if name in self:
                self._drop(name)
        dim = self._store.header()["dim"]
        for name, x, ids, _ in self._store.rows_since(2 ** 62, dim, names=bad):
            if name not in self:
                self._add(name, x, ids, dim)

    def _load_all(self, header: dict) -> None:
        """Fill the empty index: from the snapshot when there is one, else every row."""
        store, dim = self._store, header["dim"]
        snap = store.snapshot_state() if isinstance(store, SQLiteStore) and self._use_snapshot else None
        opened = None if snap is None else open_snapshot(store.path, *snap, dim, self._index_mode)
        if opened is not None:
            self._live, self._pending = opened
            self._covered = 0 if self._live is None else self._live.n_rows - self._live.n_dead_rows
            self._seq, self._removals = snap[0]["seq"], snap[0]["removals"]
            return
        names, counts, rows, ids, sums = store.read_all(dim)
        if names:
            self._live = LiveIndex(dim, self._index_mode)
            self._live.add_bulk(names, counts, rows, ids, sums)
        self._seq, self._removals = header["seq"], header["removals"]

    def _catch_up(self) -> None:
        self._settle()
        store = self._store
        header = store.header()
        self._threshold = header["threshold"]
        if self._live is None and header["dim"] is not None and header["seq"] != self._seq:
            self._load_all(header)  # opening: everything at once
        replaced = header["removals"] != self._removals
        if replaced:
            keep = store.names()
            for name in [s for s in self.speakers if s not in keep]:
                self._drop(name)
            self._removals = header["removals"]
        if header["seq"] != self._seq:
            for name, x, ids, _ in store.rows_since(self._seq, header["dim"]):
                old = self._live.row_count(name) if name in self else 0
                if old and (replaced or self.utterance_ids(name) != ids[:old]):
                    self._drop(name)
                    old = 0
                if len(ids) > old:
                    self._add(name, x[old:], ids[old:], header["dim"])
            self._seq = header["seq"]
        self._data_version = store.data_version()

    def close(self) -> None:
        """Close the database connection (a database-backed gallery is unusable afterwards)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._store is not None:
            self._store.close()

    def _write_through(self, groups) -> list:
        """Write ``groups`` to the store in one transaction; the prepared groups, to add to the index."""
        with self._store.transaction():
            self._catch_up()  # under the write lock: the database's state, others' commits included
            prepared = self._prepare_all(groups)
            seq = self._store.begin_write(prepared[0][1].shape[1])
            for name, x, ids in prepared:
                sums = x.sum(axis=0, dtype=np.float64)
                if name in self:
                    self._store.put(name, np.concatenate([self.embeddings(name), x]), self.utterance_ids(name) + ids,
                                    self._live.slot_sum_of(name) + sums, seq, old=self.n_utterances(name))
                else:
                    self._store.put(name, x, ids, sums, seq)
        self._seq = seq
        return prepared

    def _remove_through(self, name: str) -> None:
        store = self._store
        self._settle(wait=True)  # its read of the database would hold back the log truncation that erases
        with store.transaction():
            self._catch_up()
            self._check_name(name, enrolled=True)
            if isinstance(store, SQLiteStore):  # erase the snapshot's copy before the commit
                info = store.snapshot_info()
                extent = None if info is None else store.snapshot_extent(name)
                if extent is not None:
                    zero_extent(store.path, info, *extent)
                drop_stale(store.path, None if info is None else info["file"])
            seq = store.delete(name)
        self._drop(name)
        self._seq, self._removals = seq, self._removals + 1
        store.truncate_log()

    def snapshot(self) -> Path | None:
        """Write and publish a memory-mapped snapshot of a SQLite gallery's embeddings, so that the next opens
        map them (:mod:`spkid.search.snapshot`); the file written (None: the gallery is empty)."""
        store = self._store
        if not isinstance(store, SQLiteStore):
            raise GalleryError("only a SQLite gallery (G.db) has a snapshot")
        with store.transaction():
            self._catch_up()
            if self._live is None:
                return None
            info, entries = write_snapshot(store.path, self._live, self._seq, self._removals)
            store.publish_snapshot(info, entries)
            drop_stale(store.path, info["file"])
        self._covered = self.n_utterances()
        return store.path.with_name(info["file"])

    def verify(self) -> int:
        """Check every stored row's checksum now (after a snapshot open they are checked in the background:
        this waits for that first); GalleryError naming the file on a mismatch; rows checked."""
        if self._store is None:
            raise GalleryError("an in-memory gallery has nothing stored to verify")
        self._settle(wait=True)
        return self._store.verify()
