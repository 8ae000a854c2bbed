"""A memory-mapped snapshot of a SQLite gallery's embeddings (``G.db-snapSEQ`` beside ``G.db``), so that opening
a large gallery maps its rows instead of fetching them.

Why (measured at 1M utterances, ``benchmarks/gallery_scale.py``): opening by fetching every row took 5-6 s, of
which SQLite's own read of the 1 GB of blobs was 0.3 s; the rest was filling 1.25 GB of fresh memory (a page
fault and zeroing per 4 KiB), copying into it, and the CRCs. A file that lies in the page cache is mapped
without either copy and without fresh pages.

The file: ``rows x D`` float32 (each speaker's rows contiguous, in slot order, then zeros: spare rows for
later enrolments, a sparse hole on disk), then ``slots x D`` float64 per-speaker sums (the centroids). Where each
speaker lies (slot, first row, count), its utterance ids and a CRC-32 of name, ids, rows and sum bytes (the
digest of :func:`~spkid.search.sqlite_store.row_digest`) are in the database table ``snapshot_rows``; the file's
name, its ``seq`` and ``removals`` and its shape in ``meta`` key ``snapshot``. :meth:`Gallery.snapshot
<spkid.search.gallery.Gallery.snapshot>` writes the file (temporary name, fsync, rename) and publishes it in
one transaction under the write lock; opening writes one itself when it read :data:`AUTO_ROWS` or more rows
from the database instead.

- **opening** maps the file copy-on-write (what the process then writes stays in its memory), checks every
  speaker's CRC, takes the rows as the index's storage and then reads from the database only what changed
  since: rows with ``version > seq``, names when ``removals`` moved. A snapshot never has to be current.
- **checksums**, checked in a background thread after opening returns (answers given before it is done, about
  half a second at 1M utterances, use the bytes as mapped): a speaker whose snapshot bytes fail their CRC (a
  corrupted byte, a removal killed before its commit) is read from the database instead (its row checked
  there), with a warning naming the file; then every database row the snapshot covers is checked too, and a
  failing one makes every later read or write of that gallery raise GalleryError naming ``G.db`` and the
  speaker, as opening it by reading every row would have.
- **erasure**: a removal zeroes the speaker's rows and sum in the file and fsyncs it, and deletes every
  snapshot file not published (an older one, one whose writer was killed), before its transaction commits.
- **several processes**: the table changes in the same transactions as the speakers, so it never names a
  removed speaker; a process that mapped an older file keeps its (unlinked) mapping until it reopens.
"""
from __future__ import annotations

import glob
import os
import sqlite3
import threading
import warnings
from pathlib import Path

import numpy as np

from spkid.errors import GalleryError
from spkid.fileio import atomic_write
from spkid.search.live_index import LiveIndex
from spkid.search.sqlite_store import row_digest

__all__ = ["AUTO_ROWS", "snapshot_file", "drop_stale", "write_snapshot", "Verification", "open_snapshot",
           "zero_extent"]

AUTO_ROWS = 100_000  # opening read at least this many rows from the database: write a snapshot
_CHUNK = 65_536  # rows gathered per write


def snapshot_file(db: Path, seq: int) -> Path:
    return db.with_name(f"{db.name}-snap{int(seq)}")


def drop_stale(db: Path, keep: str | None) -> None:
    """Delete every snapshot file of ``db`` but ``keep`` (a name), temporary ones of a killed writer included."""
    for pattern in (f"{glob.escape(db.name)}-snap*", f".{glob.escape(db.name)}-snap*"):
        for f in db.parent.glob(pattern):
            if f.name != keep:
                f.unlink(missing_ok=True)


def _views(mm, info: dict) -> tuple[np.ndarray, np.ndarray]:
    d, cap_r = info["dim"], info["rows"]
    rows = np.ndarray((cap_r, d), "<f4", buffer=mm, offset=0)
    sums = np.ndarray((info["slots"], d), "<f8", buffer=mm, offset=cap_r * d * 4)
    return rows, sums


def write_snapshot(db: Path, live: LiveIndex, seq: int, removals: int) -> tuple[dict, list[tuple]]:
    """Write ``live``'s speakers to a new snapshot file of ``db``; ``(info, entries)`` to publish with
    :meth:`~spkid.search.sqlite_store.SQLiteStore.publish_snapshot`."""
    slots = [j for j in range(live.n_slots) if live.slot_names[j] is not None]
    counts = live.slot_count[slots]
    n, s, d = int(counts.sum()), len(slots), live.dim
    info = {"file": snapshot_file(db, seq).name, "seq": int(seq), "removals": int(removals), "dim": d,
            "rows": n + max(n // 4, 1024), "slots": s + max(s // 4, 256)}
    order = np.concatenate([np.asarray(live.slot_rows[j], np.int64) for j in slots])
    packed = bool(order.size) and order[0] == 0 and order[-1] == n - 1 and bool((np.diff(order) == 1).all())

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            for a in range(0, n, _CHUNK):
                part = live.rows[a : min(a + _CHUNK, n)] if packed else live.rows[order[a : a + _CHUNK]]
                fh.write(np.ascontiguousarray(part, "<f4").data)
            fh.seek(info["rows"] * d * 4)
            fh.write(np.ascontiguousarray(live.slot_sum[slots], "<f8").data)
            fh.truncate((info["rows"] * d * 4) + info["slots"] * d * 8)

    path = atomic_write(snapshot_file(db, seq), fill)
    rows, sums = _views(np.memmap(path, np.uint8, mode="r"), info)  # digests of what the file holds
    entries, start = [], 0
    for j, (slot, k) in enumerate(zip(slots, counts.tolist())):
        name = live.slot_names[slot]
        ids = "\n".join(live.row_ids[i] for i in live.slot_rows[slot])
        entries.append((name, j, start, k, ids, row_digest(name, ids, rows[start : start + k], sums[j])))
        start += k
    return info, entries


class Verification:
    """The checksums behind a snapshot open, in a background thread: first every mapped speaker's CRC (zlib
    releases the GIL over the rows, so it runs beside the caller on another core), then the CRC of every
    database row the snapshot covers (``version <= seq``, on its own connection), which opening did not read.
    :meth:`result` gives the speakers whose snapshot bytes failed; :attr:`db_error` names a failing database row."""

    def __init__(self, db: Path, path: Path, rows: np.ndarray, sums: np.ndarray, info: dict, entries: list[tuple]):
        self.db, self.path, self.db_error = db, path, None
        self._bad, self._failure, self._stop = None, None, False
        self._thread = threading.Thread(target=self._run, args=(rows, sums, info, entries), daemon=True,
                                        name="spkid-snapshot-verify")
        self._thread.start()

    def _run(self, rows, sums, info, entries) -> None:
        try:
            bad = []
            for name, slot, start, k, ids, crc in entries:
                if self._stop:
                    return
                if not (0 <= start and start + k <= info["rows"] and 0 <= slot < info["slots"]
                        and row_digest(name, ids, rows[start : start + k], sums[slot]) == crc):
                    bad.append(name)
            con = sqlite3.connect(self.db, timeout=60)
            try:
                for name, blob, sum_blob, ids, crc in con.execute(
                        "SELECT name, embeddings, sums, ids, crc32 FROM speakers WHERE version <= ?", (info["seq"],)):
                    if self._stop:
                        return
                    if row_digest(name, ids, blob, sum_blob) != crc:
                        self.db_error = name
                        break
            finally:
                con.close()
            self._bad = bad
        except Exception as exc:  # noqa: BLE001 - handed to the caller by result()
            self._failure = exc

    def result(self, wait: bool = False) -> list[str] | None:
        """The speakers whose snapshot bytes fail their checksum; None while still checking (``wait``: block)."""
        if wait:
            self._thread.join()
        if self._failure is not None:
            raise GalleryError(f"checking the snapshot failed: {self._failure!r}", path=self.path)
        return None if self._thread.is_alive() else self._bad

    def cancel(self) -> None:
        self._stop = True
        self._thread.join()


def open_snapshot(db: Path, info: dict, entries: list[tuple], dim: int, mode: str):
    """``(index, Verification)`` from the published snapshot, or None when its file is missing or of another
    shape (then the caller reads everything). The index holds every speaker of ``entries``, its checksums are
    being checked in the background: the caller replaces those that fail from the database."""
    path = db.with_name(info["file"])
    size = info["rows"] * dim * 4 + info["slots"] * dim * 8
    try:
        mm = np.memmap(path, np.uint8, mode="c")
    except (OSError, ValueError):
        return None
    if info.get("dim") != dim or mm.size != size:
        warnings.warn(f"{path}: snapshot of {mm.size} bytes, expected {size} (dimension {dim}); not used",
                      RuntimeWarning, stacklevel=3)
        return None
    rows, sums = _views(mm, info)
    check = Verification(db, path, rows, sums, info, entries)  # also names the entries outside the file
    entries = [e for e in entries if 0 <= e[2] and e[2] + e[3] <= info["rows"] and 0 <= e[1] < info["slots"]]
    if not entries:
        return None, check
    segments, pos = [], 0
    for _, _, start, k, ids, _ in entries:  # in row order: the ids of every row, "" for dead ones
        if start > pos:
            segments.append("\n" * (start - pos - 1))
        segments.append(ids)
        pos = start + k
    live = LiveIndex(dim, mode)
    layout = (np.array([e[2] for e in entries], np.int64), np.array([e[1] for e in entries], np.int64), pos)
    live.add_bulk([e[0] for e in entries], np.array([e[3] for e in entries], np.int64), rows,
                  "\n".join(segments).split("\n"), sums, layout=layout)
    return live, check


def zero_extent(db: Path, info: dict, slot: int, start: int, n: int) -> None:
    """Overwrite a speaker's rows and sum in the snapshot file with zeros and fsync it (erasure)."""
    d = info["dim"]
    try:
        fh = open(db.with_name(info["file"]), "r+b")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(start * d * 4)
        fh.write(bytes(n * d * 4))
        fh.seek(info["rows"] * d * 4 + slot * d * 8)
        fh.write(bytes(d * 8))
        fh.flush()
        os.fsync(fh.fileno())
