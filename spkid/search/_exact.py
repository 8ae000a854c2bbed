"""Exact top-k helpers of :class:`~spkid.search.index.SpeakerIndex`: one float32 GEMM per batch of queries,
then ``argpartition`` for the k best, with deterministic ties (equal scores ordered by gallery index).

Also the exact second stage of the two-stage FAISS searches (:mod:`spkid.search._faiss`): re-scoring a
query's candidate rows against the stored float32 gallery. ``owner`` is always the fitted index.
"""
from __future__ import annotations

import numpy as np


def sort_topk(scores: np.ndarray, idx: np.ndarray, larger_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """Order each row of (scores, idx) best first, ties by index; -1 slots go last."""
    key = -scores if larger_better else scores
    key = np.where(idx < 0, np.inf, key)
    order = np.lexsort((np.where(idx < 0, np.iinfo(np.int64).max, idx), key), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)


def sq_euclidean(q: np.ndarray, g: np.ndarray, g_sq: np.ndarray | None = None) -> np.ndarray:
    """(Q, n) squared euclidean distances ``|q|^2 - 2 q.g + |g|^2`` (one GEMM), clipped at 0."""
    g_sq = np.einsum("ij,ij->i", g, g) if g_sq is None else g_sq
    sq = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ g.T) + g_sq[None, :]
    return np.maximum(sq, 0.0, out=sq)


def topk_rows(key: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest entries of each row of ``key``, ties to the lower column (unsorted)."""
    n = key.shape[1]
    if k == n:
        return np.broadcast_to(np.arange(n), key.shape).copy()
    part = np.argpartition(key, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(key, part, 1).max(axis=1)
    # rows where more than k entries tie with the k-th value: keep the lowest columns among the ties
    for r in np.flatnonzero((key <= kth[:, None]).sum(axis=1) > k):
        better = np.flatnonzero(key[r] < kth[r])
        ties = np.flatnonzero(key[r] == kth[r])[: k - better.size]
        part[r] = np.r_[better, ties]
    return part


def rescore(owner, qr: np.ndarray, rows: np.ndarray, k: int, out_s: np.ndarray, out_i: np.ndarray) -> None:
    """Score gallery ``rows`` (distinct) exactly against one query ``qr`` and write the best k into
    ``out_s`` / ``out_i`` (length k, pre-filled with the empty-slot values; unsorted, ties to the
    lower row): similarities for cosine, squared distances for euclidean, as ``owner._exact_scores``."""
    big = rows.size > 2048
    if big:
        rows = np.sort(rows)  # topk_rows sends ties to the lower column = the lower row
    sc = owner.embeddings_[rows] @ qr
    if not owner._larger_better:
        sc = np.maximum(np.dot(qr, qr) - 2.0 * sc + owner._sq_norms[rows], 0.0)  # as sq_euclidean
    key = -sc if owner._larger_better else sc
    if big:
        top = topk_rows(key[None], min(k, rows.size))[0]
    else:  # a few hundred candidates: one full sort, ties to the lower row
        top = np.lexsort((rows, key))[:k]
    out_s[: top.size], out_i[: top.size] = sc[top], rows[top]


def no_results(owner, n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of shape (n_queries, k) holding only empty slots, for :func:`rescore` to fill."""
    return (np.full((n_queries, k), -np.inf if owner._larger_better else np.inf, np.float32),
            np.full((n_queries, k), -1, np.int64))


def exhaustive(owner, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact backend's top k (unsorted), for indexes whose probe covers the whole gallery."""
    full = owner._exact_scores(q)
    i = topk_rows(-full if owner._larger_better else full, k)
    return np.take_along_axis(full, i, 1), i
