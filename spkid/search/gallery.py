"""Speaker enrolment and open-set identification over embeddings (framework-free).

A :class:`Gallery` holds, for each enrolled speaker, the L2-normalised embeddings of their enrolment
utterances and their centroid (the mean of those normalised embeddings; enrolling more utterances
later updates it). :meth:`Gallery.identify` ranks speakers by cosine similarity to the centroids,
lists the closest enrolment utterances, and answers *unknown* when the best score is below a
threshold (open-set identification). :meth:`Gallery.pick_threshold` chooses that threshold at the
equal-error-rate point of a labelled set.

On disk a gallery is a ``NAME.npz`` + ``NAME.json`` pair (:mod:`spkid.search.storage`); binding it to
the model that made its embeddings is :mod:`spkid.search.binding`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spkid.errors import GalleryError
from spkid.metrics import compute_eer
from spkid.search.index import SpeakerIndex, as_embeddings, l2_normalize
from spkid.search.storage import canonical_json, gallery_paths, read_gallery, write_gallery

__all__ = ["Gallery", "Identification", "Match", "Neighbour", "UNKNOWN"]

UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Match:
    """A speaker and its cosine similarity to the query (to the speaker's centroid)."""

    speaker: str
    score: float

    def to_dict(self) -> dict:
        """``{"speaker", "score"}``, JSON-ready."""
        return {"speaker": self.speaker, "score": self.score}


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """An enrolment utterance close to the query: its speaker, id and cosine similarity."""

    speaker: str
    utterance: str
    score: float

    def to_dict(self) -> dict:
        """``{"speaker", "utterance", "score"}``, JSON-ready."""
        return {"speaker": self.speaker, "utterance": self.utterance, "score": self.score}


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

    def to_dict(self) -> dict:
        """The JSON form of ``spkid identify --json`` results and of the service's ``/identify``:
        ``{"speaker": name or "unknown", "score", "unknown", "threshold", "candidates": [{"speaker",
        "score"}], "neighbours": [{"speaker", "utterance", "score"}]}``."""
        return {"speaker": self.label, "score": self.score, "unknown": self.is_unknown,
                "threshold": self.threshold, "candidates": [m.to_dict() for m in self.candidates],
                "neighbours": [n.to_dict() for n in self.neighbours]}


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
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``NAME.npz`` then ``NAME.json`` atomically (:func:`~spkid.search.storage.write_gallery`);
        returns the json path."""
        names = self.speakers
        if not names:
            raise GalleryError("refusing to save an empty gallery", path=gallery_paths(path)[0])
        return write_gallery(path, [(s, self._emb[s], self._ids[s]) for s in names], self.centroids(),
                             self.threshold, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, expected_metadata: Mapping[str, Any] | None = None) -> "Gallery":
        """Read a gallery written by :meth:`save`, checking everything
        (:func:`~spkid.search.storage.read_gallery`).

        ``expected_metadata``: keys whose stored values must match (e.g. the model and feature
        config of the embedder about to be used); a mismatch raises GalleryError showing both.
        """
        jpath, header, speakers = read_gallery(path)
        gallery = cls(header["metadata"], header["threshold"])
        for name, emb, ids in speakers:
            gallery._emb[name], gallery._ids[name] = emb, ids
        gallery._dim = header["dim"]
        for key, want in (expected_metadata or {}).items():
            have = gallery.metadata.get(key, "<missing>")
            if canonical_json(have) != canonical_json(want):
                raise GalleryError(
                    f"metadata {key!r} mismatch: gallery has {have!r}, expected {want!r}", path=jpath
                )
        return gallery
