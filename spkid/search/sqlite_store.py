"""Gallery storage in one SQLite database (``G.db``) that grows by transactions, not by rewriting files.

Chosen by measurement over the ``.npz`` + ``.json`` pair (which rewrites everything on every save) and over
a row per utterance (whose open at 1M rows costs a Python row fetch each); see ``benchmarks/gallery_scale.py``
and the README. SQLite (stdlib ``sqlite3``) gives what the gallery needs without a server:

- **durable when a call returns**: write-ahead log (``journal_mode=WAL``) with ``synchronous=FULL``, so a
  commit is fsynced before :meth:`SQLiteStore.write` returns;
- **crash-safe**: a transaction killed before its commit (``kill -9``, power loss) leaves the previous state;
- **several processes**: writers take turns (``BEGIN IMMEDIATE`` + a busy timeout), readers never block,
  and every reader catches up with the others' commits by the change counter below;
- **checksummed**: each row carries a CRC-32 of its name, ids, embedding and sum bytes, checked on every read
  (CRC rather than sha256: it detects the same corruption, and hashing 1 GB at 1M utterances with sha256
  alone would take most of the 2 s open budget; a tamperer who can write the file can recompute either);
- **O(what changed)**: a speaker is one row (its ``n`` unit float32 embeddings as one blob plus its ids),
  so enrolling rewrites that speaker's row only, removing deletes it; the row also keeps the float64 sum of the
  embeddings (the centroid), so opening reads the centroids instead of recomputing them;
- **erasure**: ``secure_delete=ON`` overwrites deleted content with zeros, and a ``wal_checkpoint(TRUNCATE)``
  after a removal empties the log that still held it, so a removed voiceprint is gone from the files.

Tables: ``meta(key, value)`` (format, version, dim, threshold, caller's metadata, ``seq``: a counter bumped by
every write transaction, ``removals``: bumped by every removal) and ``speakers(name, version, n, embeddings,
sums, ids, crc32)``, ``version`` the ``seq`` of the transaction that last wrote the row, ``ids`` the utterance
ids joined by newlines (an id may not contain one). A process that has seen
``seq`` S reads only rows with ``version > S`` (and the names, when ``removals`` moved): O(changes).
"""
from __future__ import annotations

import contextlib
import zlib
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from spkid.errors import GalleryError

__all__ = ["FORMAT", "VERSION", "STORE_SUFFIXES", "is_store_path", "SQLiteStore", "row_digest"]

FORMAT = "spkid-gallery-sqlite"
VERSION = 1
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS speakers (name TEXT PRIMARY KEY, version INTEGER NOT NULL, n INTEGER NOT NULL, "
    "embeddings BLOB NOT NULL, sums BLOB NOT NULL, ids TEXT NOT NULL, crc32 INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS speakers_version ON speakers(version)",
)
# where each speaker's rows lie in the memory-mapped snapshot (spkid.search.snapshot): changed in the same
# transactions as ``speakers``, so it never names a removed speaker
_SNAPSHOT_SCHEMA = ("CREATE TABLE IF NOT EXISTS snapshot_rows (name TEXT PRIMARY KEY, slot INTEGER NOT NULL, "
                    "start INTEGER NOT NULL, n INTEGER NOT NULL, ids TEXT NOT NULL, crc32 INTEGER NOT NULL)")


def is_store_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a SQLite gallery (suffix ``.db``, ``.sqlite`` or ``.sqlite3``)."""
    return Path(path).suffix.lower() in STORE_SUFFIXES


def row_digest(name: str, ids_text: str, blob: bytes, sums: bytes) -> int:
    """CRC-32 of a speaker row's name, ids, embedding bytes and sum bytes."""
    return zlib.crc32(sums, zlib.crc32(blob, zlib.crc32(f"{name}\0{ids_text}\0".encode("utf-8"))))


class SQLiteStore:
    """One connection to a gallery database. Not for sharing across threads without a lock (the
    :class:`~spkid.search.gallery.Gallery` that owns it is used under one), never across ``fork``."""

    def __init__(self, path: str | os.PathLike, *, create: bool, metadata: Mapping[str, Any] | None = None,
                 threshold: float | None = None):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise GalleryError("no such gallery database", path=self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                        check_same_thread=False)
            if new:
                self.conn.execute("PRAGMA page_size=65536")  # big rows: fewer overflow pages to chase
            for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=FULL",
                           "secure_delete=ON"):
                self.conn.execute(f"PRAGMA {pragma}")
            with self.transaction():
                if not self._has_meta():
                    if not create:
                        raise GalleryError("not a spkid gallery database (no meta table)", path=self.path)
                    for statement in _SCHEMA:
                        self.conn.execute(statement)
                    self._init_meta(metadata, threshold)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"cannot open the gallery database: {exc}", path=self.path) from None
        self._check_header()

    # ------------------------------------------------------------------ meta
    def _has_meta(self) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    def _init_meta(self, metadata, threshold) -> None:
        try:
            meta_json = json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"metadata is not JSON-serialisable: {exc}", path=self.path) from None
        rows = {"format": FORMAT, "version": str(VERSION), "dim": "null", "threshold": json.dumps(threshold),
                "metadata": meta_json, "seq": "0", "removals": "0"}
        self.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", rows.items())

    def header(self) -> dict:
        """``{"dim", "threshold", "metadata", "seq", "removals"}`` as stored now."""
        try:
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            out = {k: json.loads(meta[k]) for k in ("dim", "threshold", "metadata", "seq", "removals")}
        except (KeyError, ValueError, sqlite3.DatabaseError) as exc:
            raise GalleryError(f"corrupt gallery meta table: {exc!r}", path=self.path) from None
        if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
            raise GalleryError(f"not a {FORMAT} version {VERSION} database (format {meta.get('format')!r}, "
                               f"version {meta.get('version')!r})", path=self.path)
        thr = out["threshold"]
        if thr is not None and not (isinstance(thr, (int, float)) and math.isfinite(thr)):
            raise GalleryError(f"stored threshold must be a finite number or null, got {thr!r}", path=self.path)
        return out

    def _check_header(self) -> None:
        self.header()

    def _set(self, key: str, value) -> None:
        self.conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))

    def _bump(self, key: str) -> int:
        value = int(json.loads(self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])) + 1
        self._set(key, value)
        return value

    def data_version(self) -> int:
        """SQLite's per-connection counter: it moves when *another* connection commits."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (the write lock, waiting up to the busy timeout) ... ``COMMIT``; a failure
        inside rolls back, leaving the previous state."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise GalleryError(f"cannot lock the gallery database for writing: {exc}", path=self.path) from None
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.conn.execute("ROLLBACK")
            raise GalleryError(f"commit failed, nothing written: {exc}", path=self.path) from None

    # ------------------------------------------------------------------ rows
    def names(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM speakers")}

    def rows_since(self, seq: int, dim: int | None, names=()) -> list[tuple[str, np.ndarray, list[str], np.ndarray]]:
        """``(name, (n, D) float32 embeddings, n ids, (D,) float64 sum)`` of every row written after ``seq``
        (and of the speakers ``names``), checked, in name order."""
        out = []
        names = list(names)
        cur = self.conn.execute(f"SELECT name, n, embeddings, sums, ids, crc32 FROM speakers WHERE version > ? "
                                f"{'OR name IN (%s)' % ','.join('?' * len(names)) if names else ''}",
                                (int(seq), *names))
        for name, n, blob, sums, ids_text, crc in cur:
            self._check_row(name, ids_text, blob, sums, crc)
            ids = ids_text.split("\n")
            if dim is None or len(blob) != 4 * n * dim or len(ids) != n or len(sums) != 8 * dim:
                raise GalleryError(f"row of speaker {name!r} holds {len(blob)} bytes and {len(ids)} ids for "
                                   f"{n} embeddings of dimension {dim}", path=self.path)
            out.append((name, np.frombuffer(blob, "<f4").reshape(n, dim), ids, np.frombuffer(sums, "<f8")))
        return sorted(out, key=lambda r: r[0])  # sorted here: ORDER BY name would walk the name index, not version's

    def read_all(self, dim: int, spare: float = 0.25):
        """Every row at once, checked, for opening: ``(names, counts (S,), rows (cap, D) float32, ids, sums
        (S, D) float64)`` with rows grouped by speaker (in the table's order) and ``cap - n`` spare rows (zeros) so
        that the next enrolments append without copying. One copy of the embedding bytes, no per-row arrays."""
        total = self.conn.execute("SELECT COALESCE(SUM(n), 0), COUNT(*) FROM speakers").fetchone()
        n, s = int(total[0]), int(total[1])
        cap = n + max(int(n * spare), 1024)
        buf = bytearray(cap * dim * 4)
        view = memoryview(buf)
        sums = bytearray(s * dim * 8)
        names, counts, ids, pos, width = [], np.zeros(s, np.int64), [], 0, 4 * dim
        # table order (rowid), not name order: a sequential walk of the table instead of index lookups
        cur = self.conn.execute("SELECT name, n, embeddings, sums, ids, crc32 FROM speakers")
        for j, (name, k, blob, sum_blob, ids_text, crc) in enumerate(cur):
            self._check_row(name, ids_text, blob, sum_blob, crc)
            if len(blob) != k * width or len(sum_blob) != 8 * dim or ids_text.count("\n") != k - 1:
                raise GalleryError(f"row of speaker {name!r} holds {len(blob)} bytes and {ids_text.count(chr(10)) + 1} "
                                   f"ids for {k} embeddings of dimension {dim}", path=self.path)
            view[pos : pos + len(blob)] = blob
            sums[j * 8 * dim : (j + 1) * 8 * dim] = sum_blob
            pos += len(blob)
            names.append(name)
            counts[j] = k
            ids.append(ids_text)
        ids = "\n".join(ids).split("\n") if ids else []
        rows = np.frombuffer(buf, "<f4").reshape(cap, dim)
        return names, counts, rows, ids, np.frombuffer(sums, "<f8").reshape(s, dim).copy()

    def _check_row(self, name: str, ids_text: str, blob: bytes, sums: bytes, crc: int) -> None:
        if row_digest(name, ids_text, blob, sums) != crc:
            raise GalleryError(f"checksum mismatch in the row of speaker {name!r} (corrupt or edited)", path=self.path)

    def put(self, name: str, embeddings: np.ndarray, ids: list[str], sums: np.ndarray, seq: int, old: int = 0) -> None:
        """Write speaker ``name``'s full row (inside :meth:`transaction`); ``sums`` (D,) float64; ``old``: how many
        of the rows were stored already (the row is rewritten whole all the same)."""
        bad = [i for i in ids if "\n" in i]
        if bad:
            raise GalleryError(f"utterance ids may not contain a newline: {bad[0]!r}", path=self.path)
        blob = np.ascontiguousarray(embeddings, "<f4").tobytes()
        sum_blob = np.ascontiguousarray(sums, "<f8").tobytes()
        ids_text = "\n".join(ids)
        self.conn.execute("INSERT INTO speakers(name, version, n, embeddings, sums, ids, crc32) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version, "
                          "n = excluded.n, embeddings = excluded.embeddings, sums = excluded.sums, ids = excluded.ids, "
                          "crc32 = excluded.crc32",
                          (name, seq, int(embeddings.shape[0]), blob, sum_blob, ids_text,
                           row_digest(name, ids_text, blob, sum_blob)))

    def begin_write(self, dim: int) -> int:
        """Inside :meth:`transaction`: record ``dim`` (first write) and bump ``seq``; returns the new seq."""
        if self.header()["dim"] is None:
            self._set("dim", int(dim))
        return self._bump("seq")

    def delete(self, name: str) -> int:
        """Inside :meth:`transaction`: delete speaker ``name``'s row (zeroed by ``secure_delete``); bumps
        ``seq`` and ``removals``; returns the new seq."""
        self.conn.execute("DELETE FROM speakers WHERE name = ?", (name,))
        if self._has_table("snapshot_rows"):
            self.conn.execute("DELETE FROM snapshot_rows WHERE name = ?", (name,))
        self._bump("removals")
        if self.conn.execute("SELECT COUNT(*) FROM speakers").fetchone()[0] == 0:
            self._set("dim", None)
        return self._bump("seq")

    # ------------------------------------------------------------------ snapshot (spkid.search.snapshot)
    def _has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        return row is not None

    def snapshot_state(self) -> tuple[dict, list[tuple]] | None:
        """``(info, entries)`` of the published snapshot, read together, or None: ``info`` its JSON record,
        ``entries`` ``(name, slot, start, n, ids text, crc32)`` in row order."""
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN")
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'snapshot'").fetchone()
            if row is None or not self._has_table("snapshot_rows"):
                return None
            # inserted in row order: rowid order is row order (sorted here only if not)
            entries = self.conn.execute("SELECT name, slot, start, n, ids, crc32 FROM snapshot_rows").fetchall()
            if any(a[2] > b[2] for a, b in zip(entries, entries[1:])):
                entries.sort(key=lambda e: e[2])
            return json.loads(row[0]), entries
        except (ValueError, sqlite3.DatabaseError) as exc:
            raise GalleryError(f"corrupt snapshot record: {exc!r}", path=self.path) from None
        finally:
            if own:
                self.conn.execute("COMMIT")

    def snapshot_info(self) -> dict | None:
        """Inside :meth:`transaction`: the published snapshot's record, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'snapshot'").fetchone()
        return None if row is None or not self._has_table("snapshot_rows") else json.loads(row[0])

    def snapshot_extent(self, name: str) -> tuple[int, int, int] | None:
        """Inside :meth:`transaction`: ``(slot, start, n)`` of ``name`` in the published snapshot, or None."""
        return self.conn.execute("SELECT slot, start, n FROM snapshot_rows WHERE name = ?", (name,)).fetchone()

    def verify(self) -> int:
        """Check every row's CRC (GalleryError naming the first bad one); returns the rows checked."""
        n = 0
        for name, blob, sums, ids_text, crc in self.conn.execute("SELECT name, embeddings, sums, ids, crc32 "
                                                                 "FROM speakers"):
            self._check_row(name, ids_text, blob, sums, crc)
            n += 1
        return n

    def publish_snapshot(self, info: dict, entries: list[tuple]) -> None:
        """Inside :meth:`transaction`: make ``info`` / ``entries`` the published snapshot (replacing any)."""
        self.conn.execute(_SNAPSHOT_SCHEMA)
        self.conn.execute("DELETE FROM snapshot_rows")
        self.conn.executemany("INSERT INTO snapshot_rows(name, slot, start, n, ids, crc32) VALUES (?, ?, ?, ?, ?, ?)",
                              entries)
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('snapshot', ?)", (json.dumps(info),))

    def set_threshold(self, threshold: float | None) -> None:
        with self.transaction():
            self._set("threshold", threshold)
            self._bump("seq")

    def truncate_log(self, tries: int = 150) -> bool:
        """Checkpoint the write-ahead log into the database and truncate it to 0 bytes, so content deleted
        from the database is gone from the log too; True when it completed (readers can delay it: tried for
        3 s, the length of another process's background check after opening a 1M gallery)."""
        import time

        for _ in range(tries):
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.conn.close()
