"""The recipe's grids: the mel scale, the triangular mel filterbank, frame sizes and frame counts.

H. Fayek, "Speech Processing for Machine Learning: Filter banks, MFCCs and what's in-between" (2016),
as ``python_speech_features`` implements it: frames of ``win = round_half_up(frame_length * sr)``
samples every ``hop = round_half_up(frame_shift * sr)``, the signal zero-padded so that the last frame
is full (``n_frames = 1 + ceil((L - win) / hop)``); ``n_mels`` triangular filters equally spaced on the
mel scale ``m = 2595 log10(1 + f / 700)`` between ``fmin`` and ``fmax``, with edges on the FFT bins
``floor((n_fft + 1) * f / sr)``; energies floored at :data:`EPS` before the log.
"""
from __future__ import annotations

import functools

import numpy as np

from spkid._strict import round_half_up

__all__ = ["EPS", "hz_to_mel", "mel_to_hz", "mel_filterbank", "filter_supports", "frame_params", "n_frames"]

#: Floor applied to filterbank energies before the log (python_speech_features' choice: float64 eps).
EPS = float(np.finfo(np.float64).eps)


def frame_params(sr: int, frame_length: float, frame_shift: float) -> tuple[int, int]:
    """``(win, hop)`` in samples for frame length/shift in seconds (round half up, as
    python_speech_features: 0.01 s at 22,050 Hz is 221 samples, not 220)."""
    return round_half_up(frame_length * sr), round_half_up(frame_shift * sr)


def n_frames(n_samples: int, win: int, hop: int) -> int:
    """Number of frames of a signal of ``n_samples``: ``1 + ceil((n_samples - win) / hop)``, 0 when the
    signal is shorter than one frame."""
    if n_samples < win:
        return 0
    return 1 + -(-(n_samples - win) // hop)


def hz_to_mel(f):
    """The mel scale of the recipe (O'Shaughnessy's): ``2595 log10(1 + f / 700)``, float64."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`: ``700 (10^(m / 2595) - 1)``, float64."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=64)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filterbank ``(n_mels, n_fft // 2 + 1)`` float64 (read-only, cached).

    Filter ``j`` rises linearly from bin ``b[j]`` to ``b[j+1]`` and falls to ``b[j+2]``, where
    ``b = floor((n_fft + 1) * mel_to_hz(linspace(mel(fmin), mel(fmax), n_mels + 2)) / sr)``.
    """
    fmax = sr / 2 if fmax is None else fmax
    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    bins = np.floor((n_fft + 1) * mel_to_hz(mels) / sr)
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where((k >= lo) & (k < mid), (k - lo) / (mid - lo), 0.0)
        fall = np.where((k >= mid) & (k < hi), (hi - k) / (hi - mid), 0.0)
    fb = rise + fall
    fb.setflags(write=False)
    return fb


def filter_supports(fb: np.ndarray) -> list[tuple[int, int]]:
    """``(lo, hi)`` per filter: the range of bins holding its nonzero weights (``(0, 1)`` for a filter
    that is all zeros, which happens when mel edges share a bin)."""
    out = []
    for row in fb:
        nz = np.flatnonzero(row)
        out.append((int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1))
    return out
