"""Gallery storage in LanceDB (``G.lance``, a directory): the optional backend behind the same
:class:`~spkid.search.gallery.Gallery` API, for galleries that outgrow one SQLite file (needs the ``lancedb``
extra: ``pip install 'spkid[lancedb]'``, LanceDB's embedded engine and ``pylance``).

The directory holds a LanceDB table ``utterances`` -- a row per utterance: ``sid`` (a number per speaker,
in enrolment order), ``speaker``, ``utt`` (its id), ``seq`` (the write that added it), ``vector`` (``D`` float32, unit),
and per *chunk* (the rows one write added to one speaker) ``pos`` / ``n`` (place in it, its size) and
``crc32`` (of name, ids and vector bytes, :func:`~spkid.search.sqlite_store.row_digest`) -- and
``spkid-gallery.json``: format, dimension, threshold, the caller's metadata, ``seq``, ``removals``, the table
version it describes and a sha256 of itself.

- **commit point**: a write takes the directory's file lock, makes its one LanceDB commit (an append, or a
  delete), fsyncs the new files, then replaces ``spkid-gallery.json`` atomically (fsynced) to name the new table
  version. Readers read the table *at the version the json names*, so a write killed before the json
  (``kill -9``) is invisible, and the next writer restores the table to that version first.
- **several processes**: writers take turns on the lock; readers never wait, and catch up by the json's
  ``seq`` (rows with ``seq`` above theirs) and ``removals`` (names again), noticed by a ``stat`` of it.
  The lock is a local file lock: one machine, or a file system whose locks hold across machines.
- **erasure**: LanceDB keeps old versions and marks deleted rows in deletion files. A removal deletes by
  ``sid`` (so no name lands in the transaction log), rewrites every fragment that has deletions
  (``compact_files(materialize_deletions_threshold=0)``) and removes every older version and unreferenced
  file (``cleanup_old_versions(older_than=0, delete_unverified=True)``) before its commit point; the
  removed speaker's bytes are then gone from the directory (checked by ``tests/core/test_gallery_lance.py``).
- **checksums**: every chunk's CRC is checked when it is read (opening, catching up, :meth:`verify`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from spkid.errors import BackendError, GalleryError
from spkid.fileio import atomic_write_bytes
from spkid.search.sqlite_store import row_digest
from spkid.search.storage import header_digest

__all__ = ["FORMAT", "VERSION", "META_FILE", "read_header", "LanceStore"]

FORMAT = "spkid-gallery-lancedb"
VERSION = 1
META_FILE = "spkid-gallery.json"
TABLE = "utterances"
LOCK_TIMEOUT_S = 60
COMPACT_FRAGMENTS = 64  # more fragments than this (an append per enrolment): merge them
FRAGMENT_ROWS = 16_384  # rows per fragment (16 MiB at D = 256): what a removal rewrites per fragment it touches
_COLUMNS = ["sid", "speaker", "utt", "seq", "pos", "n", "crc32", "vector"]


def _modules():
    try:
        import lance
        import lancedb
    except ImportError:
        raise BackendError("a .lance gallery needs LanceDB: pip install 'spkid[lancedb]'") from None
    return lancedb, lance


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """``{path: (mtime_ns, size)}`` of every file under ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            out[os.path.join(folder, name)] = (st.st_mtime_ns, st.st_size)
    return out


def _fsync_changes(root: Path, before: dict[str, tuple[int, int]]) -> None:
    """fsync every file under ``root`` new or changed since ``before`` (LanceDB does not), and their folders."""
    changed = [p for p, stamp in _files(root).items() if before.get(p) != stamp]
    for path in changed + sorted({os.path.dirname(p) for p in changed} | {str(root)}):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_header(path: str | os.PathLike) -> dict:
    """The checked ``spkid-gallery.json`` of the LanceDB gallery ``path`` (plain JSON: no LanceDB needed, which
    is how ``spkid serve`` checks a gallery in gunicorn's arbiter, where lance must not start before the fork)."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        ok = isinstance(meta, dict) and meta.get("header_sha256") == header_digest(meta)
    except (OSError, ValueError, TypeError) as exc:
        raise GalleryError(f"cannot read {META_FILE}: {exc}", path=path) from None
    if not ok:
        raise GalleryError(f"{META_FILE} checksum mismatch (edited or corrupt)", path=path)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise GalleryError(f"not a {FORMAT} version {VERSION} gallery (format {meta.get('format')!r}, "
                           f"version {meta.get('version')!r})", path=path)
    thr = meta.get("threshold")
    if thr is not None and not (isinstance(thr, (int, float)) and math.isfinite(thr)):
        raise GalleryError(f"stored threshold must be a finite number or null, got {thr!r}", path=path)
    return meta


class LanceStore:
    """One process's handle on a LanceDB gallery directory (the same protocol as
    :class:`~spkid.search.sqlite_store.SQLiteStore`: header, transaction, begin_write / put / delete,
    rows_since / read_all / names, data_version, verify)."""

    def __init__(self, path: str | os.PathLike, *, create: bool, metadata: Mapping[str, Any] | None = None,
                 threshold: float | None = None):
        from filelock import FileLock

        self.path = Path(path)
        self._lancedb, self._lance = _modules()
        self._meta_path = self.path / META_FILE
        if not self._meta_path.exists():
            if not create:
                raise GalleryError("no such LanceDB gallery (no spkid-gallery.json in it)", path=self.path)
            if self.path.is_dir() and any(self.path.iterdir()):
                raise GalleryError(f"not a spkid gallery: a non-empty folder without {META_FILE}", path=self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path / ".lock"), timeout=LOCK_TIMEOUT_S)
        self._staged: dict | None = None
        self._sid: dict[str, int] = {}
        self._next_sid = 0
        self._cache: tuple | None = None
        if not self._meta_path.exists():
            try:
                meta = {"format": FORMAT, "version": VERSION, "dim": None, "threshold": threshold, "seq": 0,
                        "removals": 0, "table_version": None, "metadata": json.loads(json.dumps(dict(metadata or {})))}
            except (TypeError, ValueError) as exc:
                raise GalleryError(f"metadata is not JSON-serialisable: {exc}", path=self.path) from None
            with self._locked():
                if not self._meta_path.exists():
                    self._write_meta(meta)
        self._db = self._lancedb.connect(str(self.path))
        self.header()

    # ------------------------------------------------------------------ meta (the commit point)
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import Timeout

        try:
            with self._lock:
                yield
        except Timeout:
            raise GalleryError(f"cannot lock the gallery for writing within {LOCK_TIMEOUT_S} s",
                               path=self.path) from None

    def _write_meta(self, meta: dict) -> None:
        meta = {k: v for k, v in meta.items() if k != "header_sha256"}
        meta["header_sha256"] = header_digest(meta)
        atomic_write_bytes(self._meta_path, json.dumps(meta, indent=1, sort_keys=True, allow_nan=False).encode())
        fd = os.open(self.path, os.O_RDONLY)  # the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._cache = None

    def data_version(self):
        """Moves when any process commits (the json is replaced): its inode and mtime."""
        st = os.stat(self._meta_path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def header(self) -> dict:
        """``{"dim", "threshold", "metadata", "seq", "removals", "table_version"}`` as committed now."""
        stamp = self.data_version()
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, read_header(self.path))
        return dict(self._cache[1])

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The directory's write lock; what is staged inside is committed at the end (one LanceDB commit, then the
        json), or dropped when it raises."""
        with self._locked():
            self._repair()
            self._staged = {"rows": [], "delete": [], "meta": {}}
            try:
                yield
            except BaseException:
                self._staged = None
                raise
            staged, self._staged = self._staged, None
            if staged["rows"] or staged["delete"] or staged["meta"]:
                self._commit(staged)

    def _table(self):
        return self._db.open_table(TABLE) if TABLE in self._db.list_tables().tables else None

    def _repair(self) -> None:
        """Under the lock: undo what a writer killed before its commit point left in the table."""
        meta, table = self.header(), self._table()
        want = meta["table_version"]
        if table is not None and want is None:
            self._db.drop_table(TABLE)  # a first write killed: its table is not committed
        elif table is None and want is not None:
            if meta["dim"] is not None:
                raise GalleryError(f"the LanceDB table {TABLE!r} that {META_FILE} names is missing", path=self.path)
            self._write_meta({**meta, "table_version": None})  # an empty table's re-creation was killed
        elif table is not None and table.version != want:
            try:
                table.restore(want)
            except Exception:  # noqa: BLE001 - the version is gone: a removal's erasure ran, its json did not
                meta.update(table_version=table.version, seq=meta["seq"] + 1, removals=meta["removals"] + 1)
                self._write_meta(meta)

    def _commit(self, staged: dict) -> None:
        meta = {**self.header(), **staged["meta"]}
        before = _files(self.path / f"{TABLE}.lance")
        table = self._table()
        if staged["rows"]:
            import pyarrow as pa

            dim = meta["dim"]
            schema = pa.schema([("sid", pa.int64()), ("speaker", pa.string()), ("utt", pa.string()),
                                ("seq", pa.int64()), ("pos", pa.int32()), ("n", pa.int32()), ("crc32", pa.int64()),
                                ("vector", pa.list_(pa.float32(), dim))])
            if table is not None and table.schema.field("vector").type.list_size != dim:
                self._db.drop_table(TABLE)  # emptied, and now a first write of another dimension
                table = None
            if table is None:
                table = self._db.create_table(TABLE, schema=schema)
            cols = {k: [] for k in _COLUMNS[:-1]}
            for name, sid, x, ids, seq in staged["rows"]:
                k = len(ids)
                for key, value in (("sid", [sid] * k), ("speaker", [name] * k), ("utt", ids), ("seq", [seq] * k),
                                   ("pos", range(k)), ("n", [k] * k),
                                   ("crc32", [row_digest(name, "\n".join(ids), x.tobytes(), b"")] * k)):
                    cols[key].extend(value)
            vec = np.concatenate([x for _, _, x, _, _ in staged["rows"]]).astype("<f4")
            cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim)
            data = pa.table(cols, schema=schema)
            for a in range(0, data.num_rows, FRAGMENT_ROWS):  # a commit each: only the json's counts
                table.add(data.slice(a, FRAGMENT_ROWS))
            if len(table.to_lance().get_fragments()) > COMPACT_FRAGMENTS:
                self._compact(table)
        if staged["delete"]:
            table.delete(f"sid IN ({', '.join(str(int(s)) for s in staged['delete'])})")
            self._compact(table)
            if table.count_rows() == 0:
                meta["dim"] = None  # the last speaker: the table stays, empty (no file holds a row)
        if table is not None:  # None: a threshold set on a gallery that has had no enrolment yet
            _fsync_changes(self.path / f"{TABLE}.lance", before)
        meta["table_version"] = None if table is None else table.version
        self._write_meta(meta)

    def _compact(self, table) -> None:
        """Rewrite fragments with deleted rows (and merge small ones), then delete every older version and every
        unreferenced file: the erasure of removed rows (under the lock: no writer is using an old version;
        readers of one retry at the new)."""
        ds = table.to_lance()
        ds.optimize.compact_files(target_rows_per_fragment=FRAGMENT_ROWS, materialize_deletions=True,
                                  materialize_deletions_threshold=0.0, num_threads=1)
        ds = self._lance.dataset(str(self.path / f"{TABLE}.lance"))
        ds.cleanup_old_versions(older_than=timedelta(0), delete_unverified=True)
        table.checkout_latest()

    def begin_write(self, dim: int) -> int:
        """Inside :meth:`transaction`: record ``dim`` (first write) and take the next seq."""
        meta = {**self.header(), **self._staged["meta"]}
        if meta["dim"] is None:
            self._staged["meta"]["dim"] = int(dim)
        self._staged["meta"]["seq"] = meta["seq"] + 1
        return meta["seq"] + 1

    def put(self, name: str, embeddings: np.ndarray, ids: list[str], sums: np.ndarray, seq: int, old: int = 0) -> None:
        """Inside :meth:`transaction`: stage speaker ``name``'s rows past the ``old`` already stored (an append)."""
        if not old:  # a new speaker (the gallery caught up under the lock, so every id in use is known): the next
            self._sid[name] = self._next_sid = max(self._next_sid, max(self._sid.values(), default=0)) + 1
        elif name not in self._sid:
            self._sid[name] = self._read(["sid"], f"speaker = {_quote(name)}")["sid"].to_pylist()[0]
        self._staged["rows"].append((name, self._sid[name], np.ascontiguousarray(embeddings[old:], "<f4"),
                                     [str(i) for i in ids[old:]], int(seq)))

    def delete(self, name: str) -> int:
        """Inside :meth:`transaction`: stage the removal of ``name`` (erased at the commit); the new seq."""
        found = set(self._read(["sid"], f"speaker = {_quote(name)}")["sid"].to_pylist())
        self._staged["delete"].extend(sorted(found))
        self._sid.pop(name, None)
        meta = {**self.header(), **self._staged["meta"]}
        self._staged["meta"].update(seq=meta["seq"] + 1, removals=meta["removals"] + 1)
        return meta["seq"] + 1

    def set_threshold(self, threshold: float | None) -> None:
        with self.transaction():
            self._staged["meta"].update(threshold=threshold, seq=self.header()["seq"] + 1)

    def truncate_log(self) -> bool:
        """Nothing left to do: a removal's erasure ran before its commit point."""
        return True

    # ------------------------------------------------------------------ reads
    def _read(self, columns: list[str], where: str | None = None, tries: int = 8):
        """Columns of the committed table version (an empty table when there is none). A removal's cleanup deletes
        the older versions just before its json names the new one: a read that lost its files waits for it."""
        import pyarrow as pa

        for attempt in range(tries):
            version = self.header()["table_version"]
            if version is None:
                return pa.table({c: pa.array([], pa.int64()) for c in columns})
            try:
                ds = self._lance.dataset(str(self.path / f"{TABLE}.lance"), version=version)
                return ds.to_table(columns=columns, filter=where)
            except Exception as exc:  # noqa: BLE001 - lance raises OSError / ValueError / its own kinds
                if attempt == tries - 1:
                    raise GalleryError(f"cannot read the LanceDB table: {exc}", path=self.path) from None
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def names(self) -> set[str]:
        return set(self._read(["speaker"])["speaker"].unique().to_pylist())

    def _grouped(self, table, dim: int):
        """``(names, counts, rows (n, D), ids)`` of an arrow table of utterance rows, grouped by speaker in
        enrolment order, every chunk's CRC and shape checked."""
        n = table.num_rows
        if not n:
            return [], np.zeros(0, np.int64), np.zeros((0, dim), np.float32), []
        sid, seq, pos, size, crc = (table[c].to_numpy() for c in ("sid", "seq", "pos", "n", "crc32"))
        order = np.lexsort((pos, seq, sid))
        flat = table["vector"].combine_chunks().values.to_numpy(zero_copy_only=False)
        if flat.size != n * dim:
            raise GalleryError(f"vectors of dimension {flat.size // n}, expected {dim}", path=self.path)
        if (order != np.arange(n)).any():
            rows = flat.reshape(n, dim)[order]
        else:  # in enrolment order already: the arrow buffer itself (read-only; the index copies when it grows)
            rows = flat.reshape(n, dim)
        ids = table["utt"].take(order).to_pylist()
        sid, seq, pos, size, crc = sid[order], seq[order], pos[order], size[order], crc[order]
        cut = np.flatnonzero((sid[1:] != sid[:-1]) | (seq[1:] != seq[:-1])) + 1
        chunks = np.concatenate([[0], cut, [n]]).astype(np.int64)
        first = np.concatenate([[0], np.flatnonzero(sid[1:] != sid[:-1]) + 1]).astype(np.int64)
        names = table["speaker"].take(order[first]).to_pylist()
        owner = dict(zip(first.tolist(), names))
        name = None
        for a, b in zip(chunks[:-1].tolist(), chunks[1:].tolist()):
            name = owner.get(a, name)
            if b - a != size[a] or (pos[a:b] != np.arange(b - a)).any() or \
                    row_digest(name, "\n".join(ids[a:b]), rows[a:b], b"") != crc[a]:
                raise GalleryError(f"checksum mismatch in the rows of speaker {name!r} (corrupt, edited or "
                                   f"incomplete)", path=self.path)
        self._sid.update(zip(names, sid[first].tolist()))
        counts = np.diff(np.concatenate([first, [n]])).astype(np.int64)
        return names, counts, rows, ids

    def rows_since(self, seq: int, dim: int | None, names=()) -> list[tuple[str, np.ndarray, list[str], np.ndarray]]:
        """``(name, (n, D) rows, ids, (D,) sum)`` of every speaker that has rows written after ``seq`` (and of
        ``names``), all their rows, checked."""
        where = f"seq > {int(seq)}" + "".join(f" OR speaker = {_quote(s)}" for s in names)
        touched = sorted(set(self._read(["sid"], where)["sid"].to_pylist()))
        if not touched:
            return []
        spk, counts, rows, ids = self._grouped(self._read(_COLUMNS, f"sid IN ({', '.join(map(str, touched))})"), dim)
        out, a = [], 0
        for name, k in zip(spk, counts.tolist()):
            out.append((name, rows[a : a + k], ids[a : a + k], rows[a : a + k].sum(axis=0, dtype=np.float64)))
            a += k
        return sorted(out, key=lambda r: r[0])

    def read_all(self, dim: int):
        """Every row, checked, for opening: ``(names, counts, rows (n, D), ids, None)`` (no spare rows, the index
        grows at the first enrolment; the sums are computed from the rows)."""
        names, counts, rows, ids = self._grouped(self._read(_COLUMNS), dim)
        return names, counts, rows, ids, None

    def verify(self) -> int:
        """Check every chunk's CRC now (GalleryError naming the directory on a mismatch); rows checked."""
        meta = self.header()
        return 0 if meta["dim"] is None else len(self._grouped(self._read(_COLUMNS), meta["dim"])[3])

    def close(self) -> None:
        self._db = None
