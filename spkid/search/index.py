"""Nearest-neighbour speaker search over embeddings: exact (numpy) or approximate (FAISS).

:class:`SpeakerIndex` follows scikit-learn's estimator conventions: ``__init__`` only stores its
parameters (``get_params`` / ``set_params`` / ``clone`` work), ``fit`` validates the gallery and
returns ``self``, fitted attributes end in ``_``.

- ``backend="exact"``: a linear scan, one float32 GEMM per batch of ``batch_size`` queries, then
  ``argpartition`` for the top k, so memory stays at ``batch_size x n_gallery`` floats.
- ``backend="faiss"`` (Johnson, Douze & Jegou, "Billion-scale similarity search with GPUs", 2017),
  with ``faiss_index``:

  * ``"flat"``: brute force (``IndexFlatIP`` on L2-normalised vectors for cosine, ``IndexFlatL2``);
    the same neighbours as the exact backend.
  * ``"ivf"``: ``IndexIVFFlat``, an inverted file of ``nlist`` k-means cells trained on the gallery,
    ``nprobe`` cells visited per query.
  * ``"hnsw"``: ``IndexHNSWFlat`` (Malkov & Yashunin, "Efficient and robust approximate nearest
    neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018) with ``hnsw_m``
    links per node, ``ef_construction`` and ``ef_search``.
  * ``"speakers"``: a two-level, label-aware inverted file. ``fit`` computes each speaker's centroid
    (the L2-normalised mean of its normalised items for cosine, the plain mean for euclidean; see
    :meth:`SpeakerIndex.centroids`), indexes the centroids with an ``IndexHNSWFlat`` (inner product
    for cosine, L2 for euclidean; ``hnsw_m``, ``ef_construction``, ``ef_search``) and keeps each
    speaker's gallery rows (CSR: rows grouped by speaker + offsets). A query walks the graph to its
    ``n_probe_speakers`` nearest centroids, then scores every item of those speakers exactly (numpy
    float32 products with the stored gallery, as the exact backend does) and keeps the top k.
    Embeddings cluster by speaker, so the k nearest items of a new recording are mostly its
    speaker's enrolment items: the graph holds only ``n_speakers`` nodes and the re-scoring costs
    about ``n_probe_speakers x items per speaker`` dot products. With ``n_probe_speakers >=
    n_speakers`` every item is scored and the results are the exact backend's. A miss at the first
    level (the query's speaker not among the probed) costs most of recall@k, and greedy graph search
    has little to follow between unstructured high-dimensional centroids: the graph is only
    ``n_speakers`` nodes, so a larger ``ef_construction`` / ``ef_search`` than for item-level HNSW is
    affordable (``benchmarks/search.py`` uses 80 / 256 for it). With one item per label (i.i.d.
    data, every label distinct) it degenerates to HNSW over the items, returning at most
    ``n_probe_speakers`` neighbours. The second level is numpy (see :mod:`spkid.search._faiss` for why).

  * ``"pq"``: ``IndexPQFastScan`` (André, Kermarrec & Le Scouarnec, "Accelerated nearest neighbor
    search with quick ADC", ICMR 2017): every item is coded by ``pq_m`` 4-bit sub-quantisers
    (k-means with 16 centroids on each of ``pq_m`` slices of the vector), and a query scans all the
    codes with in-register lookup tables (SIMD shuffles), a few times less memory traffic than one
    float32 scan. The ``refine_factor x k`` best codes are then re-scored exactly against the stored
    float32 gallery, as ``"speakers"`` does, so the scores returned are exact and only the candidate
    set is approximate. Unlike IVF, HNSW and ``"speakers"`` it needs no cluster structure: every
    item is looked at, so it keeps its recall on unstructured (e.g. random) galleries, where graph
    and inverted-file search lose most of theirs. Galleries under 256 items, or a ``refine_factor
    x k`` covering the gallery, are searched exhaustively.

  The approximate indexes may return fewer than k neighbours for a query (IVF when the probed cells
  hold fewer than k items, ``"speakers"`` when the probed speakers do); missing slots hold index ``-1``
  and score ``-inf`` (cosine) / ``+inf`` (euclidean) and are ignored by :meth:`SpeakerIndex.predict`.

Results are sorted best first; equal scores are ordered by gallery index, so results are
deterministic. ``metric="cosine"`` returns similarities (larger = closer), ``metric="euclidean"``
returns distances (smaller = closer).

The exact top-k helpers live in :mod:`spkid.search._exact`, the FAISS builders in :mod:`spkid.search._faiss`.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from spkid.search._exact import sort_topk, sq_euclidean, topk_rows
from spkid.search._faiss import build_index, import_faiss

__all__ = ["SpeakerIndex", "as_embeddings", "l2_normalize"]

METRICS = ("cosine", "euclidean")
BACKENDS = ("exact", "faiss")
FAISS_INDEXES = ("flat", "ivf", "hnsw", "speakers", "pq")
_CENTROID_CHUNK = 65536  # gallery rows gathered at a time by SpeakerIndex.centroids


def as_embeddings(x, name: str = "embeddings", dim: int | None = None) -> np.ndarray:
    """Validate a (n, D) real, finite matrix (a (D,) vector becomes (1, D)) and return it as float32."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, D), got {np.shape(x)}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} have dimension {a.shape[1]}, expected {dim}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} rows {np.flatnonzero(bad)[:5].tolist()} contain NaN or inf")
    return a


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


class SpeakerIndex(BaseEstimator):
    """k-nearest-neighbour search and speaker prediction over a labelled gallery of embeddings.

    Parameters
    ----------
    n_neighbors : default k of :meth:`kneighbors` and the vote size of :meth:`predict`.
    metric : ``"cosine"`` (vectors are L2-normalised on ``fit`` and on query) or ``"euclidean"``.
    backend : ``"exact"`` (numpy) or ``"faiss"`` (needs ``pip install 'spkid[faiss]'``).
    faiss_index : ``"flat"`` | ``"ivf"`` | ``"hnsw"`` | ``"speakers"`` | ``"pq"`` (FAISS backend only).
        ``"speakers"`` searches an HNSW graph of the speaker centroids, then scores every item of
        the ``n_probe_speakers`` nearest speakers exactly (see the module docstring); with one item
        per label it is HNSW over the items. ``"pq"`` scans 4-bit product-quantisation codes of
        every item and re-scores the best ``refine_factor x k`` exactly; it needs no structure in
        the gallery.
    nlist : IVF cells; ``None`` picks ``4 * sqrt(n)`` capped so every cell gets >= 39 training points.
    nprobe : IVF cells visited per query.
    train_size : IVF / PQ k-means training points (a seeded random subset of the gallery); ``None``:
        ``min(n, 64 * nlist)`` for IVF, ``min(n, 65536)`` for PQ.
    hnsw_m, ef_construction, ef_search : HNSW graph degree and beam widths at build / query time
        (``"hnsw"`` and ``"speakers"``; the latter searches with ``max(ef_search, n_probe_speakers)``).
    n_probe_speakers : speakers whose items are scored per query (``faiss_index="speakers"``); at
        least the number of speakers makes the search exhaustive.
    pq_m : PQ sub-quantisers (``faiss_index="pq"``), a divisor of the embedding dimension; each
        item is stored in ``pq_m / 2`` bytes. ``None``: the largest divisor of D up to D / 4.
    refine_factor : ``faiss_index="pq"`` re-scores ``refine_factor x k`` PQ candidates exactly; at
        least ``n / k`` makes the search exhaustive.
    batch_size : queries per batch; the exact backend holds ``batch_size x n_gallery`` float32.
    score_mode : how :meth:`scores` rates a speaker: ``"max"`` (best match among the speaker's gallery
        items) or ``"centroid"`` (match to the mean of the speaker's normalised items).
    n_jobs : FAISS threads (``None``: the CPUs this process may use); applied before each build
        and search, as FAISS's OpenMP setting is process-wide.
    seed : random seed of IVF training-set subsampling.

    Fitted attributes: ``embeddings_`` (n, D) float32 (normalised for cosine), ``labels_`` (n,),
    ``ids_`` (n,), ``classes_`` (sorted distinct labels), ``label_index_`` (n,) int index into
    ``classes_``, ``n_features_in_``.
    """

    def __init__(
        self,
        n_neighbors: int = 5,
        metric: str = "cosine",
        backend: str = "exact",
        faiss_index: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        n_probe_speakers: int = 16,
        pq_m: int | None = None,
        refine_factor: int = 500,
        batch_size: int = 1024,
        score_mode: str = "max",
        n_jobs: int | None = None,
        seed: int = 0,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.backend = backend
        self.faiss_index = faiss_index
        self.nlist = nlist
        self.nprobe = nprobe
        self.train_size = train_size
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.n_probe_speakers = n_probe_speakers
        self.pq_m = pq_m
        self.refine_factor = refine_factor
        self.batch_size = batch_size
        self.score_mode = score_mode
        self.n_jobs = n_jobs
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        for name, valid in (
            ("metric", METRICS),
            ("backend", BACKENDS),
            ("faiss_index", FAISS_INDEXES),
            ("score_mode", ("max", "centroid")),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")
        for name in ("n_neighbors", "nprobe", "hnsw_m", "ef_construction", "ef_search", "n_probe_speakers",
                     "refine_factor", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("nlist", "train_size", "pq_m"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be None or a positive int, got {v!r}")

    def fit(self, embeddings, labels, ids=None) -> "SpeakerIndex":
        """Store the gallery: ``embeddings`` (n, D), ``labels`` (n,) speaker of each row, ``ids``
        (n,) optional item ids (e.g. utterance paths; default ``arange(n)``). Returns ``self``."""
        self._check_params()
        x = as_embeddings(embeddings)
        y = np.asarray(labels)
        if y.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
        ids = np.arange(x.shape[0]) if ids is None else np.asarray(ids)
        if ids.shape != (x.shape[0],):
            raise ValueError(f"ids must have shape ({x.shape[0]},), got {ids.shape}")
        self.embeddings_ = l2_normalize(x) if self.metric == "cosine" else x
        self.labels_, self.ids_ = y, ids
        self.classes_, self.label_index_ = np.unique(y, return_inverse=True)
        self.n_features_in_ = x.shape[1]
        self._sq_norms = np.einsum("ij,ij->i", self.embeddings_, self.embeddings_)
        self._csr = None
        self._faiss = build_index(self) if self.backend == "faiss" else None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "embeddings_"):
            raise ValueError("this SpeakerIndex is not fitted yet; call fit(embeddings, labels) first")

    def _queries(self, queries) -> np.ndarray:
        self._check_fitted()
        q = as_embeddings(queries, "queries", self.n_features_in_)
        return l2_normalize(q) if self.metric == "cosine" else q

    @property
    def _larger_better(self) -> bool:
        return self.metric == "cosine"

    # ------------------------------------------------------------------ search
    def _batches(self, q: np.ndarray):
        for start in range(0, q.shape[0], self.batch_size):
            yield q[start : start + self.batch_size]

    def _exact_scores(self, qb: np.ndarray) -> np.ndarray:
        """(b, n) similarities (cosine) or squared distances (euclidean), float32."""
        if self.metric == "cosine":
            return qb @ self.embeddings_.T
        return sq_euclidean(qb, self.embeddings_, self._sq_norms)

    def kneighbors(self, queries, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest gallery items of each query.

        ``queries`` (Q, D) or (D,). Returns ``(scores, indices)``, both (Q, k), best first:
        cosine similarities (descending) or euclidean distances (ascending), float32, and int64
        row indices into the gallery (map them with ``labels_`` / ``ids_``).
        """
        q = self._queries(queries)
        k = self.n_neighbors if k is None else k
        n = self.embeddings_.shape[0]
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise ValueError(f"k must be in 1..{n} (gallery size), got {k!r}")
        if self._faiss is not None:
            import_faiss(self.n_jobs)  # sets the thread count
        out_s, out_i = [np.empty((0, k), np.float32)], [np.empty((0, k), np.int64)]
        for qb in self._batches(q):
            if self._faiss is not None:
                s, i = self._faiss.search(qb, int(k))
                i = i.astype(np.int64)
                s = np.where(i < 0, -np.inf if self._larger_better else np.inf, s)
            else:
                full = self._exact_scores(qb)
                i = topk_rows(-full if self._larger_better else full, int(k))
                s = np.take_along_axis(full, i, 1)
            s, i = sort_topk(s.astype(np.float32), i, self._larger_better)
            out_s.append(s if self._larger_better else np.sqrt(s))
            out_i.append(i)
        return np.concatenate(out_s), np.concatenate(out_i)

    def predict(self, queries) -> np.ndarray:
        """Speaker of each query (Q,) by a similarity-weighted vote over its ``n_neighbors`` neighbours.

        Weights: ``max(similarity, 0)`` for cosine, ``1 / (distance + 1e-12)`` for euclidean. The
        speaker with the largest total weight wins; ties (including all-zero weights) go to the
        speaker whose nearest item ranks first.
        """
        s, i = self.kneighbors(queries, min(self.n_neighbors, self.embeddings_.shape[0]))
        valid = i >= 0
        w = np.maximum(s, 0.0) if self._larger_better else 1.0 / (s + 1e-12)
        w = np.where(valid, w, 0.0).astype(np.float64)
        cls = np.where(valid, self.label_index_[np.where(valid, i, 0)], 0)
        qn, c = i.shape[0], self.classes_.size
        totals = np.zeros((qn, c))
        np.add.at(totals, (np.repeat(np.arange(qn), i.shape[1]), cls.ravel()), w.ravel())
        first = np.full((qn, c), np.iinfo(np.int64).max)
        ranks = np.broadcast_to(np.arange(i.shape[1]), i.shape)
        np.minimum.at(first, (np.repeat(np.arange(qn), i.shape[1]), cls.ravel()),
                      np.where(valid, ranks, np.iinfo(np.int64).max).ravel())
        present = first < np.iinfo(np.int64).max
        best = np.where(present, totals, -np.inf).max(axis=1, keepdims=True)
        tied = present & (totals == best)
        return self.classes_[np.argmin(np.where(tied, first, np.iinfo(np.int64).max), axis=1)]

    def _speaker_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Gallery rows grouped by speaker (CSR): ``order`` (n,) rows sorted by ``label_index_``
        (ascending within a speaker) and ``offsets`` (n_speakers + 1,): speaker j's rows are
        ``order[offsets[j]:offsets[j + 1]]``. Cached until the next ``fit``."""
        self._check_fitted()
        if self._csr is None:
            n_spk = self.classes_.size
            order = np.argsort(self.label_index_, kind="stable")
            offsets = np.zeros(n_spk + 1, np.int64)
            np.cumsum(np.bincount(self.label_index_, minlength=n_spk), out=offsets[1:])
            self._csr = order, offsets
        return self._csr

    def centroids(self) -> np.ndarray:
        """(n_speakers, D) float32 mean of each speaker's gallery items (normalised for cosine),
        rows in the order of ``classes_``."""
        order, offsets = self._speaker_rows()
        n_spk = self.classes_.size
        c = np.empty((n_spk, self.n_features_in_), np.float64)
        # float64 sums of each speaker's rows, a chunk of whole speakers at a time (np.add.at is slower)
        s0 = 0
        while s0 < n_spk:
            s1 = int(np.searchsorted(offsets, offsets[s0] + _CENTROID_CHUNK, side="right")) - 1
            s1 = min(max(s1, s0 + 1), n_spk)
            a, b = offsets[s0], offsets[s1]
            c[s0:s1] = np.add.reduceat(self.embeddings_[order[a:b]], offsets[s0:s1] - a, axis=0,
                                       dtype=np.float64)
            s0 = s1
        c /= np.diff(offsets)[:, None]
        c = c.astype(np.float32)
        return l2_normalize(c) if self.metric == "cosine" else c

    def scores(self, queries) -> np.ndarray:
        """(Q, n_speakers) per-speaker score, columns in the order of ``classes_``; larger = closer.

        ``score_mode="max"``: the best match among the speaker's items (cosine similarity, or minus
        the euclidean distance); ``"centroid"``: the match to the speaker's centroid. Always computed
        exactly with numpy (batched), whatever the backend.
        """
        q = self._queries(queries)
        if self.score_mode == "centroid":
            c = self.centroids()
            return (q @ c.T if self.metric == "cosine" else -np.sqrt(sq_euclidean(q, c))).astype(np.float32)
        order, offsets = self._speaker_rows()
        starts = offsets[:-1]
        out = [np.empty((0, self.classes_.size), np.float32)]
        for qb in self._batches(q):
            full = self._exact_scores(qb)[:, order]
            if self.metric == "cosine":
                out.append(np.maximum.reduceat(full, starts, axis=1))
            else:
                out.append(-np.sqrt(np.minimum.reduceat(full, starts, axis=1)))
        return np.concatenate(out).astype(np.float32)
