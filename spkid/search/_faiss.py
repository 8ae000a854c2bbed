"""FAISS index builders of ``SpeakerIndex(backend="faiss")`` (Johnson, Douze & Jegou, "Billion-scale
similarity search with GPUs", 2017); :mod:`spkid.search.index` documents each ``faiss_index``.

:func:`build_index` returns an object with FAISS's ``search(q, k) -> (scores, indices)`` contract
(similarities for cosine, squared distances for euclidean, ``-1`` for empty slots, rows not yet
sorted): a plain FAISS index for ``"flat"`` / ``"ivf"`` / ``"hnsw"``, or a two-stage search with an
exact second stage (:mod:`spkid.search._exact`) for ``"speakers"`` and ``"pq"``. ``owner`` is the
:class:`~spkid.search.index.SpeakerIndex` being fitted (its parameters and fitted gallery).
"""
from __future__ import annotations

import math
import os

import numpy as np

from spkid.errors import BackendError
from spkid.search._exact import exhaustive, no_results, rescore


def import_faiss(n_jobs: int | None):
    """The ``faiss`` module with its OpenMP thread count set to ``n_jobs`` (``None``: the CPUs this
    process may use); FAISS's setting is process-wide, so this runs before every build and search."""
    try:
        import faiss
    except ImportError as exc:
        raise BackendError(
            f"backend='faiss' needs FAISS ({exc}); install it with: pip install 'spkid[faiss]'"
        ) from None
    n = n_jobs if n_jobs is not None else len(os.sched_getaffinity(0))
    faiss.omp_set_num_threads(max(1, int(n)))
    return faiss


def auto_nlist(nlist: int | None, n: int) -> int:
    """IVF cells: ``nlist`` capped at ``n``, or ``4 * sqrt(n)`` capped so every cell gets >= 39 points."""
    if nlist is not None:
        return min(nlist, n)
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def build_index(owner):
    """The searchable FAISS structure for ``owner.faiss_index`` over ``owner.embeddings_``."""
    faiss = import_faiss(owner.n_jobs)
    x, d = owner.embeddings_, owner.n_features_in_
    ip = owner.metric == "cosine"
    faiss_metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
    if owner.faiss_index == "flat":
        index = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
    elif owner.faiss_index == "ivf":
        nlist = auto_nlist(owner.nlist, x.shape[0])
        quantizer = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
        index.cp.seed = owner.seed
        index.train(_train_subset(x, max(nlist, owner.train_size or 64 * nlist), owner.seed))
        index.nprobe = min(owner.nprobe, nlist)
    elif owner.faiss_index == "speakers":
        return _SpeakerIVF(owner, faiss_metric, faiss)
    elif owner.faiss_index == "pq":
        return _PQRerank(owner, faiss_metric, faiss)
    else:
        index = _hnsw(faiss, owner, faiss_metric)
    index.add(x)
    return index


def _hnsw(faiss, owner, faiss_metric, ef_search: int | None = None):
    """An empty ``IndexHNSWFlat`` (Malkov & Yashunin, TPAMI 2018) with ``owner``'s graph parameters."""
    index = faiss.IndexHNSWFlat(owner.n_features_in_, owner.hnsw_m, faiss_metric)
    index.hnsw.efConstruction = owner.ef_construction
    index.hnsw.efSearch = owner.ef_search if ef_search is None else ef_search
    return index


def _train_subset(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size`` rows of ``x``: a seeded random subset (in gallery order) when it is larger."""
    if x.shape[0] <= size:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(x.shape[0], size, replace=False))]


class _SpeakerIVF:
    """``faiss_index="speakers"``: HNSW over speaker centroids, then exact scoring of the probed
    speakers' items (CSR lists of each speaker's gallery rows).

    The second level is numpy rather than FAISS's ``IndexIVFFlat`` with the same HNSW quantizer and
    preassigned lists (``add_core``): FAISS scans its contiguous lists a few tens of microseconds faster
    per query (the gather from the gallery's rows misses cache), which is small beside the graph walk
    and the 5 ms budget of issue 5, but it keeps a second copy of the gallery in those lists (1 GB at
    1M x 256 float32), scores with its own kernels rather than the exact backend's GEMM, and keeps
    whichever item tied at the k-th place was scanned first instead of the lower gallery index. Batches
    run the graph walk in one FAISS call and then one small product per query.
    """

    def __init__(self, owner, faiss_metric, faiss):
        self.owner = owner
        n_spk = owner.classes_.size
        self.n_probe = min(int(owner.n_probe_speakers), n_spk)
        self.order, self.offsets = owner._speaker_rows()
        self.exhaustive = self.n_probe >= n_spk  # every speaker probed: no graph needed
        self.hnsw = None
        if not self.exhaustive:
            self.hnsw = _hnsw(faiss, owner, faiss_metric, max(owner.ef_search, self.n_probe))
            self.hnsw.add(owner.centroids())

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        owner = self.owner
        if self.exhaustive:
            return exhaustive(owner, q, k)
        _, spk = self.hnsw.search(q, self.n_probe)
        out_s, out_i = no_results(owner, q.shape[0], k)
        order, offsets = self.order, self.offsets
        for r in range(q.shape[0]):
            rows = np.concatenate([order[offsets[j] : offsets[j + 1]] for j in spk[r].tolist() if j >= 0])
            rescore(owner, q[r], rows, k, out_s[r], out_i[r])
        return out_s, out_i


class _PQRerank:
    """``faiss_index="pq"``: a 4-bit product-quantisation fast-scan pass (``IndexPQFastScan``; André,
    Kermarrec & Le Scouarnec, ICMR 2017) over every item, then exact re-scoring of its
    ``refine_factor x k`` best candidates."""

    MIN_ITEMS = 256  # fewer: no codebooks to train, every search is exhaustive

    def __init__(self, owner, faiss_metric, faiss):
        self.owner = owner
        x, d = owner.embeddings_, owner.n_features_in_
        self.pq = None
        m = owner.pq_m if owner.pq_m is not None else max(j for j in range(1, max(1, d // 4) + 1) if d % j == 0)
        if d % m:
            raise ValueError(f"pq_m must divide the embedding dimension {d}, got {m}")
        if x.shape[0] < self.MIN_ITEMS:
            return
        self.pq = faiss.IndexPQFastScan(d, int(m), 4, faiss_metric)
        self.pq.train(_train_subset(x, owner.train_size or 65536, owner.seed))
        self.pq.add(x)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        owner = self.owner
        n_cand = min(k * int(owner.refine_factor), owner.embeddings_.shape[0])
        if self.pq is None or n_cand >= owner.embeddings_.shape[0]:
            return exhaustive(owner, q, k)
        _, cand = self.pq.search(q, n_cand)
        out_s, out_i = no_results(owner, q.shape[0], k)
        for r in range(q.shape[0]):
            rescore(owner, q[r], cand[r][cand[r] >= 0], k, out_s[r], out_i[r])
        return out_s, out_i
