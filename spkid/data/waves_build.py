"""Building and merging wave stores (:mod:`spkid.data.waves` has the layout and the reader).

:func:`build_wave_store` decodes the utterances of a manifest in order (``workers > 1``: a process pool,
results taken in order) and appends each to the current shard, which streams to a temporary file in
``ROOT``. A shard is closed once it holds ``shard_samples`` samples or more: its .npy header is written,
the file fsync'ed and renamed to ``shard-NNNNN.npy``, then its journal ``.build/shard-NNNNN.json``
(the relpaths it consumed, failed ones included, and the offset, length and sha256 of each stored
one) is written atomically. ``index.npz`` and then ``waves.json`` are written last, atomically.

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
import shutil
import struct
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from spkid.audio.io import load_audio
from spkid.errors import CacheError, ConfigError, SpkidError
from spkid.fileio import atomic_write, atomic_write_text, read_json_file
from spkid.data.cache import _check_shard, _pool_context, in_shard
from spkid.data.manifest import Manifest
from spkid.data.waves import (DTYPES, HEADER_FILE, INDEX_FILE, INT16_SCALE, WAVE_FORMAT, WAVE_FORMAT_VERSION,
                              WaveStore, file_sha256, shard_name)

__all__ = ["WaveBuildReport", "build_wave_store", "merge_wave_stores", "DEFAULT_SHARD_SAMPLES"]

DEFAULT_SHARD_SAMPLES = 1 << 26  # ~70 min at 16 kHz, 128 MiB as int16
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
    n_samples: int = 0

    @property
    def usable(self) -> int:
        return self.decoded + self.reused

    def summary(self) -> str:
        return (f"decoded {self.decoded}, reused {self.reused} (from {self.shards_kept} kept shards), failed "
                f"{len(self.failed)}; {self.shards_written} shards written, {self.n_samples} samples in all")


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


def _npy_header(dtype: np.dtype, n: int) -> bytes:
    """A .npy v1.0 header of exactly :data:`_NPY_HEADER` bytes for a 1-D array of ``n`` items."""
    body = ("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (dtype.str, n)).encode("latin1")
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

    def __init__(self, root: Path, number: int, dtype: str):
        self.root, self.number, self.dtype = root, number, DTYPES[dtype]
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
        data = q.tobytes()
        self.fh.write(data)
        self.stored.append([relpath, self.n, int(q.shape[0]), hashlib.sha256(data).hexdigest()])
        self.n += int(q.shape[0])

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def close(self, sr: int, dtype: str) -> dict:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.n))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.tmp, 0o666 & ~mask)
        final = self.root / shard_name(self.number)
        journal = {"format": _JOURNAL, "version": 1, "sr": sr, "dtype": dtype, "file": final.name,
                   "n_samples": self.n, "sha256": file_sha256(self.tmp, "shard"), "consumed": self.consumed,
                   "stored": self.stored, "failed": self.failed}
        os.replace(self.tmp, final)
        _fsync_dir(self.root)
        atomic_write_text(_journal_path(self.root, self.number), json.dumps(journal) + "\n")
        return journal


def _journal_path(root: Path, number: int) -> Path:
    return root / ".build" / f"shard-{number:05d}.json"


def _kept_journal(root: Path, number: int, sr: int, dtype: str, expect: list[str]) -> dict | None:
    """The journal of shard ``number`` if it and its shard file are intact and hold the next
    utterances ``expect`` starts with, else None."""
    path = _journal_path(root, number)
    if not path.exists():
        return None
    try:
        j = read_json_file(path, "wave build journal", CacheError)
        if not (isinstance(j, dict) and j.get("format") == _JOURNAL and j.get("version") == 1
                and j.get("sr") == sr and j.get("dtype") == dtype and j.get("file") == shard_name(number)):
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


def _write_store(root: Path, sr: int, dtype: str, speakers: list[str], shards: list[dict], rows: list[tuple],
                 shard: tuple[int, int] | None) -> None:
    """Write ``index.npz`` then ``waves.json`` atomically. ``rows``: (relpath, split, speaker, shard,
    offset, length, sha256)."""
    cols = list(zip(*rows)) if rows else [[]] * 7
    arrays = {
        "relpath": np.asarray(cols[0], dtype=str), "split": np.asarray(cols[1], dtype=str),
        "speaker": np.asarray(cols[2], dtype=str), "shard": np.asarray(cols[3], dtype=np.int64),
        "offset": np.asarray(cols[4], dtype=np.int64), "length": np.asarray(cols[5], dtype=np.int64),
        "sha256": np.asarray(cols[6], dtype=str),
    }

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(root / INDEX_FILE, write)
    header = {"format": WAVE_FORMAT, "format_version": WAVE_FORMAT_VERSION, "sr": sr, "dtype": dtype,
              "speakers": sorted(set(speakers)), "shard": list(shard) if shard else None,
              "shards": [{"file": s["file"], "n_samples": s["n_samples"], "sha256": s["sha256"]} for s in shards],
              "index": {"file": INDEX_FILE, "n_utterances": len(rows),
                        "sha256": file_sha256(root / INDEX_FILE, "wave store index")}}
    atomic_write_text(root / HEADER_FILE, json.dumps(header, indent=1) + "\n")


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
    combine the n roots with :func:`merge_wave_stores`. The store's speakers are the manifest's (all of
    them, so every shard root labels alike). Resumable and crash-safe (see the module docstring).
    """
    _check_options(sr, dtype, shard_samples, workers)
    shard = _check_shard(shard)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".build").mkdir(exist_ok=True)
    jobs = [u for u in manifest if in_shard(u.path, shard)]
    order = [u.path for u in jobs]
    by_path = {u.path: u for u in jobs}
    report = WaveBuildReport()
    from filelock import FileLock

    with FileLock(str(root / ".waves.lock")):
        kept, pos = [], 0
        while pos < len(order):
            j = _kept_journal(root, len(kept), sr, dtype, order[pos:])
            if j is None:
                break
            kept.append(j)
            pos += len(j["consumed"])
        if pos < len(order) or (root / HEADER_FILE).exists():
            for name in (HEADER_FILE, INDEX_FILE):  # the old header may name shards about to change
                (root / name).unlink(missing_ok=True)
        _clean(root, len(kept))
        report.shards_kept = len(kept)
        for j in kept:
            report.reused += len(j["stored"])
            report.failed.extend((r, f"{m} (in an earlier run)") for r, m in j["failed"])
        shards = list(kept)
        audio_root = str(Path(manifest.root).resolve())
        todo = [(audio_root, p, sr, dtype) for p in order[pos:]]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="storing waves", unit="utt", disable=not progress, file=sys.stderr)
        writer: _ShardWriter | None = None
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) if workers > 1 and len(todo) > 1 else None
        try:
            results = (pool.map(_decode_one, todo, chunksize=max(1, min(16, len(todo) // (workers * 8))))
                       if pool else map(_decode_one, todo))
            for relpath, q, reason in results:
                if writer is None:
                    writer = _ShardWriter(root, len(shards), dtype)
                writer.add(relpath, q, reason)
                if q is None:
                    report.failed.append((relpath, reason))
                else:
                    report.decoded += 1
                if writer.n >= shard_samples:
                    shards.append(writer.close(sr, dtype))
                    report.shards_written += 1
                    writer = None
                bar.update(1)
            if writer is not None and writer.n > 0:
                shards.append(writer.close(sr, dtype))
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
        _write_store(root, sr, dtype, manifest.speakers, shards, rows, shard)
    return report


def merge_wave_stores(dest: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> WaveStore:
    """Combine the stores ``sources`` (e.g. the roots of ``--shard I/N`` builds) into a new store ``dest``.

    Shards are hard-linked (copied across file systems) and checked against their sha256; indexes are
    concatenated in source order and speakers united. Mismatched sr or dtype, or an utterance in two
    sources, is a CacheError. ``dest`` must not already hold a finished store (leftovers of an
    interrupted merge are removed).
    """
    dest = Path(dest)
    if not sources:
        raise CacheError("merge_wave_stores needs at least one source store", path=dest)
    if (dest / HEADER_FILE).exists():
        raise CacheError("destination already holds a wave store; merge into a new folder", path=dest)
    stores = [WaveStore(s) for s in sources]
    first = stores[0]
    for s in stores[1:]:
        if (s.sr, s.dtype) != (first.sr, first.dtype):
            raise CacheError(f"cannot merge: store holds {s.sr} Hz {s.dtype}, {first.root} holds "
                             f"{first.sr} Hz {first.dtype}", path=s.root)
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
            rows.append((relpath, s.splits[i], s.speaker(i), base + int(s._shard[i]), int(s._offset[i]),
                         int(s.lengths[i]), s._sha[i]))
    _fsync_dir(dest)
    speakers = sorted(set().union(*(s.speakers for s in stores)))
    _write_store(dest, first.sr, first.dtype, speakers, shards, rows, None)
    return WaveStore(dest)
