"""Private: the mel filterbank product ``power @ filterbank.T`` as a few BLAS block matmuls, the blocks
chosen by measurement, once per filterbank and process.

The filterbank of the recipe (H. Fayek 2016: ``n_mels`` triangular filters, each spanning the bins
between its two neighbours' centres) is mostly zeros: a 512-point FFT's 257 bins and 40 filters hold
~500 nonzero weights out of 10,280. Blocks of adjacent filters -- power columns ``c0:c1`` times the
filterbank slice ``[j0:j1, c0:c1].T`` -- skip most of the zeros at the price of one BLAS call each.

Which blocks are fastest depends on the BLAS library and the CPU: the width of its micro-kernel's panel
(blocks narrower than it pay for padding), its fixed cost per call and its small-matrix paths. The
previous implementation used a cost model fitted to one CPU's OpenBLAS kernels, which need not hold on
another. Here a generic padding-aware model (:func:`_partition`, with panels of 8, 4, 16 and 2 filters)
only *proposes* candidates; they and the dense product are timed on a synthetic chunk the first time a
filterbank is used in a process (a few ms; tens of ms for large filterbanks on a busy machine) and the
fastest is kept (:func:`filterbank_blocks`). The default (panel 8: the fastest partition on OpenBLAS'
Haswell kernels, within ~15% of the fastest on its SkylakeX kernels) is replaced only by a candidate at
least :data:`_SWITCH` times faster: all candidates give the same energies up to float32 rounding (a few
1e-7, relative), and a close call must not let the rounding -- and so the bit-for-bit reproducibility of
features, caches and resumed training -- flip from run to run on one machine.

No BLAS (or other process-wide) setting is changed: each call is kept below the size at which BLAS
libraries start worker threads (:data:`BLAS_CALL_MACS`, by splitting its rows), so the products always
run on the calling thread -- they are far too small to gain from threads, and with busy CPUs
(data-loader workers, a threaded server) thread hand-offs cost 10-50x.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from spkid.features.mel import filter_supports, mel_filterbank

__all__ = ["BLAS_CALL_MACS", "rows_per_call", "apply", "filterbank_blocks", "energy_block"]

#: Most multiply-adds per BLAS matmul call (rows are split to stay under it): calls this small run on
#: the calling thread in OpenBLAS (its thresholds: 4 * 65536 for GEMM, 4 * 2304 for GEMV), MKL and
#: Accelerate.
BLAS_CALL_MACS = 1 << 18
_GEMV_MACS = 4 * 2304
#: A candidate replaces the default only when it measures this many times faster.
_SWITCH = 1.5
#: Candidate partitions, as ``(panel, call)`` of :func:`_partition`; the first is the default.
_MODELS = ((8, 200.0), (4, 100.0), (16, 400.0), (2, 50.0))


def rows_per_call(k: int, n: int) -> int:
    """Rows of a ``(rows, k) @ (k, n)`` product that keep one BLAS call on the calling thread."""
    return max(1, (_GEMV_MACS if n == 1 else BLAS_CALL_MACS) // (k * n))


def _partition(support: list[tuple[int, int]], panel: int, call: float) -> tuple[tuple[int, int], ...]:
    """Contiguous blocks ``(j0, j1)`` of filters minimising ``sum(call + K * ceil(N / panel) * panel)``
    -- a generic model of a block product with ``K = max hi - min lo`` inner and ``N`` output columns on
    a BLAS whose micro-kernel is ``panel`` columns wide, ``call`` a call's fixed cost in multiply-adds
    per frame. ``support[j] = (lo, hi)`` is filter ``j``'s nonzero bins. Exact O(n^2) dynamic programme;
    what it proposes is timed, not trusted."""
    n = len(support)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        lo, hi = support[j - 1]
        for i in range(j - 1, -1, -1):
            lo, hi = min(lo, support[i][0]), max(hi, support[i][1])
            c = best[i] + call + (hi - lo) * -(-(j - i) // panel) * panel
            if c < best[j]:
                best[j], cut[j] = c, i
    blocks, j = [], n
    while j > 0:
        blocks.append((cut[j], j))
        j = cut[j]
    return tuple(blocks[::-1])


def _make_blocks(fb: np.ndarray, support: list[tuple[int, int]], parts) -> tuple:
    """Blocks ``(c0, c1, j0, j1, weights, rows)``: power columns ``c0:c1`` times ``weights`` (the
    filterbank slice ``[j0:j1, c0:c1].T``, float32, read-only) give output columns ``j0:j1``, ``rows``
    frames per BLAS call."""
    out = []
    for j0, j1 in parts:
        c0 = min(s[0] for s in support[j0:j1])
        c1 = max(s[1] for s in support[j0:j1])
        w = np.ascontiguousarray(fb[j0:j1, c0:c1].T, dtype=np.float32)
        w.setflags(write=False)
        out.append((c0, c1, j0, j1, w, rows_per_call(c1 - c0, j1 - j0)))
    return tuple(out)


def energy_block(n_bins: int, n_fft: int, column: int) -> tuple:
    """A block writing the total frame power ``sum |X|^2 / n_fft`` to output ``column`` (MFCC's c0)."""
    w = np.full((n_bins, 1), 1.0 / n_fft, dtype=np.float32)
    w.setflags(write=False)
    return (0, n_bins, column, column + 1, w, rows_per_call(n_bins, 1))


def apply(blocks: tuple, power: np.ndarray, out: np.ndarray) -> None:
    """``out[:, j0:j1] = power[:, c0:c1] @ weights`` for each block: BLAS straight into the columns."""
    rows = len(power)
    for c0, c1, j0, j1, w, step in blocks:
        for r in range(0, rows, step):
            np.matmul(power[r : r + step, c0:c1], w, out=out[r : r + step, j0:j1])


def _choose(candidates: list, n_bins: int, n_out: int, rows: int, rounds: int = 5) -> tuple:
    """The fastest candidate on a synthetic chunk of ``rows`` frames (round-robin, best of ``rounds``
    after a warm-up round) if it beats the first (the default) :data:`_SWITCH` times, else the first."""
    if len(candidates) == 1:
        return candidates[0]
    power = np.random.default_rng(0).random((rows, n_bins), dtype=np.float32)
    out = np.empty((rows, n_out), dtype=np.float32)
    times = [float("inf")] * len(candidates)
    for r in range(rounds + 1):
        for i, blocks in enumerate(candidates):
            t0 = time.perf_counter()
            apply(blocks, power, out)
            if r:  # round 0 warms up (page faults, BLAS initialisation)
                times[i] = min(times[i], time.perf_counter() - t0)
    best = min(range(len(candidates)), key=times.__getitem__)
    return candidates[best] if times[best] * _SWITCH < times[0] else candidates[0]


_lock = threading.Lock()
_chosen: dict[tuple, tuple] = {}


def _new_lock_in_child() -> None:  # a fork while another thread measured must not inherit a held lock
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def filterbank_blocks(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None,
                      rows: int = 512) -> tuple:
    """The blocks of the ``1 / n_fft``-scaled filterbank, measured on ``rows``-frame chunks the first
    time and then the same for the whole process (one measurement at a time, under a lock, so that
    concurrent first calls neither disturb each other's timings nor get different blocks)."""
    key = (sr, n_fft, n_mels, fmin, fmax)
    with _lock:
        blocks = _chosen.get(key)
        if blocks is None:
            fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax) / n_fft
            support = filter_supports(fb)
            parts = [_partition(support, panel, call) for panel, call in _MODELS] + [((0, n_mels),)]
            parts = list(dict.fromkeys(parts))  # distinct, the default first
            blocks = _choose([_make_blocks(fb, support, p) for p in parts], fb.shape[1], n_mels, rows)
            if len(_chosen) >= 256:  # bounded: drop the oldest
                del _chosen[next(iter(_chosen))]
            _chosen[key] = blocks
    return blocks
