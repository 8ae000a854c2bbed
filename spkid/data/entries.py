"""Checksummed cache-entry files, and the restricted unpickler that reads them without running code.

An entry file is ``MAGIC | version (u16) | payload length (u64) | sha256(payload) | payload`` (big-endian,
:data:`HEADER`), the payload a pickle (protocol 4) of a plain dict ``{format_version, feature_config,
source, n_samples, sr, features}`` (features: ``(n_frames, n_mels)`` float32). :func:`load_entry` checks
magic, version, length and checksum *before* unpickling, and unpickles with :class:`RestrictedUnpickler`,
which admits only what a numpy array needs: a tampered or crafted file raises
:class:`~spkid.errors.CacheError` and never runs code. The folder these files live in is
:mod:`spkid.data.cache`.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from spkid.errors import CacheError
from spkid.fileio import atomic_write_bytes, read_file_bytes

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "HEADER",
    "ENTRY_KEYS",
    "RestrictedUnpickler",
    "restricted_loads",
    "dump_entry",
    "load_entry",
]

FORMAT_VERSION = 1
MAGIC = b"SPKIDFC\x00"
HEADER = struct.Struct(">8sHQ32s")  # magic, version, payload length, sha256
ENTRY_KEYS = frozenset({"format_version", "feature_config", "source", "n_samples", "sr", "features"})


# ----------------------------------------------------------------------------------- restricted pickle
_SAFE_DTYPES = frozenset(
    f"{kind}{size}" for kind, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("b", (1,)),
                                        ("c", (8, 16))) for size in sizes
)


class _NDArrayToken:
    """Stands in for ``numpy.ndarray`` inside cache pickles: only :func:`_safe_reconstruct` accepts it."""

    __slots__ = ()

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("not picklable")


_NDARRAY = _NDArrayToken()


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy._core.multiarray._reconstruct`` as numpy's own pickles call it, and only so: an empty
    int8 array whose shape, dtype and bytes the following BUILD sets (numpy checks the byte count)."""
    if subtype is not _NDARRAY or tuple(shape) != (0,) or dtype not in (b"b", "b"):
        raise pickle.UnpicklingError("unexpected arguments to numpy _reconstruct")
    return np.ndarray((0,), dtype=np.int8)


def _safe_dtype(obj, align=False, copy=False):
    """``numpy.dtype`` for plain numeric types only (no object, void or structured dtypes)."""
    if not isinstance(obj, str) or obj.lstrip("<>=|") not in _SAFE_DTYPES:
        raise pickle.UnpicklingError(f"dtype {str(obj)[:40]!r} is not allowed in a cache entry")
    return np.dtype(obj, bool(align), bool(copy))


def _safe_scalar(dtype, data):
    """``numpy._core.multiarray.scalar`` for a numeric dtype and exactly ``itemsize`` bytes."""
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and isinstance(data, bytes)
            and len(data) == dtype.itemsize):
        raise pickle.UnpicklingError("unexpected arguments to numpy scalar")
    return np.frombuffer(data, dtype=dtype)[0]


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only numpy-array reconstruction (through checking shims) and a few
    harmless builtins; anything else (``os.system``, ``subprocess.Popen``, ``eval``, ...) raises
    :class:`pickle.UnpicklingError` before it can be called.

    It derives from the pure-Python unpickler, whose memo is a dict: the C unpickler allocates a memo
    table as large as the largest index a file names, so a few crafted bytes could ask for gigabytes.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy.core.multiarray", "scalar"): _safe_scalar,
        ("numpy._core.multiarray", "scalar"): _safe_scalar,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _safe_dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a cache entry") from None

    def persistent_load(self, pid):  # pragma: no cover - trivial
        raise pickle.UnpicklingError("persistent ids are not allowed in cache entries")


def restricted_loads(data: bytes, path: str | os.PathLike | None = None):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a :class:`CacheError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError, ...
        raise CacheError(f"cannot unpickle entry: {type(exc).__name__}: {exc}"[:500], path=path) from None


# ------------------------------------------------------------------------------------------- entries
def dump_entry(path: str | os.PathLike, entry: dict) -> None:
    """Write one entry file atomically (temp file in the same folder + fsync + ``os.replace``)."""
    payload = pickle.dumps(entry, protocol=4)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, header + payload)


def load_entry(path: str | os.PathLike) -> dict:
    """Read and check one entry file -> dict with ``features`` ``(n_frames, n_mels)`` float32.

    Raises :class:`CacheError` (naming the file) when it is missing, truncated, of another format
    version, fails its checksum, holds anything but the expected plain dict, or tries to load code.
    """
    path = Path(path)
    data = read_file_bytes(path, "cache entry", CacheError)
    if len(data) < HEADER.size:
        raise CacheError(f"truncated cache entry ({len(data)} bytes, header needs {HEADER.size})", path=path)
    magic, version, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CacheError("not a spkid cache entry (bad magic bytes)", path=path)
    if version != FORMAT_VERSION:
        raise CacheError(f"cache entry format version {version}, this spkid reads {FORMAT_VERSION}; rebuild", path=path)
    payload = data[HEADER.size:]
    if len(payload) != length:
        raise CacheError(f"truncated cache entry: payload is {len(payload)} bytes, header says {length}", path=path)
    if hashlib.sha256(payload).digest() != digest:
        raise CacheError("cache entry checksum mismatch (corrupt or tampered)", path=path)
    entry = restricted_loads(payload, path=path)
    _check_entry(entry, path)
    return entry


def _check_entry(entry: object, path: Path) -> None:
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        keys = sorted(entry, key=repr) if isinstance(entry, dict) else type(entry).__name__
        raise CacheError(f"cache entry holds {keys}, expected keys {sorted(ENTRY_KEYS)}", path=path)
    feats = entry["features"]
    if not (isinstance(feats, np.ndarray) and feats.dtype == np.float32 and feats.ndim == 2):
        raise CacheError("cache entry features are not a 2-D float32 array", path=path)
    if not isinstance(entry["source"], str) or not _plain_config(entry["feature_config"]):
        raise CacheError("cache entry has a malformed source or feature_config", path=path)


def _plain_config(config: object) -> bool:
    """A dict of str keys to JSON scalars or lists of them, as ``FeatureConfig.to_dict`` writes (so that
    comparing it with a config dict cannot raise, as an embedded numpy array would)."""
    scalar = (type(None), bool, int, float, str)

    def plain(v: object) -> bool:
        return isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(x, scalar) for x in v))

    return isinstance(config, dict) and all(isinstance(k, str) and plain(v) for k, v in config.items())
