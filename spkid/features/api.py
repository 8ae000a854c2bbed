"""Log-mel filterbank and MFCC features (the H. Fayek recipe, python_speech_features-compatible).

Recipe (H. Fayek, "Speech Processing for Machine Learning: Filter banks, MFCCs and what's in between",
2016; the same computation as ``python_speech_features.fbank`` with ``winfunc=numpy.hamming``):

1. pre-emphasis ``y[t] = x[t] - a * x[t-1]`` (``y[0] = x[0]``);
2. frames of ``win = round_half_up(frame_length * sr)`` samples every ``hop = round_half_up(frame_shift *
   sr)``, the signal zero-padded so the last frame is full: ``n_frames = 1 + ceil((L - win) / hop)``;
3. a window (``numpy.hamming`` by default) and the power spectrum ``|rfft(frame, n_fft)|**2 / n_fft``;
4. ``n_mels`` triangular filters equally spaced on the mel scale ``m = 2595 log10(1 + f / 700)`` between
   ``fmin`` and ``fmax``, with edges on FFT bins ``floor((n_fft + 1) * f / sr)``;
5. energies below ``EPS`` (float64 machine epsilon, as python_speech_features) are floored to it, then
   ``log="natural"`` takes ``ln`` and ``log="db"`` takes ``10 * log10`` of the power filterbank;
6. ``normalize="mean"`` subtracts each filter's mean over frames (cepstral mean normalisation);
   ``"meanvar"`` also divides by its standard deviation; ``None`` leaves the log energies alone.

Implementation (all float32, in reused, thread-local buffers): a chunk's pre-emphasised samples go to a
scratch segment; frames ``groups`` apart start ``groups * hop`` samples apart, so each group of frames
is that contiguous segment times a tiled, zero-padded window -- a few long multiplies instead of one
short one per frame (:func:`_window_frames`). The FFT inputs overlap by their zero padding: each is its
frame circularly shifted, which leaves the power spectrum as it is. One pocketfft real-FFT call
(scipy's) transforms the chunk, writing the spectra back in frame order through a permuted view; then
``|X|^2`` (``abs``, squared in place) and a few single-threaded BLAS matmuls over blocks of filters that
skip the filterbank's zeros (:func:`_partition`) write the mel energies straight into the output. Long
clips are processed in chunks of :data:`CHUNK_FRAMES` frames, so memory beyond the output is bounded;
:func:`fbank_batch` packs the frames of many signals into the same chunks, so a batch of short clips
costs one FFT call per chunk. Results agree with a float64 computation to ~1e-4 in the log wherever a
filter holds more than ~1e-7 of its frame's power (float32's resolution).
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Iterable, Sequence

import numpy as np
import scipy.fft

from spkid.features.config import FeatureConfig
from spkid._strict import round_half_up
from spkid.errors import AudioError, ConfigError, FeatureError

__all__ = [
    "EPS",
    "CHUNK_FRAMES",
    "mel_filterbank",
    "n_frames",
    "frame_params",
    "fbank",
    "fbank_batch",
    "fbank_from_config",
    "mfcc",
    "extract_features",
]

#: Floor applied to filterbank energies before the log (python_speech_features' choice).
EPS = float(np.finfo(np.float64).eps)
#: Frames transformed per FFT call; bounds the working memory (about 10 MB per thread at the defaults).
CHUNK_FRAMES = 2048

_WINDOWS = {
    "hamming": np.hamming,
    "hann": np.hanning,
    "rectangular": np.ones,
}


def frame_params(sr: int, frame_length: float, frame_shift: float) -> tuple[int, int]:
    """``(win, hop)`` in samples for frame length/shift in seconds (round half up)."""
    return round_half_up(frame_length * sr), round_half_up(frame_shift * sr)


def n_frames(n_samples: int, win: int, hop: int) -> int:
    """Number of frames of a signal of ``n_samples``: ``1 + ceil((n_samples - win) / hop)``."""
    if n_samples < win:
        return 0
    return 1 + -(-(n_samples - win) // hop)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=64)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filterbank ``(n_mels, n_fft // 2 + 1)`` float64 (read-only, cached).

    Filter ``j`` rises linearly from bin ``b[j]`` to ``b[j+1]`` and falls to ``b[j+2]``, where
    ``b = floor((n_fft + 1) * mel_to_hz(linspace(mel(fmin), mel(fmax), n_mels + 2)) / sr)``.
    """
    fmax = sr / 2 if fmax is None else fmax
    mels = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    bins = np.floor((n_fft + 1) * _mel_to_hz(mels) / sr)
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where((k >= lo) & (k < mid), (k - lo) / (mid - lo), 0.0)
        fall = np.where((k >= mid) & (k < hi), (hi - k) / (hi - mid), 0.0)
    fb = rise + fall
    fb.setflags(write=False)
    return fb


#: Cost model of one block matmul ``(frames, K) @ (K, N)``, in ns per frame (numpy's OpenBLAS with its
#: Haswell sgemm kernels, measured on 1024-frame chunks): a fixed cost per call plus ``K`` times a
#: per-``N`` rate. ``N = 1`` is a gemv; GEMM works on panels of 8 output columns, so ``N = 8`` costs
#: barely more than ``N = 4`` and widths 2, 3, 5-7 pay for padding. For 40 filters of a 512-point FFT
#: it picks five blocks of 8, which measure fastest among all partitions.
_CALL_COST = 4.5
_GEMV_CALL_COST = 2.4
_PER_K = (0.0, 0.036, 0.115, 0.19, 0.164, 0.238, 0.246, 0.322, 0.172)


def _block_cost(k: int, n: int) -> float:
    """Modelled time (ns per frame) of one block matmul with ``k`` inner and ``n`` output columns."""
    if n == 1:
        return _GEMV_CALL_COST + _PER_K[1] * k
    if n < len(_PER_K):
        return _CALL_COST + _PER_K[n] * k
    return _CALL_COST + _PER_K[8] / 8 * n * k * (1.0 if n % 8 == 0 else 1.2)


def _partition(support: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split filters into contiguous blocks minimising the modelled time of a block-wise matmul.

    ``support[j] = (lo, hi)`` is filter ``j``'s nonzero bin range; a block of filters ``i..j-1`` reads
    ``max hi - min lo`` power-spectrum columns and costs :func:`_block_cost`. Exact O(n^2) dynamic
    programme.
    """
    n = len(support)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        lo, hi = support[j - 1]
        for i in range(j - 1, -1, -1):
            lo, hi = min(lo, support[i][0]), max(hi, support[i][1])
            c = best[i] + _block_cost(hi - lo, j - i)
            if c < best[j]:
                best[j], cut[j] = c, i
    blocks, j = [], n
    while j > 0:
        blocks.append((cut[j], j))
        j = cut[j]
    return blocks[::-1]


@functools.lru_cache(maxsize=64)
def _plan(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, energy: bool):
    """Cached blocks of the filterbank product.

    Each block ``(c0, c1, j0, j1, weights)`` maps power-spectrum columns (bins) ``c0:c1`` to output
    columns ``j0:j1``: ``weights`` is the filterbank slice ``[j0:j1, c0:c1].T`` scaled by ``1/n_fft``.
    Filters are grouped into blocks (:func:`_partition`) so that the zero parts of the filterbank are
    mostly skipped. ``energy`` adds a last column holding the total frame power (for MFCC's c0).
    """
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax) / n_fft  # (n_mels, bins)
    support = []
    for row in fb:
        nz = np.flatnonzero(row)
        support.append((int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1))
    blocks = []
    for j0, j1 in _partition(support):
        lo = min(s[0] for s in support[j0:j1])
        hi = max(s[1] for s in support[j0:j1])
        blocks.append((lo, hi, j0, j1, fb[j0:j1, lo:hi].T))
    if energy:
        nb = fb.shape[1]
        blocks.append((0, nb, n_mels, n_mels + 1, np.full((nb, 1), 1.0 / n_fft)))
    blocks = tuple(
        (c0, c1, j0, j1, np.ascontiguousarray(w, dtype=np.float32)) for c0, c1, j0, j1, w in blocks
    )
    for b in blocks:
        b[4].setflags(write=False)
    return blocks


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


class _Params:
    """Validated parameters of one fbank computation (rules live in FeatureConfig)."""

    __slots__ = ("sr", "win", "hop", "groups", "stride", "lead", "n_fft", "n_mels", "preemphasis",
                 "log", "normalize", "window", "blocks", "n_out")

    def __init__(self, config: FeatureConfig, energy: bool = False):
        self.sr = config.sr
        self.win, self.hop = frame_params(config.sr, config.frame_length, config.frame_shift)
        if self.win > config.n_fft or self.hop < 1:
            raise ConfigError(
                f"frame of {self.win} samples / hop {self.hop} at sr={config.sr} does not fit "
                f"n_fft={config.n_fft}"
            )
        self.n_fft, self.n_mels = config.n_fft, config.n_mels
        self.preemphasis = np.float32(config.preemphasis)
        self.log, self.normalize = config.log, config.normalize
        # frame buffer layout (see _window_frames): frames ``groups`` apart are ``stride`` samples
        # apart, and a frame's n_fft-sample FFT input overlaps the next one's by ``lead`` zeros
        span = max(self.win, -(-(config.n_fft + self.win) // 2))
        self.groups = -(-span // self.hop)
        self.stride = self.groups * self.hop
        self.lead = max(0, config.n_fft - self.stride)
        self.window = _window_tile(config.window, self.win, self.stride, self.lead)
        self.blocks = _plan(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax, energy)
        self.n_out = config.n_mels + int(energy)


@functools.lru_cache(maxsize=64)
def _params(config: FeatureConfig, energy: bool = False) -> _Params:
    """Cached :class:`_Params` (configs are frozen, hashable dataclasses)."""
    return _Params(config, energy)


@functools.lru_cache(maxsize=256)
def _config(sr, n_mels, frame_length, frame_shift, n_fft, preemphasis, window, fmin, fmax, log,
            normalize) -> FeatureConfig:
    if isinstance(sr, float) and sr.is_integer():
        sr = int(sr)
    return FeatureConfig(sr=sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                         n_fft=n_fft, preemphasis=preemphasis, window=window, fmin=fmin, fmax=fmax,
                         log=log, normalize=normalize)


def _make_config(sr, **kw) -> FeatureConfig:
    try:
        return _config(sr, **kw)
    except TypeError as exc:  # unhashable argument (e.g. a list)
        raise ConfigError(f"invalid feature parameter: {exc}") from None


def _as_signal(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"expected a 1-D signal (n_samples,), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise FeatureError(f"expected a real-valued signal, got dtype {y.dtype}")
    return np.ascontiguousarray(y, dtype=np.float32)


def _preemphasise(seg: np.ndarray, o: int, y: np.ndarray, f0: int, f1: int, p: _Params) -> int:
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


def _window_frames(frames: np.ndarray, seg: np.ndarray, rows: int, p: _Params) -> None:
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

_workspace = threading.local()


def _buffers(rows: int, p: _Params) -> tuple[np.ndarray, ...]:
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
            _aligned_empty((cap, p.n_fft // 2 + 1), np.complex64),
            _aligned_empty(((cap - 1) * p.hop + p.stride,), np.float32),
            _aligned_empty((rows, p.n_out), np.float32),
        )
    return bufs


def _aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty`` on a 64-byte (cache line, AVX-512 vector) boundary; numpy only promises 16."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _rfft_grouped(frames: np.ndarray, spec: np.ndarray, rows: int, p: _Params) -> np.ndarray:
    """Spectra of the ``rows`` FFT inputs of :func:`_window_frames` (group order) into ``spec[:rows]``
    in frame order: pocketfft writes through a permuted view, so the reordering is free."""
    k, bins = p.groups, p.n_fft // 2 + 1
    u = rows // k
    src = np.ndarray((k, u, p.n_fft), np.float32, frames, 0, (u * p.stride * 4, p.stride * 4, 4))
    dst = spec[:rows].reshape(rows // k, k, bins).transpose(1, 0, 2)
    if _r2c is not None:
        try:
            _r2c(src, (2,), True, 0, dst, 1)
            return spec[:rows]
        except TypeError:  # pragma: no cover - signature changed
            pass
    dst[...] = scipy.fft.rfft(src, axis=2, workers=1)  # pragma: no cover - other scipy builds
    return spec[:rows]


def _mel_energies(spec: np.ndarray, power: np.ndarray, p: _Params, out: np.ndarray) -> None:
    """``out = |spec|^2 / n_fft @ filterbank`` (block matmuls); ``power`` is float32 scratch shaped
    like ``spec``."""
    np.abs(spec, out=power)  # |X| (hypot), then squared in place: the cheapest |X|^2 numpy offers
    np.square(power, out=power)
    for c0, c1, j0, j1, w in p.blocks:
        np.matmul(power[:, c0:c1], w, out=out[:, j0:j1])  # BLAS straight into the columns


@functools.lru_cache(maxsize=1)
def _blas_libs() -> tuple:
    """threadpoolctl's controllers of the loaded BLAS libraries (empty without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def _energies_batch(ys: Sequence[np.ndarray], p: _Params) -> list[np.ndarray]:
    """Linear mel energies for each signal; frames of all signals share FFT calls of <= CHUNK_FRAMES.

    BLAS runs on one thread meanwhile: the per-chunk matmuls are far too small to gain from threads,
    and with busy CPUs (data-loader workers) OpenBLAS' thread hand-offs cost 10-50x. Only libraries
    not already on one thread are touched (a ctypes call each), and they are restored afterwards.
    """
    restore = []
    try:
        for lib in _blas_libs():
            n = lib.get_num_threads()
            if n != 1:
                lib.set_num_threads(1)
                restore.append((lib, n))
        return _energies_batch_st(ys, p)
    finally:
        for lib, n in restore:
            lib.set_num_threads(n)


def _energies_batch_st(ys: Sequence[np.ndarray], p: _Params) -> list[np.ndarray]:
    counts = [n_frames(y.size, p.win, p.hop) for y in ys]
    outs = [np.empty((n, p.n_out), dtype=np.float32) for n in counts]
    frames, spectra, seg, mels = _buffers(CHUNK_FRAMES, p)
    k, hop, bins = p.groups, p.hop, p.n_fft // 2 + 1
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
        if len(pieces) == 1:  # one piece (from grid frame 0): straight into its output
            i, f0, f1, _ = pieces[0]
            _mel_energies(spec[:used], power, p, outs[i][f0:f1])
        else:
            _mel_energies(spec[:used], power, p, mels[:used])
            for i, f0, f1, g in pieces:
                outs[i][f0:f1] = mels[g : g + f1 - f0]
        pieces.clear()
        used = end = 0

    for i, (y, n) in enumerate(zip(ys, counts)):
        f0 = 0
        while f0 < n:
            g = used + gap if pieces else 0
            if g >= CHUNK_FRAMES:
                flush()
                g = 0
            f1 = min(n, f0 + CHUNK_FRAMES - g)
            seg[end : p.lead + g * hop] = 0.0
            end = _preemphasise(seg, p.lead + g * hop, y, f0, f1, p)
            pieces.append((i, f0, f1, g))
            used = g + f1 - f0
            f0 = f1
    if pieces:
        flush()
    return outs


def _finish(e: np.ndarray, p: _Params, normalize: bool = True) -> np.ndarray:
    """Floor, log and (optionally) normalise linear energies in place; FeatureError if non-finite."""
    if not e.min() >= EPS:  # (a NaN minimum fails too; NaN stays NaN, for the check below)
        np.copyto(e, EPS, where=e < EPS)  # = np.maximum(e, EPS), 3x faster
    if p.log == "natural":
        np.log(e, out=e)
    else:
        np.log10(e, out=e)
        e *= 10.0
    # Any NaN/Inf makes its column sum non-finite: checking the sums costs no extra pass when the
    # mean is needed anyway. float64 sums by a BLAS gemv (exact casts, float64 accumulation).
    # Summed in blocks of CHUNK_FRAMES rows so the float64 copy stays a chunk, not the whole clip.
    total = np.zeros(e.shape[1])
    for r0 in range(0, len(e), CHUNK_FRAMES):
        blk = e[r0:r0 + CHUNK_FRAMES]
        total += _ones(len(blk)) @ blk.astype(np.float64)
    if not np.isfinite(total).all():
        raise FeatureError("non-finite filterbank energies: the signal has NaN/Inf samples or overflows")
    if normalize:
        _normalize(e, p.normalize, total / max(len(e), 1))
    return e


_ONES = np.ones(0)


def _ones(n: int) -> np.ndarray:
    """A read-only float64 vector of ``n`` ones (shared, grown on demand)."""
    global _ONES
    if _ONES.size < n:
        ones = np.ones(max(n, 2 * _ONES.size))
        ones.setflags(write=False)
        _ONES = ones
    return _ONES[:n]


def _normalize(x: np.ndarray, how: str | None, mean: np.ndarray | None = None) -> None:
    """Per-column mean (and variance) normalisation in place; ``mean`` if already known."""
    if how is None:
        return
    x -= (x.mean(axis=0, dtype=np.float64) if mean is None else mean).astype(np.float32)
    if how == "meanvar":
        std = np.sqrt(np.einsum("ij,ij->j", x, x, dtype=np.float64) / max(len(x), 1))
        x /= np.maximum(std, 1e-8).astype(np.float32)


def _check_lengths(ys: Sequence[np.ndarray], p: _Params) -> None:
    for i, y in enumerate(ys):
        if y.size < p.win:
            which = "" if len(ys) == 1 else f"signal {i}: "
            raise FeatureError(
                f"{which}signal of {y.size} samples is shorter than one frame "
                f"({p.win} samples = {p.win / p.sr * 1000:.1f} ms at sr={p.sr})"
            )


def fbank_batch(
    ys: Iterable,
    sr: int,
    *,
    n_mels: int = 40,
    frame_length: float = 0.025,
    frame_shift: float = 0.010,
    n_fft: int = 512,
    preemphasis: float = 0.97,
    window: str = "hamming",
    fmin: float = 0.0,
    fmax: float | None = None,
    log: str = "natural",
    normalize: str | None = "mean",
) -> list[np.ndarray]:
    """:func:`fbank` of many signals, their frames packed into shared FFT calls.

    Returns a list of ``(n_frames_i, n_mels)`` float32 arrays, equal to ``[fbank(y, sr, ...) for y in
    ys]`` (each signal normalised on its own).
    """
    cfg = _make_config(sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                       n_fft=n_fft, preemphasis=preemphasis, window=window, fmin=fmin, fmax=fmax,
                       log=log, normalize=normalize)
    return _fbank_batch(list(ys), _params(cfg))


def _fbank_batch(ys: list, p: _Params) -> list[np.ndarray]:
    sigs = [_as_signal(y) for y in ys]
    _check_lengths(sigs, p)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf input is reported by _finish
        return [_finish(e, p) for e in _energies_batch(sigs, p)]


def fbank(
    y,
    sr: int,
    *,
    n_mels: int = 40,
    frame_length: float = 0.025,
    frame_shift: float = 0.010,
    n_fft: int = 512,
    preemphasis: float = 0.97,
    window: str = "hamming",
    fmin: float = 0.0,
    fmax: float | None = None,
    log: str = "natural",
    normalize: str | None = "mean",
) -> np.ndarray:
    """Log-mel filterbank energies of a signal (the recipe in the module docstring).

    Parameters
    ----------
    y : ``(n_samples,)`` signal at ``sr`` Hz, at least one frame long.
    sr : sample rate in Hz.
    n_mels, n_fft : filters and FFT size. frame_length, frame_shift : seconds.
    preemphasis : coefficient ``a`` in ``y[t] - a y[t-1]`` (0 disables).
    window : ``"hamming"`` | ``"hann"`` | ``"rectangular"`` (numpy's symmetric windows).
    fmin, fmax : filterbank band in Hz (``fmax=None`` is ``sr / 2``).
    log : ``"natural"`` (ln) or ``"db"`` (``10 log10`` of the power filterbank).
    normalize : ``"mean"`` | ``"meanvar"`` | ``None``, per filter over the frames.

    Returns
    -------
    ``(n_frames, n_mels)`` float32 with ``n_frames = 1 + ceil((n_samples - win) / hop)``.

    Raises
    ------
    FeatureError : the signal is not 1-D, shorter than one frame, or not finite.
    ConfigError : impossible parameters (checked by :class:`~spkid.features.config.FeatureConfig`).
    """
    return fbank_batch([y], sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                       n_fft=n_fft, preemphasis=preemphasis, window=window, fmin=fmin, fmax=fmax,
                       log=log, normalize=normalize)[0]


def fbank_from_config(y, config: FeatureConfig) -> np.ndarray:
    """:func:`fbank` of ``y`` (already at ``config.sr``) with every parameter from ``config``."""
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    return _fbank_batch([y], _params(config))[0]


def extract_features(path_or_y, config: FeatureConfig, *, sr: int | None = None) -> np.ndarray:
    """Features of a file or a signal, per ``config``: ``(n_frames, n_mels)`` float32.

    A path is loaded with :func:`spkid.audio.load_audio` at ``config.sr``. An array is taken to be at
    ``sr`` Hz (default ``config.sr``) and resampled to ``config.sr`` when they differ.
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    if isinstance(path_or_y, (str, os.PathLike)):
        from spkid.audio.io import load_audio

        y = load_audio(path_or_y, sr=config.sr, min_duration=0.0)
        p = _params(config)
        if y.size < p.win:
            raise AudioError(
                f"too short for one {config.frame_length * 1000:g} ms frame ({y.size} samples at "
                f"{config.sr} Hz)", path=path_or_y,
            )
        return _fbank_batch([y], p)[0]
    y = _as_signal(path_or_y)
    if sr is not None and sr != config.sr:
        from spkid.audio.io import resample

        y = resample(y, sr, config.sr)
    return fbank_from_config(y, config)


def mfcc(
    y,
    sr: int,
    *,
    n_mfcc: int = 13,
    lifter: int = 22,
    append_energy: bool = True,
    n_mels: int = 26,
    frame_length: float = 0.025,
    frame_shift: float = 0.010,
    n_fft: int = 512,
    preemphasis: float = 0.97,
    window: str = "hamming",
    fmin: float = 0.0,
    fmax: float | None = None,
    normalize: str | None = None,
) -> np.ndarray:
    """MFCCs as python_speech_features computes them: ``(n_frames, n_mfcc)`` float32.

    The DCT-II (orthonormal) of the natural-log power filterbank, coefficients ``0..n_mfcc-1``, then a
    sinusoidal lifter ``1 + (L/2) sin(pi n / L)`` (``lifter=0`` disables), and with ``append_energy`` the
    0th coefficient replaced by the log total frame energy. Fayek's recipe keeps coefficients 2-13:
    ``mfcc(...)[:, 1:]``. ``normalize`` (``"mean"``/``"meanvar"``) is applied to the cepstra last.
    """
    from scipy.fft import dct

    cfg = _make_config(sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                       n_fft=n_fft, preemphasis=preemphasis, window=window, fmin=fmin, fmax=fmax,
                       log="natural", normalize=None)
    if isinstance(n_mfcc, bool) or not isinstance(n_mfcc, int) or not 1 <= n_mfcc <= n_mels:
        raise ConfigError(f"n_mfcc must be an int in 1..n_mels={n_mels}, got {n_mfcc!r}")
    if isinstance(lifter, bool) or not isinstance(lifter, (int, float)) or lifter < 0:
        raise ConfigError(f"lifter must be a number >= 0, got {lifter!r}")
    if normalize not in (None, "mean", "meanvar"):
        raise ConfigError(f"normalize must be 'mean', 'meanvar' or None, got {normalize!r}")
    p = _params(cfg, append_energy)
    sig = _as_signal(y)
    _check_lengths([sig], p)
    with np.errstate(invalid="ignore", over="ignore"):
        e = _finish(_energies_batch([sig], p)[0], p, normalize=False)
    cep = dct(e[:, :n_mels], type=2, axis=1, norm="ortho")[:, :n_mfcc].astype(np.float32)
    if lifter > 0:
        cep *= (1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_mfcc) / lifter)).astype(np.float32)
    if append_energy:
        cep[:, 0] = e[:, n_mels]
    _normalize(cep, normalize)
    return cep
