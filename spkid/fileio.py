"""Small file helpers shared by every module that writes or reads spkid files.

Writes are atomic: the data goes to a temporary file in the destination folder, is fsync'ed and then
renamed onto the destination with ``os.replace``, so a reader (or a process killed mid-write) never sees
a partial file. Reads raise the caller's :class:`~spkid.errors.SpkidError` subclass naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from spkid.errors import SpkidError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "read_file_bytes",
    "read_json_file",
    "check_format",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, fsync it and rename it onto ``path``.

    For writers that want a path (``torch.save``, ``np.savez``, ``keras`` savers). The file gets the
    usual ``0666 & ~umask`` permissions (``mkstemp`` alone would leave it private). Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """Pretty, key-sorted JSON written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=default))


def read_file_bytes(path: str | os.PathLike, what: str, error: type[SpkidError] = SpkidError) -> bytes:
    """The bytes of a file; a missing or unreadable file raises ``error`` naming it and ``what`` it is."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, expected a file", path=path) from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=path) from None


def read_json_file(path: str | os.PathLike, what: str, error: type[SpkidError] = SpkidError):
    """Parse a JSON file; a missing, unreadable or invalid file raises ``error`` naming it and ``what`` it is."""
    try:
        return json.loads(read_file_bytes(path, what, error).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"cannot read {what} (corrupt or truncated?): {exc}", path=path) from None


def check_format(
    data, fmt: str, version: int, what: str, *, error: type[SpkidError] = SpkidError,
    path: str | os.PathLike | None = None, version_key: str = "version",
) -> Mapping:
    """``data`` if it is a mapping with ``format == fmt`` and ``data[version_key] == version``, else ``error``."""
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        raise error(f"not a spkid {what} (expected format {fmt!r})", path=path)
    if data.get(version_key) != version:
        raise error(f"{what} format version {data.get(version_key)!r}, this spkid reads {version}", path=path)
    return data
