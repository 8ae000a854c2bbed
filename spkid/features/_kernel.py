"""Private fast path of :mod:`spkid.features.api`: framing, window, real FFT, power and mel energies.

The recipe (H. Fayek 2016, as python_speech_features computes it) is stated in
:mod:`spkid.features.api`; this module computes the same numbers fast, all in float32, in reused
thread-local buffers, one chunk of :data:`CHUNK_FRAMES` frames at a time:

1. the chunk's pre-emphasised samples go to a scratch segment (:func:`_preemphasise`);
2. frames ``groups`` apart start ``stride = groups * hop`` samples apart, so each group of frames is that
   contiguous segment times a tiled, zero-padded window -- a few long multiplies instead of one short one
   per frame (:func:`_window_frames`). The FFT inputs overlap by their zero padding: each is its frame
   circularly shifted, which leaves the power spectrum as it is;
3. one pocketfft real-FFT call (scipy's, one thread) transforms the chunk, writing the spectra back in
   frame order through a permuted view (:func:`_rfft_grouped`);
4. ``|X|^2`` (``abs``, squared in place) and the filterbank product as BLAS block matmuls straight into
   the output, the blocks measured once per filterbank (:mod:`spkid.features._blocks`);
5. the chunk's energies are floored and logged, and their column sums taken, while in cache.

Chunks of 512 frames keep a chunk's buffers (~2 MB: FFT inputs, spectra) about the size of a core's L2
cache on current CPUs, bound the memory beyond the output whatever the clip's length, and cost ~20
numpy calls each, which is little per frame. :func:`log_energies` packs the frames of many signals into
the same chunks, so a batch of short clips costs one FFT call per chunk. Nothing here reads or changes
a process-wide setting (thread counts included): the FFT runs with one worker and the BLAS calls are
kept small enough to stay on the calling thread. Results agree with a float64 computation to ~1e-4 in
the log wherever a filter holds more than ~1e-7 of its frame's power (float32's resolution).
"""
from __future__ import annotations

import functools
import threading
from typing import Sequence

import numpy as np
import scipy.fft

from spkid.features._blocks import apply, energy_block, filterbank_blocks, rows_per_call
from spkid.features.config import FeatureConfig
from spkid.features.mel import EPS, frame_params, n_frames
from spkid.errors import ConfigError, FeatureError

__all__ = ["CHUNK_FRAMES", "Plan", "plan", "log_energies", "finish", "normalize"]

#: Frames transformed per FFT call (see the module docstring).
CHUNK_FRAMES = 512

_WINDOWS = {
    "hamming": np.hamming,
    "hann": np.hanning,
    "rectangular": np.ones,
}

#: Target length (floats) of the tiled window that :func:`_window_frames` multiplies by in one go.
_TILE = 5120


@functools.lru_cache(maxsize=64)
def _window_tile(window: str, win: int, stride: int, lead: int) -> np.ndarray:
    """The window with ``lead`` zeros before and zeros after up to ``stride`` samples, repeated
    ``max(1, _TILE // stride)`` times."""
    w = np.zeros(stride, dtype=np.float32)
    w[lead : lead + win] = _WINDOWS[window](win)
    tile = np.tile(w, max(1, _TILE // stride))
    tile.setflags(write=False)
    return tile


class Plan:
    """Validated parameters and the precomputed layout of one fbank computation (rules live in
    :class:`~spkid.features.config.FeatureConfig`)."""

    __slots__ = ("sr", "win", "hop", "groups", "stride", "lead", "n_fft", "n_bins", "n_mels", "preemphasis",
                 "log", "normalize", "window", "blocks", "n_out")

    def __init__(self, config: FeatureConfig, energy: bool = False):
        self.sr = config.sr
        self.win, self.hop = frame_params(config.sr, config.frame_length, config.frame_shift)
        if self.win > config.n_fft or self.hop < 1:
            raise ConfigError(
                f"frame of {self.win} samples / hop {self.hop} at sr={config.sr} does not fit "
                f"n_fft={config.n_fft}"
            )
        self.n_fft, self.n_mels, self.n_bins = config.n_fft, config.n_mels, config.n_fft // 2 + 1
        self.preemphasis = np.float32(config.preemphasis)
        self.log, self.normalize = config.log, config.normalize
        # frame buffer layout (see _window_frames): frames ``groups`` apart are ``stride`` samples
        # apart, and a frame's n_fft-sample FFT input overlaps the next one's by ``lead`` zeros
        span = max(self.win, -(-(config.n_fft + self.win) // 2))
        self.groups = -(-span // self.hop)
        self.stride = self.groups * self.hop
        self.lead = max(0, config.n_fft - self.stride)
        self.window = _window_tile(config.window, self.win, self.stride, self.lead)
        self.blocks = filterbank_blocks(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax,
                                        max(16, min(CHUNK_FRAMES, 512)))
        if energy:  # a last column holding the total frame power (MFCC's c0)
            self.blocks += (energy_block(self.n_bins, config.n_fft, self.n_mels),)
        self.n_out = config.n_mels + int(energy)


@functools.lru_cache(maxsize=64)
def plan(config: FeatureConfig, energy: bool = False) -> Plan:
    """Cached :class:`Plan` (configs are frozen, hashable dataclasses)."""
    return Plan(config, energy)


# ------------------------------------------------------------------------------ framing and FFT
def _preemphasise(seg: np.ndarray, o: int, y: np.ndarray, f0: int, f1: int, p: Plan) -> int:
    """Write the pre-emphasised samples under frames ``f0..f1-1`` of ``y`` to ``seg[o:]``, zero-padded
    after the end of the signal; returns the end offset in ``seg``."""
    s0, s1 = f0 * p.hop, (f1 - 1) * p.hop + p.win  # samples covered by these frames
    dst = seg[o : o + s1 - s0]
    avail = min(s1, y.size) - s0
    dst[avail:] = 0.0
    lo = 0
    if s0 == 0:  # y[0] has no predecessor: it passes unchanged
        dst[0] = y[0]
        lo = 1
    np.multiply(y[s0 + lo - 1 : s0 + avail - 1], -p.preemphasis, out=dst[lo:avail])
    np.add(dst[lo:avail], y[s0 + lo : s0 + avail], out=dst[lo:avail])
    return o + s1 - s0


def _window_frames(frames: np.ndarray, seg: np.ndarray, rows: int, p: Plan) -> None:
    """Windowed frames ``0..rows-1`` of ``seg`` (frame ``g`` starts at ``lead + g * hop``) into the
    flat buffer ``frames``, as FFT inputs for :func:`_rfft_grouped`.

    Frames ``groups`` apart start ``stride = groups * hop`` samples apart, so group ``c`` -- frames
    ``c, c + groups, ...`` -- laid ``stride`` apart is the contiguous segment ``seg[c * hop:]`` times
    the window (``lead`` zeros, the window, zeros up to ``stride``) tiled: a few long flat multiplies
    instead of one short row per frame. Group 0's ``rows / groups`` periods come first, then group
    1's, ... The FFT input of the frame in period ``r`` is the ``n_fft`` floats from ``r * stride``:
    when ``stride < n_fft`` they run ``lead`` floats into the next period, whose first ``lead`` floats
    are zeros, so each FFT input is the frame, circularly shifted by ``lead``, and zeros -- the same
    power spectrum. ``stride >= (n_fft + win) / 2`` makes this fit.
    """
    k, hop, stride = p.groups, p.hop, p.stride
    tile = p.window
    t = tile.size
    n = rows // k * stride  # floats per group
    full = n - n % t
    dst = frames[: k * n].reshape(k, n)
    if full:  # all groups at once: (group, tile, sample) views of seg and of the frame buffer
        src = np.ndarray((k, full // t, t), np.float32, seg, 0, (hop * 4, t * 4, 4))
        np.multiply(src, tile, out=dst[:, :full].reshape(k, full // t, t))
    if full < n:
        src = np.ndarray((k, n - full), np.float32, seg, full * 4, (hop * 4, 4))
        np.multiply(src, tile[: n - full], out=dst[:, full:])
    frames[k * n : k * n + p.lead] = 0.0  # the last FFT input runs past the last period


try:  # scipy's pocketfft binding accepts an output array; scipy.fft.rfft does not expose it
    from scipy.fft._pocketfft.pypocketfft import r2c as _r2c
except ImportError:  # pragma: no cover - other scipy builds
    _r2c = None


def _rfft_grouped(frames: np.ndarray, spec: np.ndarray, rows: int, p: Plan) -> np.ndarray:
    """Spectra of the ``rows`` FFT inputs of :func:`_window_frames` (group order) into ``spec[:rows]``
    in frame order: pocketfft writes through a permuted view, so the reordering is free."""
    k, bins = p.groups, p.n_bins
    u = rows // k
    src = np.ndarray((k, u, p.n_fft), np.float32, frames, 0, (u * p.stride * 4, p.stride * 4, 4))
    dst = spec[:rows].reshape(rows // k, k, bins).transpose(1, 0, 2)
    if _r2c is not None:
        try:
            _r2c(src, (2,), True, 0, dst, 1)  # (axes, forward, normalisation, out, one thread)
            return spec[:rows]
        except TypeError:  # pragma: no cover - signature changed
            pass
    dst[...] = scipy.fft.rfft(src, axis=2, workers=1)  # pragma: no cover - other scipy builds
    return spec[:rows]


_workspace = threading.local()


def _aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty`` on a 64-byte (cache line, AVX-512 vector) boundary; numpy only promises 16."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _buffers(rows: int, p: Plan) -> tuple[np.ndarray, ...]:
    """This thread's reusable buffers for chunks of ``rows`` frames -- FFT inputs (flat, see
    :func:`_window_frames`; later the power spectrum), spectra, pre-emphasised segment, energies --
    so no page faults or allocations per call. Chunks are rounded up to whole groups of frames."""
    cache = _workspace.__dict__.setdefault("bufs", {})
    key = (rows, p.n_fft, p.stride, p.hop, p.n_out)
    bufs = cache.get(key)
    if bufs is None:
        cache.clear()  # one live size per thread keeps the footprint at one chunk
        cap = rows + p.groups - 1
        bufs = cache[key] = (
            _aligned_empty((cap * p.stride + p.lead,), np.float32),
            _aligned_empty((cap, p.n_bins), np.complex64),
            _aligned_empty(((cap - 1) * p.hop + p.stride,), np.float32),
            _aligned_empty((rows, p.n_out), np.float32),
        )
    return bufs


def _mel_energies(spec: np.ndarray, power: np.ndarray, p: Plan, out: np.ndarray) -> None:
    """``out = |spec|^2 / n_fft @ filterbank`` (block matmuls); ``power`` is float32 scratch shaped
    like ``spec``."""
    np.abs(spec, out=power)  # |X| (hypot), then squared in place: the cheapest |X|^2 numpy offers
    np.square(power, out=power)
    apply(p.blocks, power, out)


# ------------------------------------------------------------------------------ chunks of signals
def log_energies(ys: Sequence[np.ndarray], p: Plan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Log mel energies ``(n_frames_i, n_out)`` float32 of each float32 signal, and their float64
    column sums (for the mean, and the finiteness check of :func:`finish`). Frames of all signals share
    FFT calls of at most :data:`CHUNK_FRAMES` frames; each chunk is floored and logged while it is in
    cache."""
    chunk = CHUNK_FRAMES
    counts = [n_frames(y.size, p.win, p.hop) for y in ys]
    outs = [np.empty((n, p.n_out), dtype=np.float32) for n in counts]
    sums = [np.zeros(p.n_out) for _ in counts]
    frames, spectra, seg, mels = _buffers(chunk, p)
    k, hop, bins = p.groups, p.hop, p.n_bins
    # A chunk is one run of frames on a common hop grid in ``seg``; pieces of different signals are
    # separated by ``gap`` unused frames so that their samples do not overlap.
    gap = -(-p.win // hop) - 1
    pieces: list[tuple[int, int, int, int]] = []  # (signal, f0, f1, first grid frame)
    used = end = 0  # grid frames in use; end of the samples written to seg (frame g starts at
    # seg[lead + g * hop], after the zeros that the first frame's padding reads)

    def flush() -> None:
        nonlocal used, end
        rows = -(-used // k) * k
        seg[end : (rows - 1) * hop + p.stride] = 0.0  # gaps and the tail read by the last groups
        _window_frames(frames, seg, rows, p)
        spec = _rfft_grouped(frames, spectra, rows, p)
        # the power spectrum reuses the frame buffer's memory (contiguous)
        power = frames[: used * bins].reshape(used, bins)
        one = len(pieces) == 1  # one piece (from grid frame 0): straight into its output
        dst = outs[pieces[0][0]][pieces[0][1] : pieces[0][2]] if one else mels[:used]
        _mel_energies(spec[:used], power, p, dst)
        _log(dst, p.log)
        for i, f0, f1, g in pieces:
            part = dst[g : g + f1 - f0]
            sums[i] += _column_sums(part)
            if not one:
                outs[i][f0:f1] = part
        pieces.clear()
        used = end = 0

    for i, (y, n) in enumerate(zip(ys, counts)):
        f0 = 0
        while f0 < n:
            g = used + gap if pieces else 0
            if g >= chunk:
                flush()
                g = 0
            f1 = min(n, f0 + chunk - g)
            seg[end : p.lead + g * hop] = 0.0
            end = _preemphasise(seg, p.lead + g * hop, y, f0, f1, p)
            pieces.append((i, f0, f1, g))
            used = g + f1 - f0
            f0 = f1
    if pieces:
        flush()
    return outs, sums


# ------------------------------------------------------------------------------ log and normalisation
def _log(e: np.ndarray, log: str) -> None:
    """Floor at :data:`~spkid.features.mel.EPS`, then ``ln`` or ``10 log10``, in place."""
    if not e.min() >= EPS:  # (a NaN minimum fails too; NaN stays NaN, for finish's check)
        np.copyto(e, EPS, where=e < EPS)  # = np.maximum(e, EPS), 3x faster
    if log == "natural":
        np.log(e, out=e)
    else:
        np.log10(e, out=e)
        e *= 10.0


_ONES = np.ones(0)


def _column_sums(x: np.ndarray) -> np.ndarray:
    """float64 column sums of a float32 matrix by BLAS gemvs (exact casts, float64 accumulation), in
    blocks of rows that keep the float64 copy small and each gemv on this thread."""
    global _ONES
    step = rows_per_call(x.shape[1], 1)
    if _ONES.size < min(step, len(x)):
        _ONES = np.ones(step)
        _ONES.setflags(write=False)
    total = np.zeros(x.shape[1])
    for r0 in range(0, len(x), step):
        blk = x[r0 : r0 + step]
        total += _ONES[: len(blk)] @ blk.astype(np.float64)
    return total


def finish(e: np.ndarray, total: np.ndarray, p: Plan, normalize_: bool = True) -> np.ndarray:
    """Check the log energies ``e`` (column sums ``total``) of :func:`log_energies` and normalise them
    in place per ``p.normalize`` (unless ``normalize_`` is false). Any NaN/Inf makes its column sum
    non-finite: checking the sums costs no extra pass. FeatureError if any is non-finite."""
    if not np.isfinite(total).all():
        raise FeatureError("non-finite filterbank energies: the signal has NaN/Inf samples or overflows")
    if normalize_:
        normalize(e, p.normalize, total / max(len(e), 1))
    return e


def normalize(x: np.ndarray, how: str | None, mean: np.ndarray | None = None) -> None:
    """Per-column mean (``"mean"``) and variance (``"meanvar"``) normalisation in place; ``mean`` if
    already known."""
    if how is None:
        return
    x -= (x.mean(axis=0, dtype=np.float64) if mean is None else mean).astype(np.float32)
    if how == "meanvar":
        std = np.sqrt(np.einsum("ij,ij->j", x, x, dtype=np.float64) / max(len(x), 1))
        x /= np.maximum(std, 1e-8).astype(np.float32)
