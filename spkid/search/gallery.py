"""Speaker enrolment and open-set identification over embeddings (framework-free).

A :class:`Gallery` holds, for each enrolled speaker, the L2-normalised embeddings of their enrolment
utterances and their centroid (the mean of those normalised embeddings; enrolling more utterances
later updates it). :meth:`Gallery.identify` ranks speakers by cosine similarity to the centroids,
lists the closest enrolment utterances, and answers *unknown* when the best score is below a
threshold (open-set identification). :meth:`Gallery.pick_threshold` chooses that threshold at the
equal-error-rate point of a labelled set.

On disk a gallery is two files written atomically: ``NAME.npz`` (arrays only, read with
``allow_pickle=False``) and ``NAME.json`` (speaker names, utterance ids, dimension, threshold, the
caller's model/feature metadata, a format version and the sha256 of the npz). Loading checks all of
it and raises :class:`~spkid.errors.GalleryError` naming the file on any problem.
"""
from __future__ import annotations

import dataclasses
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
from spkid.metrics import compute_eer
from spkid.search.index import SpeakerIndex, as_embeddings, l2_normalize
from spkid.fileio import atomic_write_bytes, read_file_bytes, read_json_file

__all__ = ["Gallery", "Identification", "Match", "Neighbour", "UNKNOWN", "FORMAT_VERSION",
           "open_gallery", "check_gallery", "gallery_metadata", "fingerprint"]

FORMAT = "spkid-gallery"
FORMAT_VERSION = 1
UNKNOWN = "unknown"
_ARRAYS = {"embeddings": 2, "labels": 1, "centroids": 2, "counts": 1}


@dataclasses.dataclass(frozen=True)
class Match:
    """A speaker and its cosine similarity to the query (to the speaker's centroid)."""

    speaker: str
    score: float


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """An enrolment utterance close to the query: its speaker, id and cosine similarity."""

    speaker: str
    utterance: str
    score: float


@dataclasses.dataclass(frozen=True)
class Identification:
    """The answer for one query.

    ``speaker`` is the best-scoring enrolled speaker, or ``None`` when ``score`` (its similarity) is
    below the threshold; ``candidates`` are the top-k speakers and ``neighbours`` the top-k
    enrolment utterances, best first.
    """

    speaker: str | None
    score: float
    candidates: tuple[Match, ...]
    neighbours: tuple[Neighbour, ...]
    threshold: float | None = None

    @property
    def is_unknown(self) -> bool:
        return self.speaker is None

    @property
    def label(self) -> str:
        """The speaker's name, or ``"unknown"``."""
        return UNKNOWN if self.speaker is None else self.speaker


class Gallery:
    """Enrolled speakers and their utterance embeddings.

    ``metadata``: a JSON-serialisable dict describing how the embeddings were made (model,
    checkpoint, feature config, ...); stored with the gallery and checked on :meth:`load`.
    ``threshold``: the default open-set threshold of :meth:`identify` (``None``: closed set).
    """

    def __init__(self, metadata: Mapping[str, Any] | None = None, threshold: float | None = None):
        self.metadata = dict(metadata or {})
        self.threshold = threshold
        self._emb: dict[str, np.ndarray] = {}
        self._ids: dict[str, list[str]] = {}
        self._dim: int | None = None
        self._index: SpeakerIndex | None = None

    # ------------------------------------------------------------------ contents
    @property
    def speakers(self) -> list[str]:
        """Enrolled speaker names, sorted."""
        return sorted(self._emb)

    @property
    def dim(self) -> int | None:
        """Embedding dimension (``None`` while empty)."""
        return self._dim

    def __len__(self) -> int:
        return len(self._emb)

    def __contains__(self, name: object) -> bool:
        return name in self._emb

    def n_utterances(self, name: str | None = None) -> int:
        """Enrolment utterances of one speaker, or of all."""
        if name is None:
            return sum(len(v) for v in self._ids.values())
        return len(self._ids[self._check_name(name, enrolled=True)])

    def utterance_ids(self, name: str) -> list[str]:
        return list(self._ids[self._check_name(name, enrolled=True)])

    def embeddings(self, name: str) -> np.ndarray:
        """(n, D) float32 normalised enrolment embeddings of ``name``."""
        return self._emb[self._check_name(name, enrolled=True)].copy()

    def centroids(self) -> np.ndarray:
        """(S, D) float32 mean normalised embedding of each speaker, rows in ``speakers`` order."""
        if not self._emb:
            raise GalleryError("the gallery is empty; enroll speakers first")
        return np.stack([self._emb[s].mean(axis=0, dtype=np.float64) for s in self.speakers]).astype(
            np.float32
        )

    def _check_name(self, name: object, enrolled: bool = False) -> str:
        if not isinstance(name, str) or not name.strip():
            raise GalleryError(f"speaker names must be non-empty strings, got {name!r}")
        if enrolled and name not in self._emb:
            raise GalleryError(f"speaker {name!r} is not enrolled (enrolled: {len(self)} speakers)")
        return name

    def _as_embeddings(self, x, what: str) -> np.ndarray:
        try:
            return as_embeddings(x, what, self._dim)
        except ValueError as exc:
            raise GalleryError(str(exc)) from None

    # ------------------------------------------------------------------ enrolment
    def enroll(self, name: str, embeddings, ids: Sequence[str] | None = None) -> "Gallery":
        """Add utterance ``embeddings`` (n, D) or (D,) of speaker ``name``; updates its centroid.

        ``ids`` (n,) names the utterances (e.g. their paths; default ``"NAME#i"``); ids must be
        unique per speaker. Returns ``self``.
        """
        name = self._check_name(name)
        x = l2_normalize(self._as_embeddings(embeddings, f"embeddings of {name!r}"))
        if not (np.linalg.norm(x, axis=1) > 0).all():
            raise GalleryError(f"embeddings of {name!r} contain an all-zero row")
        old = self._ids.get(name, [])
        if ids is None:
            ids = [f"{name}#{len(old) + i}" for i in range(x.shape[0])]
        ids = [str(i) for i in ids]
        if len(ids) != x.shape[0]:
            raise GalleryError(f"{len(ids)} utterance ids for {x.shape[0]} embeddings of {name!r}")
        dup = sorted(set(old) & set(ids)) or sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise GalleryError(f"utterance id(s) {dup[:3]} already enrolled for {name!r}")
        self._emb[name] = np.concatenate([self._emb[name], x]) if name in self._emb else x
        self._ids[name] = old + ids
        self._dim = x.shape[1]
        self._index = None
        return self

    add = enroll  # the name used in the cross-module contract

    def remove(self, name: str) -> None:
        """Forget speaker ``name`` and all their utterances."""
        self._check_name(name, enrolled=True)
        del self._emb[name], self._ids[name]
        if not self._emb:
            self._dim = None
        self._index = None

    # ------------------------------------------------------------------ identification
    def _utterance_index(self) -> SpeakerIndex:
        if self._index is None:
            names = self.speakers
            x = np.concatenate([self._emb[s] for s in names])
            labels = np.concatenate([np.full(len(self._ids[s]), s, dtype=object) for s in names])
            ids = np.array([u for s in names for u in self._ids[s]], dtype=object)
            self._index = SpeakerIndex(metric="cosine").fit(x, labels, ids=ids)
        return self._index

    def centroid_scores(self, embeddings) -> np.ndarray:
        """(Q, S) cosine similarity of each query to each speaker's centroid (``speakers`` order)."""
        if not self._emb:
            raise GalleryError("the gallery is empty; enroll speakers first")
        q = l2_normalize(self._as_embeddings(embeddings, "queries"))
        return q @ l2_normalize(self.centroids()).T

    def identify(self, embeddings, top_k: int = 5, threshold: float | None = None) -> list[Identification]:
        """Identify each query embedding, (Q, D) or (D,): a list of Q :class:`Identification`.

        Speakers are ranked by cosine similarity to their centroid; ``top_k`` speakers and the
        ``top_k`` closest enrolment utterances are listed (fewer if the gallery is smaller). The
        answer is *unknown* (``speaker=None``) when the best similarity is below ``threshold``
        (default: the gallery's ``threshold``; ``None`` means closed set: always answer).
        """
        if not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a positive int, got {top_k!r}")
        threshold = self.threshold if threshold is None else threshold
        scores = self.centroid_scores(embeddings)
        names = self.speakers
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        index = self._utterance_index()
        sims, idx = index.kneighbors(embeddings, min(top_k, len(index.ids_)))
        out = []
        for qi in range(scores.shape[0]):
            cands = tuple(Match(names[j], float(scores[qi, j])) for j in order[qi])
            neigh = tuple(
                Neighbour(str(index.labels_[j]), str(index.ids_[j]), float(s))
                for s, j in zip(sims[qi], idx[qi])
            )
            best = cands[0]
            rejected = threshold is not None and best.score < threshold
            out.append(Identification(None if rejected else best.speaker, best.score, cands, neigh,
                                      threshold))
        return out

    def trial_scores(self, embeddings, speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Verification trials of a labelled set against every enrolled centroid.

        ``embeddings`` (Q, D) with true ``speakers`` (Q,) (names not enrolled are allowed: they give
        only non-target trials). Returns ``(scores, is_target)``, both (Q * S,).
        """
        scores = self.centroid_scores(embeddings)
        speakers = np.asarray(speakers, dtype=object)
        if speakers.shape != (scores.shape[0],):
            raise GalleryError(f"need one speaker per embedding: {speakers.shape} for {scores.shape[0]}")
        is_target = speakers[:, None] == np.asarray(self.speakers, dtype=object)[None, :]
        return scores.ravel(), is_target.ravel().astype(bool)

    def pick_threshold(self, embeddings, speakers: Sequence[str]) -> tuple[float, float]:
        """Set ``threshold`` to the equal-error-rate point of a labelled set; returns ``(threshold, eer)``.

        The labelled set should be held out from enrolment. See :func:`spkid.metrics.compute_eer`.
        """
        scores, is_target = self.trial_scores(embeddings, speakers)
        try:
            eer, thr = compute_eer(scores, is_target)
        except ValueError as exc:
            raise GalleryError(f"cannot pick a threshold: {exc}") from None
        self.threshold = float(thr)
        return self.threshold, eer

    # ------------------------------------------------------------------ persistence
    @staticmethod
    def paths(path: str | os.PathLike) -> tuple[Path, Path]:
        """``(json, npz)`` paths of a gallery saved as ``path`` (with or without either suffix)."""
        p = Path(path)
        if p.suffix in (".json", ".npz"):
            p = p.with_suffix("")
        return p.parent / f"{p.name}.json", p.parent / f"{p.name}.npz"

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``NAME.npz`` then ``NAME.json`` atomically; returns the json path."""
        jpath, npath = self.paths(path)
        names = self.speakers
        if not names:
            raise GalleryError("refusing to save an empty gallery", path=jpath)
        arrays = {
            "embeddings": np.concatenate([self._emb[s] for s in names]),
            "labels": np.repeat(np.arange(len(names), dtype=np.int64), [len(self._ids[s]) for s in names]),
            "centroids": self.centroids(),
            "counts": np.array([len(self._ids[s]) for s in names], dtype=np.int64),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "npz": npath.name,
            "npz_sha256": hashlib.sha256(data).hexdigest(),
            "dim": self._dim,
            "n_utterances": int(arrays["labels"].size),
            "speakers": names,
            "utterance_ids": [self._ids[s] for s in names],
            "threshold": self.threshold,
            "metadata": self.metadata,
        }
        try:
            header["header_sha256"] = _header_digest(header)
            text = json.dumps(header, indent=1, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"metadata is not JSON-serialisable: {exc}", path=jpath) from None
        jpath.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(npath, data)
        atomic_write_bytes(jpath, text.encode("utf-8"))
        return jpath

    @classmethod
    def load(cls, path: str | os.PathLike, expected_metadata: Mapping[str, Any] | None = None) -> "Gallery":
        """Read a gallery written by :meth:`save`, checking everything.

        ``expected_metadata``: keys whose stored values must match (e.g. the model and feature
        config of the embedder about to be used); a mismatch raises GalleryError showing both.
        """
        jpath, npath = cls.paths(path)
        header = _read_header(jpath)
        npath = jpath.parent / header["npz"]
        arrays = _read_arrays(npath, header["npz_sha256"])
        gallery = cls(header["metadata"], header["threshold"])
        for name, emb, ids in _check_contents(header, arrays, npath, jpath):
            gallery._emb[name], gallery._ids[name] = emb, ids
        gallery._dim = header["dim"]
        for key, want in (expected_metadata or {}).items():
            have = gallery.metadata.get(key, "<missing>")
            if _canonical(have) != _canonical(want):
                raise GalleryError(
                    f"metadata {key!r} mismatch: gallery has {have!r}, expected {want!r}", path=jpath
                )
        return gallery


def _header_digest(header: Mapping[str, Any]) -> str:
    """sha256 of the header's canonical JSON without its own digest field (so edits are detected)."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _read_header(jpath: Path) -> dict:
    header = read_json_file(jpath, "gallery file", GalleryError)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise GalleryError(f"not a spkid gallery (format is not {FORMAT!r})", path=jpath)
    if header.get("version") != FORMAT_VERSION:
        raise GalleryError(
            f"unsupported gallery version {header.get('version')!r} (this spkid reads {FORMAT_VERSION})",
            path=jpath,
        )
    types = {"header_sha256": str, "npz": str, "npz_sha256": str, "dim": int, "n_utterances": int, "speakers": list,
             "utterance_ids": list, "metadata": dict}
    for key, tp in types.items():
        if not isinstance(header.get(key), tp) or isinstance(header.get(key), bool):
            raise GalleryError(f"header field {key!r} missing or not a {tp.__name__}", path=jpath)
    thr = header.get("threshold")
    if "threshold" not in header or (thr is not None and not (isinstance(thr, (int, float)) and math.isfinite(thr))):
        raise GalleryError(f"header field 'threshold' must be a finite number or null, got {thr!r}", path=jpath)
    if Path(header["npz"]).name != header["npz"]:
        raise GalleryError(f"header field 'npz' must be a bare file name, got {header['npz']!r}", path=jpath)
    try:
        digest = _header_digest(header)
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


# ------------------------------------------------------------------ binding a gallery to its model
# A gallery records how its embeddings were made (model name, spec, feature config and a *fingerprint*:
# the model's unit embedding of a fixed pseudo-random input, which identifies the trained weights across
# backends and export formats), so embeddings from different spaces never mix.
CHECKED_KEYS = ("feature_config", "model", "spec")  # must equal the model's when the gallery has them
FINGERPRINT_FRAMES = 200
FINGERPRINT_MIN_COSINE = 0.999  # same weights agree to ~1e-5 across torch / keras / onnx


def fingerprint(embedder) -> list[float]:
    """(E,) unit embedding of a fixed pseudo-random (200, n_mels) input, rounded to 6 decimals."""
    x = np.random.default_rng(0).standard_normal((FINGERPRINT_FRAMES, embedder.feature_config.n_mels))
    e = embedder.embed([x.astype(np.float32)])[0].astype(np.float64)
    return np.round(e / max(np.linalg.norm(e), 1e-12), 6).tolist()


def gallery_metadata(embedder, model_path) -> dict:
    """What a gallery records about the model that made its embeddings (the keys of CHECKED_KEYS,
    ``fingerprint``, and for information ``source`` / ``backend``)."""
    return {"model": embedder.model_name, "spec": embedder.metadata.get("spec"),
            "feature_config": embedder.feature_config.to_dict(), "fingerprint": fingerprint(embedder),
            "source": os.fspath(model_path), "backend": getattr(embedder, "backend", None)}


def _differences(have, want) -> str:
    if isinstance(have, dict) and isinstance(want, dict):
        keys = sorted(k for k in set(have) | set(want) if _json(have.get(k)) != _json(want.get(k)))
        return ", ".join(f"{k}: gallery {have.get(k, '<missing>')!r} vs model {want.get(k, '<missing>')!r}"
                         for k in keys)
    return f"gallery {have!r} vs model {want!r}"


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def check_gallery(gallery, meta: dict, path) -> list[str]:
    """Raise GalleryError when ``gallery`` was made with another model than ``meta`` describes.

    Keys the gallery lacks (galleries made elsewhere) cannot be checked: returns notes naming them.
    """
    made = gallery.metadata
    origin = f" (enrolled with {made['source']})" if "source" in made else ""
    for key in CHECKED_KEYS:
        if key in made and _json(made[key]) != _json(meta[key]):
            raise GalleryError(f"made with another {key}{origin}: {_differences(made[key], meta[key])}", path=path)
    dim = len(meta["fingerprint"])
    if gallery.dim is not None and gallery.dim != dim:
        raise GalleryError(f"holds {gallery.dim}-d embeddings{origin}, the model makes {dim}-d ones", path=path)
    if "fingerprint" in made:
        cos = float(np.dot(made["fingerprint"], meta["fingerprint"]))
        if cos < FINGERPRINT_MIN_COSINE:
            raise GalleryError(f"made with other trained weights{origin} (same architecture and features, but the "
                               f"fingerprint embeddings agree only to cosine {cos:.4f}); enrol into a new gallery",
                               path=path)
    return [f"gallery has no {key!r} record: cannot check it matches the model"
            for key in (*CHECKED_KEYS, "fingerprint") if key not in made]


def open_gallery(path, embedder, model_path, *, create: bool):
    """(gallery, its json path, notes): the gallery at ``path`` checked against the model; a new empty one
    (with the model's metadata) when it does not exist and ``create``; GalleryError otherwise."""
    jpath, _ = Gallery.paths(path)
    meta = gallery_metadata(embedder, model_path)
    if create and not jpath.exists():
        return Gallery(metadata=meta), jpath, []
    gallery = Gallery.load(jpath)
    return gallery, jpath, check_gallery(gallery, meta, jpath)
