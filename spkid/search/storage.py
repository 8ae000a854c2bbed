"""The on-disk format of a :class:`~spkid.search.gallery.Gallery`: a ``NAME.npz`` + ``NAME.json`` pair.

``NAME.npz`` holds arrays only (read with ``allow_pickle=False``): ``embeddings`` (n, D) unit-norm
float32 rows grouped by speaker, ``labels`` (n,) sorted speaker indices, ``centroids`` (S, D) and
``counts`` (S,). ``NAME.json`` holds speaker names, utterance ids, dimension, threshold, the caller's
metadata, a format version, the sha256 of the npz and of the header itself. Both are written
atomically (npz first); reading checks all of it and raises :class:`~spkid.errors.GalleryError`
naming the file on any problem.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spkid.errors import GalleryError
from spkid.fileio import atomic_write_bytes, read_file_bytes, read_json_file

__all__ = ["FORMAT", "FORMAT_VERSION", "gallery_paths", "write_gallery", "read_gallery", "header_digest",
           "canonical_json"]

FORMAT = "spkid-gallery"
FORMAT_VERSION = 1
_ARRAYS = {"embeddings": 2, "labels": 1, "centroids": 2, "counts": 1}
_HEADER_TYPES = {"header_sha256": str, "npz": str, "npz_sha256": str, "dim": int, "n_utterances": int,
                 "speakers": list, "utterance_ids": list, "metadata": dict}


def gallery_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, npz)`` paths of a gallery saved as ``path`` (with or without either suffix)."""
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.parent / f"{p.name}.json", p.parent / f"{p.name}.npz"


def canonical_json(value: Any) -> str:
    """Sorted-key JSON of ``value`` (non-JSON values as ``str``), for comparing stored metadata."""
    return json.dumps(value, sort_keys=True, default=str)


def header_digest(header: Mapping[str, Any]) -> str:
    """sha256 of the header's canonical JSON without its own digest field (so edits are detected)."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8")).hexdigest()


def write_gallery(path: str | os.PathLike, speakers: Sequence[tuple[str, np.ndarray, list[str]]],
                  centroids: np.ndarray, threshold: float | None, metadata: Mapping[str, Any]) -> Path:
    """Write ``speakers`` -- ``(name, (n, D) unit-norm embeddings, n ids)`` in sorted name order -- with
    their ``centroids`` (S, D): ``NAME.npz`` then ``NAME.json``, atomically; returns the json path."""
    jpath, npath = gallery_paths(path)
    names = [s for s, _, _ in speakers]
    counts = [len(ids) for _, _, ids in speakers]
    arrays = {
        "embeddings": np.concatenate([e for _, e, _ in speakers]),
        "labels": np.repeat(np.arange(len(names), dtype=np.int64), counts),
        "centroids": centroids,
        "counts": np.array(counts, dtype=np.int64),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "npz": npath.name,
        "npz_sha256": hashlib.sha256(data).hexdigest(),
        "dim": int(arrays["embeddings"].shape[1]),
        "n_utterances": int(arrays["labels"].size),
        "speakers": names,
        "utterance_ids": [list(ids) for _, _, ids in speakers],
        "threshold": threshold,
        "metadata": dict(metadata),
    }
    try:
        header["header_sha256"] = header_digest(header)
        text = json.dumps(header, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"metadata is not JSON-serialisable: {exc}", path=jpath) from None
    jpath.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(npath, data)
    atomic_write_bytes(jpath, text.encode("utf-8"))
    return jpath


def read_gallery(path: str | os.PathLike) -> tuple[Path, dict, list[tuple[str, np.ndarray, list[str]]]]:
    """``(json path, header, speakers)`` of the gallery at ``path``, every check passed; ``speakers`` are
    ``(name, (n, D) float32 unit-norm embeddings, n ids)`` in sorted name order."""
    jpath, _ = gallery_paths(path)
    header = _read_header(jpath)
    npath = jpath.parent / header["npz"]
    arrays = _read_arrays(npath, header["npz_sha256"])
    return jpath, header, list(_check_contents(header, arrays, npath, jpath))


def _read_header(jpath: Path) -> dict:
    header = read_json_file(jpath, "gallery file", GalleryError)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise GalleryError(f"not a spkid gallery (format is not {FORMAT!r})", path=jpath)
    if header.get("version") != FORMAT_VERSION:
        raise GalleryError(
            f"unsupported gallery version {header.get('version')!r} (this spkid reads {FORMAT_VERSION})",
            path=jpath,
        )
    for key, tp in _HEADER_TYPES.items():
        if not isinstance(header.get(key), tp) or isinstance(header.get(key), bool):
            raise GalleryError(f"header field {key!r} missing or not a {tp.__name__}", path=jpath)
    thr = header.get("threshold")
    if "threshold" not in header or (thr is not None and not (isinstance(thr, (int, float)) and math.isfinite(thr))):
        raise GalleryError(f"header field 'threshold' must be a finite number or null, got {thr!r}", path=jpath)
    if Path(header["npz"]).name != header["npz"]:
        raise GalleryError(f"header field 'npz' must be a bare file name, got {header['npz']!r}", path=jpath)
    try:
        digest = header_digest(header)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"gallery header is not canonical JSON: {exc}", path=jpath) from None
    if digest != header["header_sha256"]:
        raise GalleryError(
            f"header checksum mismatch (header edited or corrupt): it says sha256 {header['header_sha256']}, "
            f"its content hashes to {digest}",
            path=jpath,
        )
    return header


def _read_arrays(npath: Path, sha256: str) -> dict[str, np.ndarray]:
    data = read_file_bytes(npath, "gallery array file", GalleryError)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise GalleryError(
            f"checksum mismatch (file modified or truncated): header says sha256 {sha256}, file has {digest}",
            path=npath,
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise GalleryError(f"corrupt gallery arrays: {exc}", path=npath) from None
    if set(arrays) != set(_ARRAYS):
        raise GalleryError(f"expected arrays {sorted(_ARRAYS)}, found {sorted(arrays)}", path=npath)
    for key, ndim in _ARRAYS.items():
        a = arrays[key]
        kind = "f" if ndim == 2 else "i"
        if a.ndim != ndim or a.dtype.kind != kind:
            raise GalleryError(f"array {key!r} has shape {a.shape} dtype {a.dtype}; expected {ndim}-D "
                               f"{'float' if kind == 'f' else 'int'}", path=npath)
    return arrays


def _check_contents(header: dict, arrays: dict[str, np.ndarray], npath: Path, jpath: Path):
    """Yield (speaker, normalised embeddings, ids) after checking arrays against the header."""
    names, ids = header["speakers"], header["utterance_ids"]
    emb, labels, counts, cents = arrays["embeddings"], arrays["labels"], arrays["counts"], arrays["centroids"]
    s, n, d = len(names), header["n_utterances"], header["dim"]
    if not all(isinstance(x, str) and x for x in names) or len(set(names)) != s or names != sorted(names):
        raise GalleryError("header 'speakers' must be distinct, sorted, non-empty names", path=jpath)
    if emb.shape != (n, d) or cents.shape != (s, d) or labels.shape != (n,) or counts.shape != (s,):
        raise GalleryError(
            f"array shapes embeddings {emb.shape}, centroids {cents.shape}, labels {labels.shape}, "
            f"counts {counts.shape} do not match header: {s} speakers, {n} utterances, dim {d}",
            path=npath,
        )
    if not (np.isfinite(emb).all() and np.isfinite(cents).all()):
        bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))[:5].tolist()
        raise GalleryError(f"non-finite values (NaN/inf) in embeddings rows {bad} or centroids", path=npath)
    if n and (labels.min() < 0 or labels.max() >= s or (np.diff(labels) < 0).any()):
        raise GalleryError(f"labels must be sorted speaker indices in [0, {s})", path=npath)
    if not np.array_equal(np.bincount(labels, minlength=s), counts) or (counts < 1).any():
        raise GalleryError("label counts do not match the stored per-speaker counts", path=npath)
    if len(ids) != s or [len(u) for u in ids] != counts.tolist():
        raise GalleryError("header 'utterance_ids' do not match the per-speaker counts", path=jpath)
    emb = emb.astype(np.float32)
    if not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
        raise GalleryError("stored embeddings are not unit-norm", path=npath)
    start = 0
    for i, (name, c) in enumerate(zip(names, counts.tolist())):
        part = emb[start : start + c]
        if not np.allclose(part.mean(axis=0), cents[i], atol=1e-4):
            raise GalleryError(f"centroid of {name!r} does not match its embeddings", path=npath)
        yield name, part, [str(u) for u in ids[i]]
        start += c
