"""Building and merging wave stores (:mod:`spkid.data.waves` has the layout and the reader).

:func:`build_wave_store` decodes the utterances of a manifest in order (``workers > 1``: a process pool,
results taken in order) and appends each to the current shard, which streams to a temporary file in
``ROOT``. A shard is closed once it holds ``shard_samples`` samples or more: its .npy header is written,
the file fsync'ed and renamed to ``shard-NNNNN.npy``, then its journal ``.build/shard-NNNNN.json``
(the relpaths it consumed, failed ones included, and the offset, length and sha256 of each stored
one) is written atomically. ``index.npz`` and then ``waves.json`` are written last, atomically.

The same builder writes feature stores (:mod:`spkid.data.featstore`): a :class:`StoreKind` says what a
store holds (its class, rows, header fields) and which worker function turns an utterance into rows.

A rerun after a crash (even ``kill -9``) keeps the leading shards whose journal matches the utterances
the manifest puts there and whose file matches the journal's sha256, without decoding them again;
the first shard that does not, every later one and any temporary file are discarded. Unreadable audio
files are reported in :attr:`WaveBuildReport.failed` and skipped. One builder per folder (file lock).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from spkid.audio.io import load_audio
from spkid.errors import CacheError, ConfigError, SpkidError
from spkid.fileio import atomic_write, atomic_write_text, read_json_file
from spkid.data.cache import _check_shard, _pool_context, in_shard
from spkid.data.manifest import Manifest
from spkid.data.waves import DTYPES, INDEX_FILE, INT16_SCALE, WAVE_FORMAT_VERSION, WaveStore, file_sha256, shard_name

__all__ = ["WaveBuildReport", "StoreKind", "build_store", "build_wave_store",
           "DEFAULT_SHARD_SAMPLES", "DEFAULT_SHARD_BYTES", "wave_kind"]

DEFAULT_SHARD_BYTES = 1 << 27  # 128 MiB a shard
DEFAULT_SHARD_SAMPLES = DEFAULT_SHARD_BYTES // 2  # ~70 min at 16 kHz as int16
_JOURNAL = "spkid-wave-journal"
_NPY_HEADER = 128  # bytes reserved for the .npy header of a streamed shard


@dataclasses.dataclass
class WaveBuildReport:
    """Outcome of :func:`build_wave_store`: utterances decoded now, reused from kept shards, failures."""

    decoded: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    shards_written: int = 0
    shards_kept: int = 0
    n_samples: int = 0  # rows stored: samples of a wave store, frames of a feature store
    unit: str = "samples"

    @property
    def usable(self) -> int:
        return self.decoded + self.reused

    def summary(self) -> str:
        return (f"decoded {self.decoded}, reused {self.reused} (from {self.shards_kept} kept shards), failed "
                f"{len(self.failed)}; {self.shards_written} shards written, {self.n_samples} {self.unit} in all")


@dataclasses.dataclass(frozen=True)
class StoreKind:
    """What a store holds: its reader class (header file and format), rate and stored dtype, the trailing
    shape of a row, extra header fields (also checked against a kept shard's journal), and the picklable
    worker ``produce((source_root, relpath, *params)) -> (relpath, rows | None, failure reason)``."""

    cls: type
    sr: int
    dtype: str
    produce: Callable
    params: tuple
    row_shape: tuple = ()
    extra: dict | None = None

    @property
    def row_bytes(self) -> int:
        return DTYPES[self.dtype].itemsize * int(np.prod(self.row_shape, dtype=np.int64))


def wave_kind(sr: int, dtype: str) -> StoreKind:
    """The kind of a wave store: samples at ``sr`` stored as ``dtype``."""
    return StoreKind(WaveStore, sr, dtype, _decode_one, (sr, dtype))


def quantize(y: np.ndarray, dtype: str) -> np.ndarray:
    """Float samples -> the stored little-endian dtype (int16: ``round(y * 32767)`` clipped)."""
    if dtype == "int16":
        return np.clip(np.rint(y * INT16_SCALE), -INT16_SCALE, INT16_SCALE).astype("<i2")
    return np.ascontiguousarray(y, dtype="<f4")


def _decode_one(job: tuple[str, str, int, str]) -> tuple[str, np.ndarray | None, str]:
    """Worker: (audio root, relpath, sr, dtype) -> (relpath, stored samples or None, failure reason)."""
    root, relpath, sr, dtype = job
    try:
        q = quantize(load_audio(Path(root) / relpath, sr=sr, min_duration=0.0), dtype)
    except SpkidError as exc:
        return relpath, None, exc.problem
    except Exception as exc:  # never abort the build: report and go on
        return relpath, None, f"{type(exc).__name__}: {exc}"
    return relpath, q, ""


def _npy_header(dtype: np.dtype, n: int, row_shape: tuple = ()) -> bytes:
    """A .npy v1.0 header of exactly :data:`_NPY_HEADER` bytes for an array of ``n`` rows of ``row_shape``."""
    shape = str((n, *row_shape))
    body = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype.str, shape)).encode("latin1")
    pad = _NPY_HEADER - 10 - len(body) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _NPY_HEADER - 10) + body + b" " * pad + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ShardWriter:
    """Streams the utterances of one shard to a temporary file; :meth:`close` publishes it."""

    def __init__(self, root: Path, number: int, kind: "StoreKind"):
        self.root, self.number, self.kind = root, number, kind
        self.dtype, self.row_shape = DTYPES[kind.dtype], tuple(kind.row_shape)
        fd, tmp = tempfile.mkstemp(prefix=f".{shard_name(number)}.", suffix=".tmp", dir=root)
        self.tmp, self.fh = Path(tmp), os.fdopen(fd, "wb")
        self.fh.write(b"\0" * _NPY_HEADER)
        self.n = 0
        self.consumed: list[str] = []
        self.stored: list[list] = []  # [relpath, offset, length, sha256]
        self.failed: list[list[str]] = []

    def add(self, relpath: str, q: np.ndarray | None, reason: str) -> None:
        self.consumed.append(relpath)
        if q is None:
            self.failed.append([relpath, reason])
            return
        if q.shape[1:] != self.row_shape:
            raise CacheError(f"rows of shape {q.shape[1:]} in a store of {self.row_shape} rows", path=relpath)
        data = np.ascontiguousarray(q, dtype=self.dtype).tobytes()
        self.fh.write(data)
        self.stored.append([relpath, self.n, int(q.shape[0]), hashlib.sha256(data).hexdigest()])
        self.n += int(q.shape[0])

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def close(self) -> dict:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.n, self.row_shape))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.tmp, 0o666 & ~mask)
        final = self.root / shard_name(self.number)
        journal = {"format": _JOURNAL, "version": 1, "sr": self.kind.sr, "dtype": self.kind.dtype, "file": final.name,
                   "n_samples": self.n, "sha256": file_sha256(self.tmp, "shard"), "consumed": self.consumed,
                   "stored": self.stored, "failed": self.failed, "extra": self.kind.extra}
        os.replace(self.tmp, final)
        _fsync_dir(self.root)
        atomic_write_text(_journal_path(self.root, self.number), json.dumps(journal) + "\n")
        return journal


def _journal_path(root: Path, number: int) -> Path:
    return root / ".build" / f"shard-{number:05d}.json"


def _kept_journal(root: Path, number: int, kind: StoreKind, expect: list[str]) -> dict | None:
    """The journal of shard ``number`` if it and its shard file are intact and hold the next
    utterances ``expect`` starts with, else None."""
    path = _journal_path(root, number)
    if not path.exists():
        return None
    try:
        j = read_json_file(path, "wave build journal", CacheError)
        if not (isinstance(j, dict) and j.get("format") == _JOURNAL and j.get("version") == 1
                and j.get("sr") == kind.sr and j.get("dtype") == kind.dtype and j.get("extra") == kind.extra
                and j.get("file") == shard_name(number)):
            return None
        consumed = j["consumed"]
        if not consumed or consumed != expect[:len(consumed)]:
            return None
        if file_sha256(root / j["file"], "shard") != j["sha256"]:
            return None
        stored = [tuple(r) for r in j["stored"]]
        if sum(r[2] for r in stored) != j["n_samples"] or not stored:
            return None
    except (CacheError, KeyError, TypeError, IndexError):
        return None
    return j


def _clean(root: Path, first_dropped: int) -> None:
    """Remove temporary files and every shard / journal numbered ``first_dropped`` or above."""
    for p in list(root.iterdir()) + (list((root / ".build").iterdir()) if (root / ".build").is_dir() else []):
        name = p.name
        if name.startswith(".shard-") and name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        elif name.startswith("shard-") and name.endswith((".npy", ".json")):
            try:
                number = int(name[len("shard-"):].split(".")[0])
            except ValueError:
                continue
            if number >= first_dropped:
                p.unlink(missing_ok=True)


def _write_store(root: Path, kind: StoreKind, speakers: list[str], shards: list[dict], rows: list[tuple],
                 shard: tuple[int, int] | None) -> None:
    """Write ``index.npz`` then the header (``waves.json``) atomically. ``rows``: (relpath, split, speaker, shard,
    offset, length, sha256)."""
    cols = list(zip(*rows)) if rows else [[]] * 7
    arrays = {
        "relpath": np.asarray(cols[0], dtype=str), "split": np.asarray(cols[1], dtype=str),
        "speaker": np.asarray(cols[2], dtype=str), "shard": np.asarray(cols[3], dtype=np.int64),
        "offset": np.asarray(cols[4], dtype=np.int64), "length": np.asarray(cols[5], dtype=np.int64),
        "sha256": np.asarray(cols[6], dtype="S64"),
    }

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(root / INDEX_FILE, write)
    header = {"format": kind.cls.FORMAT, "format_version": WAVE_FORMAT_VERSION, "sr": kind.sr, "dtype": kind.dtype,
              **(kind.extra or {}),
              "speakers": sorted(set(speakers)), "shard": list(shard) if shard else None,
              "shards": [{"file": s["file"], "n_samples": s["n_samples"], "sha256": s["sha256"]} for s in shards],
              "index": {"file": INDEX_FILE, "n_utterances": len(rows),
                        "sha256": file_sha256(root / INDEX_FILE, "wave store index")}}
    atomic_write_text(root / kind.cls.HEADER_FILE, json.dumps(header, indent=1) + "\n")


def _check_options(sr, dtype, shard_samples, workers) -> None:
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise ConfigError(f"sr must be a positive int (Hz), got {sr!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if isinstance(shard_samples, bool) or not isinstance(shard_samples, int) or shard_samples < 1:
        raise ConfigError(f"shard_samples must be an int >= 1, got {shard_samples!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1, got {workers!r}")


def build_wave_store(
    manifest: Manifest,
    root: str | os.PathLike,
    *,
    sr: int = 16000,
    dtype: str = "int16",
    shard_samples: int = DEFAULT_SHARD_SAMPLES,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
) -> WaveBuildReport:
    """Decode (and resample to ``sr``) the utterances of ``manifest`` into a wave store at ``root``.

    ``shard=(i, n)`` stores only the utterances :func:`~spkid.data.cache.in_shard` gives machine ``i``;
    combine the n roots with :func:`~spkid.data.store_merge.merge_wave_stores`. The store's speakers are the manifest's (all of
    them, so every shard root labels alike). Resumable and crash-safe (see the module docstring).
    """
    _check_options(sr, dtype, shard_samples, workers)
    return build_store(manifest, root, wave_kind(sr, dtype), shard_rows=shard_samples, workers=workers,
                       shard=shard, progress=progress)


def build_store(manifest: Manifest, root: str | os.PathLike, kind: StoreKind, *, shard_rows: int | None = None,
                workers: int = 1, shard: tuple[int, int] | None = None, progress: bool = False,
                source_root: str | os.PathLike | None = None, desc: str = "storing waves") -> WaveBuildReport:
    """Store the utterances of ``manifest`` (read from ``source_root``, default its audio root) as ``kind``
    says, in shards of ``shard_rows`` rows (default about :data:`DEFAULT_SHARD_BYTES`); see
    :func:`build_wave_store` for ``workers`` and ``shard``."""
    shard_rows = shard_rows or max(1, DEFAULT_SHARD_BYTES // kind.row_bytes)
    _check_options(kind.sr, kind.dtype, shard_rows, workers)
    shard = _check_shard(shard)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".build").mkdir(exist_ok=True)
    jobs = [u for u in manifest if in_shard(u.path, shard)]
    order = [u.path for u in jobs]
    by_path = {u.path: u for u in jobs}
    report = WaveBuildReport(unit="frames" if kind.row_shape else "samples")
    from filelock import FileLock

    with FileLock(str(root / ".waves.lock")):
        kept, pos = [], 0
        while pos < len(order):
            j = _kept_journal(root, len(kept), kind, order[pos:])
            if j is None:
                break
            kept.append(j)
            pos += len(j["consumed"])
        if pos < len(order) or (root / kind.cls.HEADER_FILE).exists():
            for name in (kind.cls.HEADER_FILE, INDEX_FILE):  # the old header may name shards about to change
                (root / name).unlink(missing_ok=True)
        _clean(root, len(kept))
        report.shards_kept = len(kept)
        for j in kept:
            report.reused += len(j["stored"])
            report.failed.extend((r, f"{m} (in an earlier run)") for r, m in j["failed"])
        shards = list(kept)
        audio_root = str(Path(source_root or manifest.root).resolve())
        todo = [(audio_root, p, *kind.params) for p in order[pos:]]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="utt", disable=not progress, file=sys.stderr)
        writer: _ShardWriter | None = None
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) if workers > 1 and len(todo) > 1 else None
        try:
            results = (pool.map(kind.produce, todo, chunksize=max(1, min(16, len(todo) // (workers * 8))))
                       if pool else map(kind.produce, todo))
            for relpath, q, reason in results:
                if writer is None:
                    writer = _ShardWriter(root, len(shards), kind)
                writer.add(relpath, q, reason)
                if q is None:
                    report.failed.append((relpath, reason))
                else:
                    report.decoded += 1
                if writer.n >= shard_rows:
                    shards.append(writer.close())
                    report.shards_written += 1
                    writer = None
                bar.update(1)
            if writer is not None and writer.n > 0:
                shards.append(writer.close())
                report.shards_written += 1
                writer = None
        finally:
            if writer is not None:
                writer.discard()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            bar.close()
        rows = []
        for k, j in enumerate(shards):
            for relpath, offset, length, digest in j["stored"]:
                u = by_path[relpath]
                rows.append((relpath, u.split, u.speaker, k, offset, length, digest))
        report.n_samples = sum(j["n_samples"] for j in shards)
        _write_store(root, kind, manifest.speakers, shards, rows, shard)
    return report
