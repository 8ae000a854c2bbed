"""The search structure behind :meth:`Gallery.identify <spkid.search.gallery.Gallery.identify>`, kept up to date
incrementally: enrolling appends rows, removing marks them dead, nothing is rebuilt per enrolment.

Layout: utterance rows (n, D) float32 unit-norm in append order (capacity doubling, so an append is
amortised O(rows added)), each with a speaker *slot*; per slot the float64 sum of its rows, its row
list and its unit centroid (the normalised mean, the gallery's centroid direction). Removing a speaker
marks its slot and rows dead; dead space is compacted when it passes half of the arrays.

Search modes (``index``):

- ``"exact"``: centroid scores of every live speaker (one GEMV) and a scan of every live row.
- ``"speakers"``: a two-level search. First a 4-bit product-quantisation fast scan (FAISS
  ``IndexPQFastScan``; André, Kermarrec & Le Scouarnec, ICMR 2017) over the *centroids*, whose best
  ``refine`` are re-scored exactly against the true centroids (so scores are exact, only the candidate
  set is approximate); then the rows of the ``n_probe`` best speakers are scanned exactly for the
  neighbours. Unlike an HNSW graph (``SpeakerIndex(faiss_index="speakers")``), PQ codes take appends
  (``add``) and need no cluster structure among speakers. Centroids that moved after being coded
  (a speaker enrolled again) are kept in a *dirty* set scored exactly on every query; when it passes
  ``max(256, 5 %)`` of the speakers the codes are re-encoded (no retraining), and the codebooks are
  retrained when the speakers quadruple -- lazily, at the next search.
- ``"pq"``: the same fast scan over the utterance *rows* (``SpeakerIndex(faiss_index="pq")``'s method),
  ``refine x top_k`` candidates re-scored exactly; the candidate speakers are those of the candidate
  rows, ranked by exact centroid score.
- ``"auto"``: ``"exact"`` below :data:`AUTO_EXACT_MAX_ROWS` utterances or when FAISS is not
  installed, ``"speakers"`` above.
"""
from __future__ import annotations

import numpy as np

from spkid.errors import GalleryError
from spkid.search._exact import sort_topk, topk_rows

__all__ = ["INDEXES", "AUTO_EXACT_MAX_ROWS", "LiveIndex"]

INDEXES = ("auto", "exact", "speakers", "pq")
AUTO_EXACT_MAX_ROWS = 20_000  # an exact scan of 20k x 256 float32 is ~1-2 ms on one core
_PQ_MIN_ITEMS = 256  # fewer items: no codebooks to train, search exactly


def _grow(a: np.ndarray, need: int) -> np.ndarray:
    if need <= a.shape[0]:
        return a
    out = np.zeros((max(need, 2 * a.shape[0], 64), *a.shape[1:]), a.dtype)
    out[: a.shape[0]] = a
    return out


def _faiss(n_jobs: int = 1):
    """FAISS with one thread: one query at a time gains little from OpenMP, and on a loaded machine its
    spinning threads cost far more (a PQ training 5x slower with 2 threads than with 1, measured)."""
    from spkid.search._faiss import import_faiss

    return import_faiss(n_jobs)


def _faiss_or_none():
    try:
        return _faiss()
    except Exception:  # noqa: BLE001 - FAISS is optional: auto falls back to exact
        return None


class _PQ:
    """PQ fast-scan codes of ``vectors[:n]`` (ids = positions), trained once on a seeded subset."""

    def __init__(self, faiss, vectors: np.ndarray, n: int, seed: int = 0):
        d = vectors.shape[1]
        # d / 8 4-bit codes (d / 16 bytes), at least 8 for small d (fewer are too coarse to rank by)
        m = max(j for j in range(1, min(d, max(8, d // 8)) + 1) if d % j == 0)
        self.index = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
        # 16 centroids per sub-quantiser: 8192 training points are plenty (FAISS asks for >= 39 x 16)
        take = np.arange(n) if n <= 8192 else np.sort(np.random.default_rng(seed).choice(n, 8192, replace=False))
        self.index.train(np.ascontiguousarray(vectors[take]))
        self.trained_on, self.n = n, 0
        self.extend(vectors, n)

    def extend(self, vectors: np.ndarray, n: int) -> None:
        if n > self.n:
            self.index.add(np.ascontiguousarray(vectors[self.n : n]))
            self.n = n

    def recode(self, vectors: np.ndarray, n: int) -> None:
        self.index.reset()
        self.n = 0
        self.extend(vectors, n)

    def search(self, q: np.ndarray, r: int) -> np.ndarray:
        return self.index.search(np.ascontiguousarray(q), int(min(r, self.n)))[1]


class LiveIndex:
    """Utterance rows and speaker centroids of a gallery, searchable with ``index`` (see the module)."""

    def __init__(self, dim: int, index: str = "auto", n_probe: int = 16, refine: int = 256):
        if index not in INDEXES:
            raise GalleryError(f"index must be one of {INDEXES}, got {index!r}")
        self.dim, self.mode, self.n_probe, self.refine = dim, index, n_probe, refine
        self.rows = np.zeros((0, dim), np.float32)
        self.row_slot = np.zeros(0, np.int64)
        self.row_alive = np.zeros(0, bool)
        self.row_ids: list[str] = []
        self.n_rows = self.n_dead_rows = 0
        self.slot_of: dict[str, int] = {}
        self.slot_names: list[str | None] = []
        self.slot_sum = np.zeros((0, dim), np.float64)
        self.slot_count = np.zeros(0, np.int64)
        self.cent = np.zeros((0, dim), np.float32)
        self.slot_rows: list[list[int]] = []
        self._pq_cent: _PQ | None = None
        self._pq_rows: _PQ | None = None
        self._dirty: set[int] = set()

    # ------------------------------------------------------------------ updates
    @property
    def n_slots(self) -> int:
        return len(self.slot_names)

    def add(self, name: str, x: np.ndarray, ids: list[str]) -> None:
        """Append unit rows ``x`` (n, D) of speaker ``name`` with their ``ids``; updates its centroid."""
        n0, n = self.n_rows, x.shape[0]
        self.rows = _grow(self.rows, n0 + n)
        self.row_slot, self.row_alive = _grow(self.row_slot, n0 + n), _grow(self.row_alive, n0 + n)
        slot = self.slot_of.get(name)
        if slot is None:
            slot = self.slot_of[name] = self.n_slots
            self.slot_names.append(name)
            self.slot_rows.append([])
            self.slot_sum, self.slot_count = _grow(self.slot_sum, slot + 1), _grow(self.slot_count, slot + 1)
            self.cent = _grow(self.cent, slot + 1)
        elif self._pq_cent is not None and slot < self._pq_cent.n:
            self._dirty.add(slot)
        self.rows[n0 : n0 + n] = x
        self.row_slot[n0 : n0 + n] = slot
        self.row_alive[n0 : n0 + n] = True
        self.row_ids.extend(ids)
        if not isinstance(self.slot_rows[slot], list):
            self.slot_rows[slot] = list(self.slot_rows[slot])
        self.slot_rows[slot].extend(range(n0, n0 + n))
        self.n_rows += n
        self.slot_sum[slot] += x.sum(axis=0, dtype=np.float64)
        self.slot_count[slot] += n
        s = self.slot_sum[slot]
        self.cent[slot] = (s / max(np.linalg.norm(s), 1e-30)).astype(np.float32)

    def add_bulk(self, names: list[str], counts: np.ndarray, rows: np.ndarray, ids: list[str],
                 sums: np.ndarray | None = None, layout: tuple | None = None) -> None:
        """Fill an empty index at once, taking ``rows`` (cap, D) unit float32 as the index's storage (rows past
        the speakers' are spare capacity). Packed (``layout`` None): speaker ``names[j]`` owns the next ``counts[j]``
        rows, ``ids`` lists them, ``sums`` (S, D) float64 of each speaker's rows when known, else computed.
        ``layout = (starts, slots, n_rows)``: speaker ``j`` owns rows ``starts[j]:starts[j] + counts[j]`` and slot
        ``slots[j]``, rows and slots between them are dead (a mapped snapshot after removals), ``ids`` lists all
        ``n_rows`` rows and ``sums`` (cap_s, D) is the per-slot storage, taken as it is."""
        if self.n_rows or self.slot_of:
            raise ValueError("add_bulk needs an empty index")
        counts = np.asarray(counts, np.int64)
        s, live = len(names), int(counts.sum())
        packed = np.zeros(s + 1, np.int64)
        np.cumsum(counts, out=packed[1:])
        starts, slots, n = (packed[:-1], np.arange(s), live) if layout is None else layout
        n_slots = int(slots.max()) + 1 if s else 0
        cap_r = rows.shape[0]
        self.rows = rows
        if layout is not None:
            self.slot_sum = sums
        else:
            self.slot_sum = np.zeros((s + max(s // 4, 256), self.dim), np.float64)
            if sums is None:
                for a in range(0, s, 512):  # whole speakers at a time, cast first (a casting reduceat is slower)
                    b = min(a + 512, s)
                    self.slot_sum[a:b] = np.add.reduceat(rows[packed[a] : packed[b]].astype(np.float64),
                                                         packed[a:b] - packed[a], axis=0)
            else:
                self.slot_sum[:s] = sums
        cap_s = self.slot_sum.shape[0]
        pos = np.repeat(np.asarray(starts, np.int64) - packed[:-1], counts) + np.arange(live)
        self.row_slot = np.zeros(cap_r, np.int64)
        self.row_slot[pos] = np.repeat(slots, counts)
        self.row_alive = np.zeros(cap_r, bool)
        self.row_alive[pos] = True
        self.row_ids, self.n_rows, self.n_dead_rows = list(ids), n, n - live
        slot_list = slots.tolist()
        self.slot_of = dict(zip(names, slot_list))
        self.slot_names = [None] * n_slots
        # ranges (cheap to make at 100k speakers); a speaker's becomes a list when it is enrolled again
        self.slot_rows = [range(0)] * n_slots  # dead slots (a layout's gaps) own no rows
        for j, r in zip(slot_list, map(range, np.asarray(starts).tolist(), (np.asarray(starts) + counts).tolist())):
            self.slot_rows[j] = r
        for j, name in zip(slot_list, names):
            self.slot_names[j] = name
        self.slot_count = np.zeros(cap_s, np.int64)
        self.slot_count[slots] = counts
        sub = self.slot_sum[:n_slots]
        norm = np.sqrt(np.einsum("ij,ij->i", sub, sub))[:, None]
        self.cent = np.zeros((cap_s, self.dim), np.float32)
        self.cent[:n_slots] = sub / np.maximum(norm, 1e-30)

    def slot_sum_of(self, name: str) -> np.ndarray:
        """(D,) float64 sum of the speaker's rows."""
        return self.slot_sum[self.slot_of[name]].copy()

    def remove(self, name: str) -> None:
        """Forget speaker ``name``: its slot and rows are dead (compacted later)."""
        slot = self.slot_of.pop(name)
        rows = self.slot_rows[slot]
        self.row_alive[rows] = False
        self.n_dead_rows += len(rows)
        self.slot_names[slot], self.slot_rows[slot] = None, []
        self.slot_sum[slot], self.slot_count[slot], self.cent[slot] = 0.0, 0, 0.0
        self._dirty.discard(slot)
        if self.n_dead_rows > max(1024, self.n_rows // 2):
            self._compact()

    def _compact(self) -> None:
        """Rebuild the arrays without dead rows and slots (O(gallery), amortised over the removals)."""
        live = [s for s in range(self.n_slots) if self.slot_names[s] is not None]
        old = (self.rows, self.row_ids, self.slot_rows, self.slot_names)
        self.__init__(self.dim, self.mode, self.n_probe, self.refine)
        for s in live:
            r = old[2][s]
            self.add(old[3][s], old[0][r], [old[1][i] for i in r])

    def row_count(self, name: str) -> int:
        return len(self.slot_rows[self.slot_of[name]])

    def centroid(self, name: str) -> np.ndarray:
        """(D,) float32 mean of the speaker's unit rows (not normalised)."""
        slot = self.slot_of[name]
        return (self.slot_sum[slot] / self.slot_count[slot]).astype(np.float32)

    # ------------------------------------------------------------------ search
    def effective_mode(self) -> str:
        """The mode a search runs in now (``auto`` resolved; small galleries are searched exactly)."""
        mode = self.mode
        if mode == "auto":
            mode = "speakers" if self.n_rows - self.n_dead_rows > AUTO_EXACT_MAX_ROWS else "exact"
            if mode != "exact" and _faiss_or_none() is None:
                mode = "exact"
        if mode == "speakers" and self.n_slots < _PQ_MIN_ITEMS or mode == "pq" and self.n_rows < _PQ_MIN_ITEMS:
            return "exact"
        return mode

    def search(self, q: np.ndarray, top_k: int):
        """For unit queries ``q`` (Q, D): ``(slots, slot_scores, rows, row_scores)``, each (Q, <= top_k),
        best first: speakers by cosine to their centroid, enrolment rows by cosine to the query; ``-1`` /
        ``-inf`` pad missing places."""
        mode = self.effective_mode()
        if mode == "exact":
            return self._exact(q, top_k)
        faiss = _faiss()
        out = [[], [], [], []]
        if mode == "speakers":
            self._sync_pq_cent(faiss)
            cand = self._pq_cent.search(q, max(self.refine, 4 * top_k))
            dirty = np.fromiter(self._dirty, np.int64, len(self._dirty))
            for r in range(q.shape[0]):
                slots = np.unique(np.concatenate([cand[r][cand[r] >= 0], dirty]))
                res = self._rank_slots(q[r], slots, top_k, probe=max(self.n_probe, top_k))
                for o, v in zip(out, res):
                    o.append(v)
        else:
            if self._pq_rows is None:
                self._pq_rows = _PQ(faiss, self.rows, self.n_rows)
            self._pq_rows.extend(self.rows, self.n_rows)
            cand = self._pq_rows.search(q, max(self.refine, 4 * top_k))
            for r in range(q.shape[0]):
                rows = cand[r][cand[r] >= 0]
                rows = rows[self.row_alive[rows]]
                s_slots, s_sc = self._top(self.cent[np.unique(self.row_slot[rows])] @ q[r], top_k,
                                          np.unique(self.row_slot[rows]))
                n_rows, n_sc = self._top(self.rows[rows] @ q[r], top_k, rows)
                for o, v in zip(out, (s_slots, s_sc, n_rows, n_sc)):
                    o.append(v)
        return tuple(self._pad(o, top_k) for o in out)

    def _sync_pq_cent(self, faiss) -> None:
        pq = self._pq_cent
        if pq is None or self.n_slots > 4 * pq.trained_on:
            self._pq_cent, self._dirty = _PQ(faiss, self.cent, self.n_slots), set()
            return
        if len(self._dirty) > max(256, self.n_slots // 20):
            pq.recode(self.cent, self.n_slots)
            self._dirty = set()
        pq.extend(self.cent, self.n_slots)

    def _rank_slots(self, qr: np.ndarray, slots: np.ndarray, top_k: int, probe: int):
        slots = slots[self.slot_count[slots] > 0]
        sc = self.cent[slots] @ qr
        p_slots, _ = self._top(sc, probe, slots)
        rows = np.asarray([i for s in p_slots.tolist() for i in self.slot_rows[s]], np.int64)
        k_slots, k_sc = self._top(sc, top_k, slots)
        n_rows, n_sc = self._top(self.rows[rows] @ qr, top_k, rows)
        return k_slots, k_sc, n_rows, n_sc

    @staticmethod
    def _top(scores: np.ndarray, k: int, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of ``items`` by ``scores`` (1-D), best first, ties to the lower item."""
        order = np.lexsort((items, -scores))[:k]
        return items[order], scores[order].astype(np.float32)

    @staticmethod
    def _pad(rows: list, k: int) -> np.ndarray:
        fill = -1 if rows[0].dtype.kind == "i" else -np.inf
        out = np.full((len(rows), k), fill, rows[0].dtype)
        for i, r in enumerate(rows):
            out[i, : r.size] = r
        return out

    def _exact(self, q: np.ndarray, top_k: int, batch: int = 64):
        """Every live centroid and row scored, ``batch`` queries at a time (memory ``batch x n`` floats)."""
        parts = []
        for a in range(0, q.shape[0], batch):
            qb, out = q[a : a + batch], []
            for mat, n, alive in ((self.cent, self.n_slots, self.slot_count[: self.n_slots] > 0),
                                  (self.rows, self.n_rows, self.row_alive[: self.n_rows])):
                full = qb @ mat[:n].T
                full[:, ~alive] = -np.inf
                k = min(top_k, int(alive.sum()))
                i = topk_rows(-full, k)
                s, i = sort_topk(np.take_along_axis(full, i, 1), i, True)
                out += [i, s]
            parts.append(out)
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(4))
