"""Waveform store for streaming training: decoded, resampled speech in a few large memory-mapped shards.

Layout of a store folder ``ROOT``::

    waves.json         {"format": "spkid-wave-store", "format_version": 1, "sr", "dtype" ("int16" | "float32"),
                        "speakers": [sorted ids], "shard": [i, n] | null (the --shard I/N it was built for),
                        "shards": [{"file", "n_samples", "sha256"}, ...],
                        "index": {"file": "index.npz", "n_utterances", "sha256"}}   -- written last
    index.npz          one row per utterance (np.savez, read with allow_pickle=False): relpath (str),
                       split (str), speaker (str), shard (int64), offset (int64), length (int64),
                       sha256 (64-byte ASCII hex digest of the utterance's stored sample bytes;
                       str in stores written before)
    shard-00000.npy    plain 1-D little-endian ``<i2`` or ``<f4`` .npy arrays: the utterances of the
    shard-00001.npy    shard concatenated back to back (an utterance never spans two shards)
    .build/shard-00000.json   build journal (:mod:`spkid.data.waves_build`): what each finished shard holds

int16 samples are ``round(y * 32767)`` clipped to +-32767 and read back as ``q / 32767``; float32 ones
are stored as decoded. :class:`WaveStore` checks the header and the index on open (format, version,
sha256 of the index, shard sizes, offsets that tile every shard exactly); :meth:`WaveStore.verify`
re-hashes the shards. Every problem is a :class:`~spkid.errors.CacheError` naming the file. Reads map
the shards with ``np.load(mmap_mode="r")`` and copy out only the slice asked for. The writer is
:func:`spkid.data.waves_build.build_wave_store`.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from spkid.errors import CacheError, ConfigError
from spkid.fileio import check_format, read_json_file
from spkid.data.manifest import SPLITS, Utterance

__all__ = [
    "WAVE_FORMAT",
    "WAVE_FORMAT_VERSION",
    "DTYPES",
    "INT16_SCALE",
    "WaveStore",
    "verify_wave_store",
    "shard_name",
    "file_sha256",
]

WAVE_FORMAT = "spkid-wave-store"
WAVE_FORMAT_VERSION = 1
DTYPES = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}
INT16_SCALE = 32767.0
HEADER_FILE = "waves.json"
INDEX_FILE = "index.npz"
INDEX_FIELDS = ("relpath", "split", "speaker", "shard", "offset", "length", "sha256")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHARD_NAME = re.compile(r"shard-\d{5,}\.npy")
_IS_HEX = np.zeros(256, dtype=bool)
_IS_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = True
_OPEN: dict = {}  # (class, folder, header file identity) -> a store opened by WaveStore.open


def shard_name(number: int) -> str:
    """File name of shard ``number``: ``shard-00000.npy``."""
    return f"shard-{number:05d}.npy"


def file_sha256(path: str | os.PathLike, what: str = "file") -> str:
    """Hex sha256 of a file, read in 4 MiB blocks; an unreadable file is a CacheError naming it."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    except OSError as exc:
        raise CacheError(f"cannot read {what}: {exc.strerror or exc}", path=path) from None
    return h.hexdigest()


# ------------------------------------------------------------------------------------ header and index
def _read_header(root: Path, header_file: str = HEADER_FILE, fmt: str = WAVE_FORMAT,
                 what: str = "wave store") -> dict:
    path = root / header_file
    if not path.exists():
        raise CacheError(f"not a {what} (no {header_file}); build it with `spkid prepare`", path=root)
    data = read_json_file(path, f"{what} header", CacheError)
    check_format(data, fmt, WAVE_FORMAT_VERSION, f"{what} header", error=CacheError, path=path,
                 version_key="format_version")
    sr, dtype, speakers = data.get("sr"), data.get("dtype"), data.get("speakers")
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise CacheError(f"bad sr {sr!r} in wave store header", path=path)
    if dtype not in DTYPES:
        raise CacheError(f"bad dtype {dtype!r} in wave store header (expected one of {sorted(DTYPES)})", path=path)
    if (not isinstance(speakers, list) or not all(isinstance(s, str) and s for s in speakers)
            or speakers != sorted(set(speakers))):
        raise CacheError("speakers in wave store header must be a sorted list of distinct ids", path=path)
    built = data.get("shard")
    if built is not None and not (isinstance(built, list) and len(built) == 2
                                  and all(isinstance(v, int) and not isinstance(v, bool) for v in built)
                                  and 0 <= built[0] < built[1]):
        raise CacheError(f"bad shard {built!r} in wave store header (expected null or [i, n])", path=path)
    shards, index = data.get("shards"), data.get("index")
    if not isinstance(shards, list) or not all(_shard_record_ok(s) for s in shards):
        raise CacheError("malformed shards list in wave store header", path=path)
    if len({s["file"] for s in shards}) != len(shards):
        raise CacheError("a shard file is listed twice in wave store header", path=path)
    if not (isinstance(index, dict) and index.get("file") == INDEX_FILE and _HEX64.fullmatch(str(index.get("sha256")))
            and isinstance(index.get("n_utterances"), int) and not isinstance(index.get("n_utterances"), bool)):
        raise CacheError("malformed index record in wave store header", path=path)
    return data


def _shard_record_ok(s: object) -> bool:
    return (isinstance(s, dict) and isinstance(s.get("file"), str) and bool(_SHARD_NAME.fullmatch(s["file"]))
            and isinstance(s.get("n_samples"), int) and not isinstance(s.get("n_samples"), bool)
            and s["n_samples"] > 0 and isinstance(s.get("sha256"), str) and bool(_HEX64.fullmatch(s["sha256"])))


def _read_index(root: Path, header: dict) -> dict[str, np.ndarray]:
    path = root / INDEX_FILE
    if file_sha256(path, "wave store index") != header["index"]["sha256"]:  # streamed: no copy of the file held
        raise CacheError("wave store index checksum mismatch (corrupt, tampered or from another build)", path=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in INDEX_FIELDS}
            # hex digests as 64 bytes (older stores wrote them as str: 4 bytes a character)
            arrays["sha256"] = arrays["sha256"].astype("S64") if arrays["sha256"].dtype.kind in "US" else arrays["sha256"]
    except Exception as exc:  # BadZipFile, KeyError, ValueError (object arrays), ...
        raise CacheError(f"cannot read wave store index: {type(exc).__name__}: {exc}"[:300], path=path) from None
    n = header["index"]["n_utterances"]
    for k, a in arrays.items():
        want = "S" if k == "sha256" else "U" if k in ("relpath", "split", "speaker") else "i"
        if a.ndim != 1 or a.shape[0] != n or a.dtype.kind != want:
            raise CacheError(f"index field {k!r} has shape {a.shape} dtype {a.dtype}, expected ({n},) "
                             f"{ {'S': 'hex digests', 'U': 'str', 'i': 'int'}[want] }", path=path)
    _check_index(arrays, header, path)
    return arrays


def _check_index(a: dict[str, np.ndarray], header: dict, path: Path) -> None:
    """Splits, speakers and digests are known values; the utterances tile every shard exactly."""
    if len(set(a["relpath"].tolist())) != a["relpath"].shape[0]:
        raise CacheError("an utterance is listed twice in the wave store index", path=path)
    if not np.isin(a["split"], SPLITS).all():
        raise CacheError(f"unknown split in wave store index (expected {SPLITS})", path=path)
    if not np.isin(a["speaker"], np.asarray(header["speakers"], dtype=str)).all():
        raise CacheError("the wave store index names a speaker missing from the header", path=path)
    digits = a["sha256"].view(np.uint8).reshape(-1, 64) if a["sha256"].dtype.itemsize == 64 else None
    if digits is None or not _IS_HEX[digits].all():
        raise CacheError("malformed utterance sha256 in wave store index", path=path)
    shard, offset, length = a["shard"], a["offset"], a["length"]
    sizes = np.asarray([s["n_samples"] for s in header["shards"]], dtype=np.int64)
    if shard.size and (shard.min() < 0 or shard.max() >= sizes.size or length.min() < 1 or offset.min() < 0):
        raise CacheError("inconsistent offsets in wave store index: shard, offset or length out of range", path=path)
    order = np.lexsort((offset, shard))
    s, o, ln = shard[order], offset[order], length[order]
    first = np.ones(s.size, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    expect = np.where(first, 0, np.concatenate(([0], (o + ln)[:-1])))
    last = np.ones(s.size, dtype=bool)
    last[:-1] = first[1:]
    if (not np.array_equal(o, expect) or not np.array_equal((o + ln)[last], sizes[s[last]])
            or np.unique(s).size != sizes.size):
        raise CacheError("inconsistent offsets in wave store index: the utterances do not tile the shards "
                         "(overlap, gap, or a shard size that disagrees with the header)", path=path)


# -------------------------------------------------------------------------------------------- reading
class WaveStore:
    """Read access to a wave store (see the module docstring for the layout).

    ``ids`` (relpaths), ``splits`` and ``speakers`` (sorted) are tuples; ``labels`` (index into
    ``speakers``) and ``lengths`` (samples) are read-only ``np.int64`` arrays; ``len(store)`` is the
    number of utterances. :meth:`read` copies one (slice of an) utterance out of the memory-mapped shard.

    Subclasses store rows of another shape in the same layout (:class:`spkid.data.featstore.FeatureStore`:
    ``(n_frames, n_mels)`` rows): they set the class attributes below and :attr:`row_shape`.
    """

    HEADER_FILE = HEADER_FILE
    FORMAT = WAVE_FORMAT
    WHAT = "wave store"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        header = _read_header(self.root, self.HEADER_FILE, self.FORMAT, self.WHAT)
        self._check_header(header)
        index = _read_index(self.root, header)
        self.sr: int = header["sr"]
        self.dtype: str = header["dtype"]
        self.speakers: tuple[str, ...] = tuple(header["speakers"])
        self.built_shard: tuple[int, int] | None = tuple(header["shard"]) if header.get("shard") else None
        self.shard_files: tuple[str, ...] = tuple(s["file"] for s in header["shards"])
        self._shard_sizes = tuple(s["n_samples"] for s in header["shards"])
        self._shard_sha = tuple(s["sha256"] for s in header["shards"])
        self.ids: tuple[str, ...] = tuple(index["relpath"].tolist())
        self._speaker_of = index["speaker"]
        self.labels = np.searchsorted(np.asarray(self.speakers, dtype=str), self._speaker_of).astype(np.int64)
        self.lengths = index["length"].astype(np.int64)
        self._shard = index["shard"].astype(np.int64)
        self._offset = index["offset"].astype(np.int64)
        self._sha = index["sha256"]  # S64 hex digests
        self._split_arr = index["split"]
        for arr in (self.labels, self.lengths, self._shard, self._offset, self._speaker_of, self._split_arr, self._sha):
            arr.setflags(write=False)
        self._maps: dict[int, np.ndarray] = {}
        self._by_id: dict[str, int] | None = None
        for k, name in enumerate(self.shard_files):
            p = self.root / name
            want = DTYPES[self.dtype].itemsize * self._shard_sizes[k] * int(np.prod(self.row_shape))
            try:
                size = p.stat().st_size
            except OSError:
                raise CacheError(f"shard file listed in {self.HEADER_FILE} is missing", path=p) from None
            if size < want:
                raise CacheError(f"truncated shard: {size} bytes, its {self._shard_sizes[k]} samples need "
                                 f"more than {want}", path=p)

    row_shape: tuple[int, ...] = ()  # trailing shape of one stored row (a sample: scalar)

    def _check_header(self, header: dict) -> None:
        """Check a subclass's own header fields (and set :attr:`row_shape`); nothing for waves."""

    @classmethod
    def open(cls, root: str | os.PathLike) -> "WaveStore":
        """The store at ``root``, shared by every caller in this process while its header is unchanged
        (the index of a large corpus is read and held once, not once per split)."""
        root = Path(root)
        try:
            st = (root / cls.HEADER_FILE).stat()
            key = (cls, str(root.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return cls(root)  # raises the error that names what is missing
        store = _OPEN.get(key)
        if store is None:
            if len(_OPEN) >= 4:
                _OPEN.pop(next(iter(_OPEN)))
            store = _OPEN[key] = cls(root)
        return store

    @property
    def splits(self) -> tuple[str, ...]:
        """The split of each utterance, in store order."""
        return tuple(self._split_arr.tolist())

    def __getstate__(self) -> dict:
        """Pickled (e.g. to a spawned loader worker) without its memory maps: each process maps the shards
        itself, and the OS page cache shares the pages."""
        return {**self.__dict__, "_maps": {}}

    # ------------------------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_samples(self) -> int:
        """Total samples stored (all shards)."""
        return int(sum(self._shard_sizes))

    @property
    def shard_paths(self) -> tuple[Path, ...]:
        return tuple(self.root / f for f in self.shard_files)

    @property
    def utterance_speakers(self) -> np.ndarray:
        """The speaker id of each utterance, in store order (a read-only str array)."""
        return self._speaker_of

    def speaker(self, i: int) -> str:
        return str(self._speaker_of[self._check_i(i)])

    def utterance(self, i: int) -> Utterance:
        """The manifest record of utterance ``i``."""
        i = self._check_i(i)
        return Utterance(self.ids[i], str(self._speaker_of[i]), str(self._split_arr[i]))

    def index_of(self, relpath: str) -> int:
        """Position of the utterance stored from ``relpath``; KeyError if absent."""
        if self._by_id is None:
            self._by_id = {r: i for i, r in enumerate(self.ids)}
        return self._by_id[relpath]

    def indices(self, split: str) -> np.ndarray:
        """Indices (``np.int64``) of the utterances of one split, in store order."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return np.flatnonzero(self._split_arr == split).astype(np.int64)

    def select(self, split: str, speakers=None) -> tuple[np.ndarray, list[str]]:
        """``(indices, names)``: the utterances of ``split`` whose speaker is in the label set ``names``.
        ``speakers`` fixes the set and its order (a checkpoint's); default the store's training speakers
        (all of its speakers when it has no training part); ``"all"``: every speaker of the split, sorted."""
        index = self.indices(split)
        who = self._speaker_of[index]
        if speakers == "all":
            names = sorted(set(who.tolist()))
        elif speakers is None:
            names = sorted(set(self._speaker_of[self.indices("train")].tolist())) or list(self.speakers)
        else:
            names = list(speakers)
        keep = np.isin(who, np.asarray(names, dtype=str)) if names else np.zeros(len(index), dtype=bool)
        return index[keep], names

    def _check_i(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"utterance index must be an int, got {type(i).__name__}")
        n = len(self.ids)
        if not -n <= i < n:
            raise IndexError(f"utterance index {i} out of range for a store of {n}")
        return int(i) % n

    # ------------------------------------------------------------------------------------- samples
    def _map(self, k: int) -> np.ndarray:
        m = self._maps.get(k)
        if m is None:
            path = self.root / self.shard_files[k]
            try:
                m = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise CacheError(f"cannot map shard: {type(exc).__name__}: {exc}"[:300], path=path) from None
            want = (self._shard_sizes[k], *self.row_shape)
            if m.dtype != DTYPES[self.dtype] or m.shape != want:
                raise CacheError(f"shard holds {m.dtype} {m.shape}, {self.HEADER_FILE} says {self.dtype} "
                                 f"{want}", path=path)
            m = np.asarray(m)  # a plain read-only ndarray over the map (np.memmap's slicing costs more than a crop)
            self._maps[k] = m
        return m

    def _raw(self, i: int, start: int, length: int | None) -> np.ndarray:
        i = self._check_i(i)
        n = int(self.lengths[i])
        if length is None:
            length = n - start if isinstance(start, (int, np.integer)) else -1
        for name, v in (("start", start), ("length", length)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"{name} must be an int >= 0, got {v!r}")
        if start + length > n:
            raise ConfigError(f"slice [{start}, {start + length}) is past the end of utterance {i} "
                              f"({self.ids[i]!r}, {n} samples)")
        off = int(self._offset[i]) + int(start)
        return self._map(int(self._shard[i]))[off:off + int(length)]

    def read(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Samples ``[start, start + length)`` of utterance ``i`` (default: to its end) as a new float32
        array in [-1, 1]; only that slice is read from the shard."""
        raw = self._raw(i, start, length)
        out = np.array(raw, dtype=np.float32)
        if self.dtype == "int16":
            np.multiply(out, np.float32(1.0 / INT16_SCALE), out=out)
        return out

    def read_checked(self, i: int) -> np.ndarray:
        """Like ``read(i)`` for the whole utterance, after checking its samples against the index sha256."""
        i = self._check_i(i)
        raw = np.ascontiguousarray(self._raw(i, 0, None))
        if hashlib.sha256(raw.tobytes()).hexdigest().encode() != self._sha[i]:
            raise CacheError(f"samples of {self.ids[i]!r} fail their checksum (corrupt or tampered shard)",
                             path=self.root / self.shard_files[int(self._shard[i])])
        return self.read(i)

    def verify(self, workers: int | None = None) -> int:
        """Re-hash every shard against the header (``waves.json``) in ``workers`` threads (default: the
        CPU count, at most 8; hashlib hashes outside the GIL); a mismatch is a CacheError naming the shard
        (the first in shard order). Returns the number of shards checked."""
        from concurrent.futures import ThreadPoolExecutor

        paths = [self.root / name for name in self.shard_files]
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max(1, min(workers, len(paths) or 1))) as pool:
            digests = list(pool.map(lambda p: file_sha256(p, "shard"), paths))
        for path, got, want in zip(paths, digests, self._shard_sha):
            if got != want:
                raise CacheError("shard checksum mismatch (corrupt or tampered)", path=path)
        return len(paths)

    def __repr__(self) -> str:
        return (f"WaveStore({str(self.root)!r}: {len(self)} utterances, {len(self.speakers)} speakers, "
                f"{self.n_samples / self.sr / 3600:.2f} h at {self.sr} Hz {self.dtype}, {len(self.shard_files)} shards)")


def verify_wave_store(root: str | os.PathLike) -> WaveStore:
    """Open the store at ``root`` and re-hash every shard (:meth:`WaveStore.verify`); returns the store."""
    store = WaveStore(root)
    store.verify()
    return store
