"""Speaker enrolment and open-set identification over embeddings (framework-free).

A :class:`Gallery` holds, for each enrolled speaker, the L2-normalised embeddings of their enrolment
utterances and their centroid (the mean of those normalised embeddings; enrolling more utterances
later updates it). :meth:`Gallery.identify` ranks speakers by cosine similarity to the centroids,
lists the closest enrolment utterances, and answers *unknown* when the best score is below a
threshold (open-set identification). :meth:`Gallery.pick_threshold` chooses that threshold at the
equal-error-rate point of a labelled set.

In memory the contents live in a :class:`~spkid.search.live_index.LiveIndex`, updated incrementally (an
enrolment appends, a removal marks dead) and searched exactly or approximately (``index``: ``"auto"``,
``"exact"``, ``"speakers"``, ``"pq"``; ``auto`` is exact on small galleries).

On disk a gallery is a SQLite database (``G.db``, :mod:`spkid.search.sqlite_store`, opened fast through a
memory-mapped snapshot of its embeddings, :mod:`spkid.search.snapshot`), a LanceDB directory (``G.lance``,
:mod:`spkid.search.lance_store`, the ``lancedb`` extra) -- opened with :meth:`Gallery.open`, every
:meth:`~Gallery.enroll` / :meth:`~Gallery.enroll_many` / :meth:`~Gallery.remove` a durable transaction when it
returns, each read catching up with other processes' commits (:mod:`spkid.search.stored`) -- or the older
``NAME.npz`` + ``NAME.json`` pair (:mod:`spkid.search.storage`) written whole by :meth:`~Gallery.save`.
Binding a gallery to the model that made its embeddings is :mod:`spkid.search.binding`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spkid.errors import GalleryError
from spkid.metrics import compute_eer
from spkid.search.index import as_embeddings, l2_normalize
from spkid.search.live_index import LiveIndex
from spkid.search.results import Identification, Match, Neighbour
from spkid.search.sqlite_store import SQLiteStore
from spkid.search.stored import StoredGallery, is_database_path
from spkid.search.storage import canonical_json, gallery_paths, read_gallery, write_gallery

__all__ = ["Gallery"]


class Gallery(StoredGallery):
    """Enrolled speakers and their utterance embeddings.

    ``metadata``: a JSON-serialisable dict of how the embeddings were made (model, features, ...), stored
    and checked on :meth:`load`. ``threshold``: the default open-set threshold of :meth:`identify` (``None``:
    closed set; on a database-backed gallery, setting it is stored at once). ``index``: how :meth:`identify`
    searches (:mod:`spkid.search.live_index`): ``"auto"``, ``"exact"``, ``"speakers"`` or ``"pq"``.
    """

    def __init__(self, metadata: Mapping[str, Any] | None = None, threshold: float | None = None,
                 index: str = "auto"):
        self.metadata = dict(metadata or {})
        LiveIndex(1, index)  # validates ``index``
        self._threshold, self._index_mode = threshold, index
        self._store: SQLiteStore | None = None
        self._live: LiveIndex | None = None  # the contents (None while empty)
        self._seq, self._removals, self._data_version = 0, 0, None  # how far the database has been read
        self._covered, self._pending = 0, None  # rows opened from a snapshot, its checksum check

    @property
    def threshold(self) -> float | None:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if self._store is not None:
            self._store.set_threshold(value)
        self._threshold = value

    @property
    def index(self) -> str:
        """The search mode asked for (``"auto"`` ...); :meth:`search_mode` says which one runs now."""
        return self._index_mode

    @index.setter
    def index(self, mode: str) -> None:
        LiveIndex(1, mode)  # validates
        self._index_mode = mode
        if self._live is not None:
            self._live.mode = mode

    def search_mode(self) -> str:
        """The search :meth:`identify` runs at the gallery's present size (``auto`` resolved)."""
        return "exact" if self._live is None else self._live.effective_mode()

    # ------------------------------------------------------------------ contents
    @property
    def speakers(self) -> list[str]:
        """Enrolled speaker names, sorted."""
        return sorted(self._live.slot_of) if self._live is not None else []

    @property
    def dim(self) -> int | None:
        """Embedding dimension (``None`` while empty)."""
        return None if self._live is None else self._live.dim

    def __len__(self) -> int:
        return 0 if self._live is None else len(self._live.slot_of)

    def __contains__(self, name: object) -> bool:
        return self._live is not None and name in self._live.slot_of

    def n_utterances(self, name: str | None = None) -> int:
        """Enrolment utterances of one speaker, or of all."""
        if name is None:
            return 0 if self._live is None else self._live.n_rows - self._live.n_dead_rows
        return self._live.row_count(self._check_name(name, enrolled=True))

    def utterance_ids(self, name: str) -> list[str]:
        live = self._live
        return [live.row_ids[i] for i in live.slot_rows[live.slot_of[self._check_name(name, enrolled=True)]]]

    def embeddings(self, name: str) -> np.ndarray:
        """(n, D) float32 normalised enrolment embeddings of ``name``."""
        live = self._live
        return live.rows[live.slot_rows[live.slot_of[self._check_name(name, enrolled=True)]]]

    def centroids(self) -> np.ndarray:
        """(S, D) float32 mean normalised embedding of each speaker, rows in ``speakers`` order."""
        if not len(self):
            raise GalleryError("the gallery is empty; enroll speakers first")
        return np.stack([self._live.centroid(s) for s in self.speakers])

    def _check_name(self, name: object, enrolled: bool = False) -> str:
        if not isinstance(name, str) or not name.strip():
            raise GalleryError(f"speaker names must be non-empty strings, got {name!r}")
        if enrolled and name not in self:
            raise GalleryError(f"speaker {name!r} is not enrolled (enrolled: {len(self)} speakers)")
        return name

    def _as_embeddings(self, x, what: str) -> np.ndarray:
        try:
            return as_embeddings(x, what, self.dim)
        except ValueError as exc:
            raise GalleryError(str(exc)) from None

    # ------------------------------------------------------------------ enrolment
    def enroll(self, name: str, embeddings, ids: Sequence[str] | None = None) -> "Gallery":
        """Add utterance ``embeddings`` (n, D) or (D,) of speaker ``name``; updates its centroid.

        ``ids`` (n,) names the utterances (e.g. their paths; default ``"NAME#i"``); ids must be
        unique per speaker. Returns ``self``.
        """
        return self._write([(name, embeddings, ids)])

    def enroll_many(self, names: Sequence[str], embeddings, ids: Sequence[str] | None = None) -> "Gallery":
        """Enrol many utterances at once, one speaker name per row of ``embeddings`` (n, D), in one
        transaction (all or nothing); ``ids`` (n,) optional utterance ids. Returns ``self``."""
        x = self._as_embeddings(embeddings, "embeddings")
        names = [self._check_name(n) for n in names]
        if len(names) != x.shape[0] or (ids is not None and len(ids) != x.shape[0]):
            raise GalleryError(f"enroll_many needs one name (and id) per row: {len(names)} names, "
                               f"{'no' if ids is None else len(ids)} ids for {x.shape[0]} rows")
        order: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            order.setdefault(n, []).append(i)
        return self._write([(n, x[rows], None if ids is None else [ids[i] for i in rows])
                            for n, rows in order.items()])

    def _prepare(self, name, embeddings, ids, dim) -> tuple[str, np.ndarray, list[str]]:
        name = self._check_name(name)
        try:
            x = as_embeddings(embeddings, f"embeddings of {name!r}", dim)
        except ValueError as exc:
            raise GalleryError(str(exc)) from None
        norm = np.linalg.norm(x, axis=1)
        if not (np.abs(norm - 1) < 1e-6).all():  # unit rows stay bit for bit (a converted gallery is a copy)
            x = l2_normalize(x)
        if not (np.linalg.norm(x, axis=1) > 0).all():
            raise GalleryError(f"embeddings of {name!r} contain an all-zero row")
        old = self.utterance_ids(name) if name in self else []
        if ids is None:
            ids = [f"{name}#{len(old) + i}" for i in range(x.shape[0])]
        ids = [str(i) for i in ids]
        if len(ids) != x.shape[0]:
            raise GalleryError(f"{len(ids)} utterance ids for {x.shape[0]} embeddings of {name!r}")
        dup = sorted(set(old) & set(ids)) or sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise GalleryError(f"utterance id(s) {dup[:3]} already enrolled for {name!r}")
        return name, x, ids

    def _prepare_all(self, groups) -> list[tuple[str, np.ndarray, list[str]]]:
        prepared = []
        for name, emb, ids in groups:
            prepared.append(self._prepare(name, emb, ids, self.dim or (prepared[0][1].shape[1] if prepared else None)))
        return prepared

    def _write(self, groups) -> "Gallery":
        prepared = self._prepare_all(groups) if self._store is None else self._write_through(groups)
        for name, x, ids in prepared:
            self._add(name, x, ids, x.shape[1])
        return self

    def _add(self, name: str, x: np.ndarray, ids: list[str], dim: int) -> None:
        if self._live is None:
            self._live = LiveIndex(dim, self._index_mode)
        self._live.add(name, x, list(ids))

    def _drop(self, name: str) -> None:
        self._live.remove(name)
        if not self._live.slot_of:
            self._live = None

    def remove(self, name: str) -> None:
        """Forget speaker ``name`` and all their utterances; on a database-backed gallery the row is
        deleted (its bytes overwritten) and the write-ahead log truncated before this returns."""
        if self._store is None:
            self._drop(self._check_name(name, enrolled=True))
        else:
            self._remove_through(name)

    # ------------------------------------------------------------------ identification
    def centroid_scores(self, embeddings) -> np.ndarray:
        """(Q, S) cosine similarity of each query to each speaker's centroid (``speakers`` order)."""
        self.refresh()
        if not len(self):
            raise GalleryError("the gallery is empty; enroll speakers first")
        q = l2_normalize(self._as_embeddings(embeddings, "queries"))
        return q @ l2_normalize(self.centroids()).T

    def identify(self, embeddings, top_k: int = 5, threshold: float | None = None) -> list[Identification]:
        """Identify each query embedding, (Q, D) or (D,): a list of Q :class:`Identification`.

        Speakers are ranked by cosine similarity to their centroid; ``top_k`` speakers and the
        ``top_k`` closest enrolment utterances are listed (fewer if the gallery is smaller). The
        answer is *unknown* (``speaker=None``) when the best similarity is below ``threshold``
        (default: the gallery's ``threshold``; ``None`` means closed set: always answer). The search
        is the gallery's ``index`` (:meth:`search_mode`); scores are exact in every mode.
        """
        if not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a positive int, got {top_k!r}")
        self.refresh()
        if not len(self):
            raise GalleryError("the gallery is empty; enroll speakers first")
        threshold = self.threshold if threshold is None else threshold
        q = l2_normalize(self._as_embeddings(embeddings, "queries"))
        live = self._live
        slots, s_sc, rows, r_sc = live.search(q, top_k)
        out = []
        for qi in range(q.shape[0]):
            cands = tuple(Match(live.slot_names[j], float(s)) for j, s in zip(slots[qi].tolist(), s_sc[qi]) if j >= 0)
            neigh = tuple(Neighbour(live.slot_names[live.row_slot[j]], live.row_ids[j], float(s))
                          for j, s in zip(rows[qi].tolist(), r_sc[qi]) if j >= 0)
            best = cands[0]
            rejected = threshold is not None and best.score < threshold
            out.append(Identification(None if rejected else best.speaker, best.score, cands, neigh, threshold))
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

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery to ``path``: a new SQLite database when ``path`` ends in ``.db``, a new LanceDB
        directory for ``.lance`` (either refused if it exists, unless it is this gallery's own, which is always
        saved), else ``NAME.npz`` then ``NAME.json`` atomically (:func:`~spkid.search.storage.write_gallery`).
        Returns the path written."""
        names = self.speakers
        if is_database_path(path):
            if self._store is not None and Path(path).resolve() == self._store.path.resolve():
                return self._store.path
            if Path(path).exists():
                raise GalleryError("refusing to overwrite an existing gallery database", path=path)
            target = Gallery.open(path, metadata=self.metadata, threshold=self.threshold, index="exact")
            if names:
                target.enroll_many([s for s in names for _ in range(self.n_utterances(s))],
                                   np.concatenate([self.embeddings(s) for s in names]),
                                   [u for s in names for u in self.utterance_ids(s)])
            target.close()
            return Path(path)
        if not names:
            raise GalleryError("refusing to save an empty gallery", path=gallery_paths(path)[0])
        return write_gallery(path, [(s, self.embeddings(s), self.utterance_ids(s)) for s in names], self.centroids(),
                             self.threshold, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, expected_metadata: Mapping[str, Any] | None = None,
             index: str = "auto") -> "Gallery":
        """Read a gallery written by :meth:`save`, checking everything (a ``.db`` or ``.lance`` path is opened with
        :meth:`open`, the npz + json pair read with :func:`~spkid.search.storage.read_gallery`).

        ``expected_metadata``: keys whose stored values must match (e.g. the model and feature
        config of the embedder about to be used); a mismatch raises GalleryError showing both.
        """
        if is_database_path(path):
            return cls.open(path, create=False, expected_metadata=expected_metadata, index=index)
        jpath, header, speakers = read_gallery(path)
        gallery = cls(header["metadata"], header["threshold"], index=index)
        if speakers:
            gallery._live = LiveIndex(header["dim"], index)
            counts = np.array([len(i) for _, _, i in speakers], np.int64)
            rows = np.zeros((int(counts.sum()) + max(int(counts.sum()) // 4, 1024), header["dim"]), np.float32)
            rows[: counts.sum()] = np.concatenate([e for _, e, _ in speakers])
            gallery._live.add_bulk([s for s, _, _ in speakers], counts, rows, [u for _, _, i in speakers for u in i])
        gallery._check_metadata(expected_metadata, jpath)
        return gallery

    def _check_metadata(self, expected: Mapping[str, Any] | None, path) -> None:
        for key, want in (expected or {}).items():
            have = self.metadata.get(key, "<missing>")
            if canonical_json(have) != canonical_json(want):
                raise GalleryError(f"metadata {key!r} mismatch: gallery has {have!r}, expected {want!r}", path=path)
