"""Additive noise at an exact SNR: white and coloured noise, given noise signals, babble.

Part of spkid's on-the-fly waveform augmentation (:mod:`spkid.audio.augment`), after the peers' recipes
(voxceleb_trainer: MUSAN noise at 0-15 dB SNR, babble of 3-7 other talkers at 13-20 dB; wespeaker adds
MUSAN on the fly). MUSAN is replaced by synthetic coloured noise when no noise files are given.

SNR rule: the signal-to-noise ratio is speech power over noise power, each the mean square over the
whole clip, ``10 log10(mean(y**2) / mean(noise**2))``; the noise is scaled so that the mixture
``y + noise`` has exactly the requested SNR (up to float32 rounding). A silent ``y`` (all zeros) has no
defined SNR and is returned unchanged, as is a mixture with a silent noise signal.

Coloured noise: white Gaussian noise shaped in the frequency domain to a power spectral density
``1 / f**alpha`` (amplitude ``f**(-alpha/2)``; white alpha=0, pink 1, brown/red 2, blue -1, violet -2),
the DC bin set to zero, then scaled to unit RMS. Shapes: ``y`` is mono float32 ``(n,)``; all outputs are
float32 ``(n,)``.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import scipy.fft

from spkid.audio.channels import _as_wave, _check_rng, _finite
from spkid.errors import ConfigError

__all__ = ["NOISE_COLORS", "colored_noise", "fit_to_length", "add_noise", "add_colored_noise", "babble"]

# colour name -> exponent alpha of the 1 / f**alpha power spectral density
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}


def _alpha(color: str | float) -> float:
    if isinstance(color, str):
        if color not in NOISE_COLORS:
            raise ConfigError(f"unknown noise colour {color!r}; known: {', '.join(NOISE_COLORS)}")
        return NOISE_COLORS[color]
    return _finite(color, "noise colour exponent alpha")


def colored_noise(n: int, rng: np.random.Generator, color: str | float = "white") -> np.ndarray:
    """``n`` samples of unit-RMS noise with a ``1 / f**alpha`` power spectrum (``color`` a name of
    :data:`NOISE_COLORS` or alpha itself). Returns float32 ``(n,)``."""
    rng = _check_rng(rng)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConfigError(f"colored_noise: n must be a positive integer, got {n!r}")
    alpha = _alpha(color)
    w = rng.standard_normal(int(n)).astype(np.float32)  # drawn in float64, shaped in float32: ~1e-7 relative
    if alpha != 0.0 and n > 2:
        w = scipy.fft.irfft(scipy.fft.rfft(w) * _shape(int(n), alpha), n=int(n))
    rms = np.float32(np.sqrt(np.mean(np.square(w, dtype=np.float64))))
    return w / rms if rms > 0 else w


@functools.lru_cache(maxsize=16)
def _shape(n: int, alpha: float) -> np.ndarray:
    """The amplitude ``f**(-alpha/2)`` over the ``n // 2 + 1`` rfft bins, DC zeroed; float32, read-only."""
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    amp = (f ** (-alpha / 2.0)).astype(np.float32)
    amp[0] = 0.0
    amp.flags.writeable = False
    return amp


def fit_to_length(noise: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tile ``noise`` (m,) until it covers ``n`` samples and crop it to ``n``; the crop starts at 0, or at a
    random offset drawn from ``rng`` when one is given. Returns float32 ``(n,)``."""
    noise = _as_wave(noise, "noise")
    m = len(noise)
    start = 0 if rng is None else int(_check_rng(rng).integers(0, m))
    if start + n <= m:
        return noise[start:start + n].copy()
    if n <= m:  # the tail, then the head: np.tile's samples without the tiled copy
        return np.concatenate([noise[start:], noise[:start + n - m]])
    reps = -(-(start + n) // m)
    return np.tile(noise, reps)[start:start + n]


def add_noise(y: np.ndarray, noise: np.ndarray, snr_db: float, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mix ``noise`` into ``y`` at exactly ``snr_db`` dB (speech power / noise power over the whole clip).

    ``noise`` of any length is tiled/cropped to ``len(y)`` (:func:`fit_to_length`, random offset when
    ``rng`` is given). A silent ``y`` or a silent noise is returned as a copy of ``y``. Returns float32 ``(n,)``.
    """
    y = _as_wave(y)
    snr_db = _finite(snr_db, "snr_db")
    nz = fit_to_length(noise, len(y), rng).astype(np.float64)
    p_speech = float(np.mean(np.square(y, dtype=np.float64)))
    p_noise = float(np.mean(nz * nz))
    if p_speech <= 0.0 or p_noise <= 0.0:
        return y.copy()
    scale = np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (y.astype(np.float64) + scale * nz).astype(np.float32)


def add_colored_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator, color: str | float = "white") -> np.ndarray:
    """Add synthetic :func:`colored_noise` to ``y`` at exactly ``snr_db`` dB. Returns float32 ``(n,)``."""
    y = _as_wave(y)
    return add_noise(y, colored_noise(len(y), rng, color), snr_db)


def babble(y: np.ndarray, talkers: Sequence[np.ndarray], snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Babble noise: other speakers' waveforms, summed, mixed into ``y`` at ``snr_db`` dB.

    Each talker (1-D, any length) is tiled/cropped to ``len(y)`` at a random offset, scaled to unit power
    (so every voice counts the same) and summed; the sum is mixed with :func:`add_noise`. Silent talkers
    contribute nothing. Returns float32 ``(n,)``.
    """
    y = _as_wave(y)
    rng = _check_rng(rng)
    if len(talkers) == 0:
        raise ConfigError("babble: need at least one talker waveform")
    total = np.zeros(len(y), dtype=np.float64)
    for i, t in enumerate(talkers):
        seg = fit_to_length(_as_wave(t, f"talkers[{i}]"), len(y), rng).astype(np.float64)
        p = float(np.mean(seg * seg))
        if p > 0.0:
            total += seg / np.sqrt(p)
    return add_noise(y, total, snr_db)
