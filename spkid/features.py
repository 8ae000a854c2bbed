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

Implementation: frames are strided views (no index arrays); pre-emphasis is applied per chunk and the
window multiply writes straight into a reused, zero-padded ``(frames, n_fft)`` float32 buffer; one
pocketfft real-FFT call (scipy's) transforms a whole chunk of frames into a reused complex64 buffer; the
spectrum is viewed as interleaved float32 (re, im) pairs, squared in place, and multiplied by the
filterbank with its rows duplicated for the (re, im) pairs -- so ``|X|^2``, the ``1/n_fft`` scale and the
filters are a few small single-threaded BLAS matmuls over blocks of filters that skip the filterbank's
zeros. Long clips are processed in chunks of :data:`CHUNK_FRAMES` frames, so memory beyond the output
is bounded; :func:`fbank_batch` packs the frames of many signals into the same chunks, so a batch of
short clips costs one FFT call per chunk. Results agree with a float64 computation to ~1e-4 in the log
wherever a filter holds more than ~1e-7 of its frame's power (float32's resolution).
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterable, Sequence

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from .config import FeatureConfig, round_half_up
from .errors import AudioError, ConfigError, FeatureError

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
#: Frames transformed per FFT call; bounds the working memory (about CHUNK_FRAMES * n_fft * 8 bytes).
CHUNK_FRAMES = 1024

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


#: Per-block cost of an extra matmul call, in multiply-adds per frame (tunes the block partition).
_BLOCK_OVERHEAD = 1500


def _partition(support: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split filters into contiguous blocks minimising the multiply-adds of a block-wise matmul.

    ``support[j] = (lo, hi)`` is filter ``j``'s nonzero bin range; a block of filters ``i..j-1`` costs
    ``(max hi - min lo) * (j - i) + _BLOCK_OVERHEAD``. Exact O(n^2) dynamic programme.
    """
    n = len(support)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        lo, hi = support[j - 1]
        for i in range(j - 1, -1, -1):
            lo, hi = min(lo, support[i][0]), max(hi, support[i][1])
            c = best[i] + (hi - lo) * (j - i) + _BLOCK_OVERHEAD
            if c < best[j]:
                best[j], cut[j] = c, i
    blocks, j = [], n
    while j > 0:
        blocks.append((cut[j], j))
        j = cut[j]
    return blocks[::-1]


@functools.lru_cache(maxsize=64)
def _plan(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, win: int, window: str,
          energy: bool):
    """Cached (window, blocks) for the fused power + filterbank product.

    Each block ``(c0, c1, j0, j1, weights)`` maps the interleaved (re, im) float32 columns ``c0:c1`` of
    the spectrum (bins ``c0/2 .. c1/2 - 1``), once squared, to output columns ``j0:j1``: ``weights`` is
    the filterbank slice with every bin row repeated for its real and imaginary part, scaled by
    ``1/n_fft``. Filters are grouped into blocks so that the zero parts of the filterbank are mostly
    skipped. ``energy`` adds a last column holding the total frame power (for MFCC's c0).
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
        blocks.append((2 * lo, 2 * hi, j0, j1, np.repeat(fb[j0:j1, lo:hi].T, 2, axis=0)))
    if energy:
        nb = fb.shape[1]
        blocks.append((0, 2 * nb, n_mels, n_mels + 1, np.full((2 * nb, 1), 1.0 / n_fft)))
    blocks = tuple(
        (c0, c1, j0, j1, np.ascontiguousarray(w, dtype=np.float32)) for c0, c1, j0, j1, w in blocks
    )
    w = np.asarray(_WINDOWS[window](win), dtype=np.float32)
    for arr in [w] + [b[4] for b in blocks]:
        arr.setflags(write=False)
    return w, blocks


class _Params:
    """Validated parameters of one fbank computation (rules live in FeatureConfig)."""

    __slots__ = ("sr", "win", "hop", "n_fft", "n_mels", "preemphasis", "log", "normalize",
                 "window", "blocks", "n_out")

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
        self.window, self.blocks = _plan(
            config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax, self.win,
            config.window, energy,
        )
        self.n_out = config.n_mels + int(energy)


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


def _fill_frames(dst: np.ndarray, y: np.ndarray, f0: int, f1: int, p: _Params) -> None:
    """Write pre-emphasised, windowed frames ``f0..f1-1`` of ``y`` into ``dst[:, :win]``."""
    win, hop = p.win, p.hop
    s0, s1 = f0 * hop, (f1 - 1) * hop + win  # samples covered by these frames
    seg = np.empty(s1 - s0, dtype=np.float32)
    avail = min(s1, y.size) - s0
    seg[avail:] = 0.0  # zero padding after the end of the signal
    a = p.preemphasis
    if s0 == 0:  # y[0] has no predecessor: it passes unchanged
        seg[0] = 0.0
        np.multiply(y[: avail - 1], -a, out=seg[1:avail])
    else:
        np.multiply(y[s0 - 1 : s0 + avail - 1], -a, out=seg[:avail])
    seg[:avail] += y[s0 : s0 + avail]
    frames = sliding_window_view(seg, win)[::hop]
    np.multiply(frames, p.window, out=dst[:, :win])


try:  # scipy's pocketfft binding accepts an output array; scipy.fft.rfft does not expose it
    from scipy.fft._pocketfft.pypocketfft import r2c as _r2c
except ImportError:  # pragma: no cover - other scipy builds
    _r2c = None

_workspace = threading.local()


def _buffers(rows: int, n_fft: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's reusable (frames, spectrum) buffers: no page faults or zeroing per call.

    ``frames[:, win:]`` must stay zero, so buffers are keyed by ``win`` too; callers only ever write
    ``frames[:, :win]``.
    """
    cache = _workspace.__dict__.setdefault("bufs", {})
    key = (rows, n_fft, win)
    if key not in cache:
        cache.clear()  # one live size per thread keeps the footprint at one chunk
        cache[key] = (np.zeros((rows, n_fft), np.float32), np.empty((rows, n_fft // 2 + 1), np.complex64))
    return cache[key]


def _rfft_into(buf: np.ndarray, spec: np.ndarray) -> np.ndarray:
    if _r2c is not None:
        try:
            return _r2c(buf, (1,), True, 0, spec, 1)
        except TypeError:  # pragma: no cover - signature changed
            pass
    return scipy.fft.rfft(buf, axis=1, workers=1)


def _mel_energies(buf: np.ndarray, spec: np.ndarray, p: _Params, out: np.ndarray) -> None:
    """``out = |rfft(buf)|^2 / n_fft @ filterbank`` for a (m, n_fft) frame buffer (block matmuls)."""
    spec = _rfft_into(buf, spec)  # (m, n_fft//2+1) complex64
    ri = spec.view(np.float32)  # (m, 2 * bins): interleaved (re, im)
    np.square(ri, out=ri)
    for c0, c1, j0, j1, w in p.blocks:
        out[:, j0:j1] = ri[:, c0:c1] @ w


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController()


def _single_threaded_blas():
    """Context keeping BLAS on one thread: the per-chunk matmuls are far too small to gain from
    threads, and with busy CPUs (data-loader workers) OpenBLAS' thread hand-offs cost 10-50x."""
    ctl = _blas_controller()
    return ctl.limit(limits=1, user_api="blas") if ctl is not None else contextlib.nullcontext()


def _energies_batch(ys: Sequence[np.ndarray], p: _Params) -> list[np.ndarray]:
    """Linear mel energies for each signal; frames of all signals share FFT calls of <= CHUNK_FRAMES."""
    with _single_threaded_blas():
        return _energies_batch_st(ys, p)


def _energies_batch_st(ys: Sequence[np.ndarray], p: _Params) -> list[np.ndarray]:
    counts = [n_frames(y.size, p.win, p.hop) for y in ys]
    outs = [np.empty((n, p.n_out), dtype=np.float32) for n in counts]
    total = sum(counts)
    frames, spectra = _buffers(CHUNK_FRAMES, p.n_fft, p.win)
    rows = min(CHUNK_FRAMES, max(total, 1))
    buf = frames[:rows]
    pending: list[tuple[int, int, int, int]] = []  # (signal, f0, f1, row)
    used = 0

    def flush() -> None:
        nonlocal used
        if used:
            mel = np.empty((used, p.n_out), dtype=np.float32)
            _mel_energies(buf[:used], spectra[:used], p, mel)
            for i, f0, f1, row in pending:
                outs[i][f0:f1] = mel[row : row + f1 - f0]
            pending.clear()
            used = 0

    for i, (y, n) in enumerate(zip(ys, counts)):
        f0 = 0
        while f0 < n:
            if used == buf.shape[0]:
                flush()
            f1 = min(n, f0 + buf.shape[0] - used)
            _fill_frames(buf[used : used + f1 - f0], y, f0, f1, p)
            pending.append((i, f0, f1, used))
            used += f1 - f0
            f0 = f1
    flush()
    return outs


def _finish(e: np.ndarray, p: _Params, normalize: bool = True) -> np.ndarray:
    """Floor, log and (optionally) normalise linear energies in place; FeatureError if non-finite."""
    np.maximum(e, EPS, out=e)  # NaN propagates through maximum, so the check below still sees it
    if p.log == "natural":
        np.log(e, out=e)
    else:
        np.log10(e, out=e)
        e *= 10.0
    # Any NaN/Inf makes its column sum non-finite: checking the sums costs no extra pass when the
    # mean is needed anyway.
    total = e.sum(axis=0, dtype=np.float64)
    if not np.isfinite(total).all():
        raise FeatureError("non-finite filterbank energies: the signal has NaN/Inf samples or overflows")
    if normalize:
        _normalize(e, p.normalize, total / max(len(e), 1))
    return e


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
    return _fbank_batch(list(ys), _Params(cfg))


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
    ConfigError : impossible parameters (checked by :class:`~spkid.config.FeatureConfig`).
    """
    return fbank_batch([y], sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                       n_fft=n_fft, preemphasis=preemphasis, window=window, fmin=fmin, fmax=fmax,
                       log=log, normalize=normalize)[0]


def fbank_from_config(y, config: FeatureConfig) -> np.ndarray:
    """:func:`fbank` of ``y`` (already at ``config.sr``) with every parameter from ``config``."""
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    return _fbank_batch([y], _Params(config))[0]


def extract_features(path_or_y, config: FeatureConfig, *, sr: int | None = None) -> np.ndarray:
    """Features of a file or a signal, per ``config``: ``(n_frames, n_mels)`` float32.

    A path is loaded with :func:`spkid.audio.load_audio` at ``config.sr``. An array is taken to be at
    ``sr`` Hz (default ``config.sr``) and resampled to ``config.sr`` when they differ.
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    if isinstance(path_or_y, (str, os.PathLike)):
        from .audio import load_audio

        y = load_audio(path_or_y, sr=config.sr, min_duration=0.0)
        p = _Params(config)
        if y.size < p.win:
            raise AudioError(
                f"too short for one {config.frame_length * 1000:g} ms frame ({y.size} samples at "
                f"{config.sr} Hz)", path=path_or_y,
            )
        return _fbank_batch([y], p)[0]
    y = _as_signal(path_or_y)
    if sr is not None and sr != config.sr:
        from .audio import resample

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
    p = _Params(cfg, energy=append_energy)
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
