"""Channel effects on a waveform: band-limiting, a telephone path, random equalisation, gain, speed.

Part of spkid's on-the-fly waveform augmentation (:mod:`spkid.audio.augment`). Every function takes a mono
float32 waveform ``y`` of shape ``(n,)`` at ``sr`` Hz and returns float32; all but :func:`speed_perturb`
keep the length ``n`` and add no delay (zero-phase filters).

- :func:`bandpass`: Butterworth band-pass run forwards and backwards (``scipy.signal.sosfiltfilt``'s
  algorithm, with a cheaper design and initial state: :func:`_butter_sos`, :func:`_sos_zi`), so the
  magnitude response is squared and the phase is zero.
- :func:`telephone`: the narrow-band telephone channel -- 300-3400 Hz band-pass (ITU-T G.712's pass band),
  resampling to 8 kHz and back with :func:`spkid.audio.io.resample` (libsoxr), and optionally 8-bit mu-law
  companding (ITU-T G.711, mu = 255) as a codec-like quantisation.
- :func:`equalize` / :func:`random_eq`: a smooth gain curve (dB at log-spaced frequencies, interpolated)
  applied as a linear-phase FIR (``scipy.signal.firwin2``) centred on each sample, i.e. without delay.
- :func:`gain`: a gain in dB.
- :func:`speed_perturb`: wespeaker's speed perturbation (factors 0.9 / 1.0 / 1.1; sox ``speed`` then
  ``rate`` back to ``sr``), done here as a libsoxr resampling from ``sr * factor`` to ``sr``: the clip
  becomes ``1 / factor`` times as long and its pitch moves by ``factor``. wespeaker counts each perturbed
  copy as a new speaker, so this changes labels and is not part of :class:`~spkid.audio.augment.Augmenter`.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np

from spkid.audio.io import resample
from spkid.errors import AudioError, ConfigError

__all__ = ["bandpass", "telephone", "mu_law", "equalize", "random_eq", "gain", "speed_perturb"]


def _as_wave(y: object, name: str = "y") -> np.ndarray:
    """``y`` as a finite, non-empty 1-D float32 array (no copy when it already is one); AudioError otherwise."""
    if type(y) is np.ndarray and y.dtype == np.float32 and y.ndim == 1 and y.size:  # the hot path
        if not np.isfinite(y).all():
            raise AudioError(f"{name} contains NaN or Inf samples")
        return y
    a = np.asarray(y)
    if a.ndim != 1 or a.size == 0:
        raise AudioError(f"{name} must be a non-empty 1-D mono waveform (n,), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise AudioError(f"{name} must hold real samples, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise AudioError(f"{name} contains NaN or Inf samples")
    return a


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _check_sr(sr: object) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ConfigError(f"sr must be a positive integer (Hz), got {sr!r}")
    return int(sr)


def _finite(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number, got {x!r}")
    return float(x)


@functools.lru_cache(maxsize=64)
def _butter_sos_cached(order: int, lo: float | None, hi: float | None, sr: int) -> np.ndarray:
    sos = _butter_sos(order, lo, hi, sr)
    sos.flags.writeable = False
    return sos


def _butter_sos(order: int, lo: float | None, hi: float | None, sr: int) -> np.ndarray:
    """Second-order sections ``(sections, 6)`` of scipy's digital Butterworth design (``butter(...,
    output="zpk")``: prewarped bilinear transform), paired here without ``zpk2sos``: for an even order every
    pole is one of conjugate pairs, so each section takes one pair and two of the zeros at z = +1 / -1
    (the gain in the first). The same transfer function as ``butter(..., output="sos")``, 10x cheaper to
    build, which matters when every training crop draws its own band edges; filtered outputs agree to
    ~1e-10 relative for orders 2 and 4. Odd orders and orders above 4 (where this pairing loses precision
    to the careful one) use ``zpk2sos``."""
    from scipy.signal import butter, zpk2sos

    if lo is not None and hi is not None:
        z, p, k = butter(order, [lo, hi], btype="bandpass", fs=sr, output="zpk")
    elif lo is not None:
        z, p, k = butter(order, lo, btype="highpass", fs=sr, output="zpk")
    else:
        z, p, k = butter(order, hi, btype="lowpass", fs=sr, output="zpk")
    upper = p[p.imag > 0]
    if order % 2 or order > 4 or 2 * len(upper) != len(p):  # a real pole, or steep: scipy's pairing
        return zpk2sos(z, p, k)
    zeros = np.sort(z.real)  # all at -1 or +1: pair them in order
    sos = np.zeros((len(upper), 6))
    sos[:, 0] = 1.0
    sos[:, 1] = -(zeros[0::2] + zeros[1::2])
    sos[:, 2] = zeros[0::2] * zeros[1::2]
    sos[:, 3] = 1.0
    sos[:, 4] = -2.0 * upper.real
    sos[:, 5] = np.abs(upper) ** 2
    sos[0, :3] *= k
    return sos


def _sos_zi(sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt_zi`` in closed form: each section's transposed-direct-form-II state at rest
    under a unit step, scaled by the DC gain of the sections before it. ``(sections, 2)``."""
    b, a = sos[:, :3], sos[:, 3:]
    dc = b.sum(axis=1) / a.sum(axis=1)  # each section's gain at z = 1
    scale = np.concatenate([[1.0], np.cumprod(dc)[:-1]])
    z2 = b[:, 2] - a[:, 2] * dc
    z1 = b[:, 1] + z2 - a[:, 1] * dc
    return np.stack([z1, z2], axis=1) * scale[:, None]


def _sosfiltfilt(sos: np.ndarray, x: np.ndarray, padlen: int) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x, padlen=padlen)`` (odd extension, steady-state initial
    conditions, forwards then backwards) with :func:`_sos_zi` instead of ``sosfilt_zi``'s linear solves."""
    from scipy.signal import sosfilt

    if padlen > 0:  # odd extension about the end samples: 2 x[0] - x[padlen:0:-1], ...
        x = np.concatenate([2 * x[0] - x[padlen:0:-1], x, 2 * x[-1] - x[-2:-padlen - 2:-1]])
    sos = np.array(sos)  # sosfilt wants a writeable array; the cached design is read-only
    zi = _sos_zi(sos)
    y = sosfilt(sos, x, zi=zi * x[0])[0]
    y = sosfilt(sos, y[::-1], zi=zi * y[-1])[0][::-1]
    return y[padlen:len(y) - padlen] if padlen > 0 else y


def bandpass(y: np.ndarray, sr: int, low_hz: float | None, high_hz: float | None, *, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass of ``y`` (n,) float32 at ``sr``: keeps ``low_hz``-``high_hz``.

    ``low_hz=None`` (or <= 0) makes it a low-pass, ``high_hz=None`` (or >= sr/2) a high-pass, both None
    returns a copy. ``order`` is the Butterworth order of each edge; the filter runs forwards and backwards
    (as ``scipy.signal.sosfiltfilt``, which doubles the slope to ``2 * 6 * order`` dB per octave and keeps
    the phase at zero). Designs of repeated edges (the telephone band) are cached. Returns float32 ``(n,)``.
    """
    y = _as_wave(y)
    sr = _check_sr(sr)
    nyq = sr / 2.0
    lo = None if low_hz is None or _finite(low_hz, "low_hz") <= 0 else float(low_hz)
    hi = None if high_hz is None or _finite(high_hz, "high_hz") >= nyq else float(high_hz)
    if lo is not None and hi is not None and not lo < hi:
        raise ConfigError(f"bandpass: low_hz ({lo}) must be below high_hz ({hi})")
    if lo is not None and lo >= nyq:
        raise ConfigError(f"bandpass: low_hz ({lo}) must be below sr / 2 ({nyq})")
    if lo is None and hi is None:
        return y.copy()
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ConfigError(f"bandpass: order must be a positive integer, got {order!r}")
    sos = _butter_sos_cached(int(order), lo, hi, sr)
    padlen = min(3 * (2 * len(sos) + 1), len(y) - 1)
    return _sosfiltfilt(sos, y.astype(np.float64), max(padlen, 0)).astype(np.float32)


def mu_law(y: np.ndarray, *, mu: int = 255) -> np.ndarray:
    """G.711-style mu-law companding round trip: compress, quantise to ``log2(mu + 1)`` bits, expand.

    Samples are clipped to [-1, 1] first. Returns float32 ``(n,)``.
    """
    y = np.clip(_as_wave(y).astype(np.float64), -1.0, 1.0)
    levels = int(mu)
    if levels < 1:
        raise ConfigError(f"mu must be a positive integer, got {mu!r}")
    c = np.sign(y) * np.log1p(levels * np.abs(y)) / np.log1p(levels)
    q = np.round((c + 1.0) / 2.0 * levels) / levels * 2.0 - 1.0  # mu + 1 levels in [-1, 1]
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(levels)) / levels).astype(np.float32)


def _fit_length(z: np.ndarray, n: int) -> np.ndarray:
    if len(z) >= n:
        return z[:n]
    return np.concatenate([z, np.zeros(n - len(z), dtype=z.dtype)])


def telephone(y: np.ndarray, sr: int, *, low_hz: float = 300.0, high_hz: float = 3400.0,
              codec_sr: int = 8000, use_mu_law: bool = False) -> np.ndarray:
    """Narrow-band telephone channel: band-pass ``low_hz``-``high_hz``, resample to ``codec_sr`` and back.

    With ``use_mu_law`` the 8 kHz signal is also mu-law companded (8 bit, G.711). Returns float32 ``(n,)``
    at ``sr`` (the length is restored exactly after the resampling round trip).
    """
    y = _as_wave(y)
    sr = _check_sr(sr)
    codec_sr = _check_sr(codec_sr)
    z = bandpass(y, sr, low_hz, min(float(high_hz), 0.99 * min(sr, codec_sr) / 2.0))
    z = resample(z, sr, codec_sr)
    if use_mu_law:
        z = mu_law(z)
    return _fit_length(resample(z, codec_sr, sr), len(y)).astype(np.float32, copy=False)


def equalize(y: np.ndarray, sr: int, freqs_hz: Sequence[float], gains_db: Sequence[float], *,
             numtaps: int = 257) -> np.ndarray:
    """Apply a gain curve: ``gains_db`` at ``freqs_hz`` (ascending, inside (0, sr/2)), interpolated in
    log-frequency and held flat beyond the ends, as a linear-phase FIR of ``numtaps`` (odd) taps centred on
    each output sample (no delay). Returns float32 ``(n,)``."""
    from scipy.signal import firwin2, oaconvolve

    y = _as_wave(y)
    sr = _check_sr(sr)
    f = np.asarray(freqs_hz, dtype=np.float64)
    g = np.asarray(gains_db, dtype=np.float64)
    nyq = sr / 2.0
    if f.ndim != 1 or f.shape != g.shape or f.size == 0 or not (np.isfinite(f).all() and np.isfinite(g).all()):
        raise ConfigError("equalize: freqs_hz and gains_db must be equally long, non-empty and finite")
    if not (np.all(np.diff(f) > 0) and f[0] > 0 and f[-1] < nyq):
        raise ConfigError(f"equalize: freqs_hz must ascend strictly inside (0, {nyq}) Hz, got {f.tolist()}")
    if numtaps < 3 or numtaps % 2 == 0:
        raise ConfigError(f"equalize: numtaps must be odd and >= 3, got {numtaps}")
    grid = np.linspace(0.0, nyq, 513)
    logf = np.log(np.maximum(grid, f[0] / 4.0))
    curve_db = np.interp(logf, np.log(f), g)
    h = firwin2(numtaps, grid, 10.0 ** (curve_db / 20.0), fs=sr, window="hann").astype(np.float32)
    return oaconvolve(y, h, mode="same").astype(np.float32)  # float32 FFTs: ~1e-6 of the peak


def random_eq(y: np.ndarray, sr: int, rng: np.random.Generator, *, max_db: float = 6.0, bands: int = 6,
              low_hz: float = 100.0) -> np.ndarray:
    """Random equalisation: a spectral tilt plus per-band ripple, within ``+-max_db``.

    ``bands`` log-spaced points from ``low_hz`` to 0.9 * sr/2 get gains ``tilt * (k / (bands-1) - 0.5) +
    U(-max_db/2, max_db/2)`` with ``tilt ~ U(-max_db, max_db)`` (so no point exceeds ``max_db``), applied
    with :func:`equalize`. Returns float32 ``(n,)``."""
    rng = _check_rng(rng)
    sr = _check_sr(sr)
    max_db = _finite(max_db, "max_db")
    if max_db < 0 or bands < 2:
        raise ConfigError(f"random_eq: need max_db >= 0 and bands >= 2, got {max_db}, {bands}")
    freqs = np.geomspace(low_hz, 0.9 * sr / 2.0, bands)
    tilt = rng.uniform(-max_db, max_db)
    gains = tilt * (np.arange(bands) / (bands - 1) - 0.5) + rng.uniform(-max_db / 2, max_db / 2, bands)
    return equalize(y, sr, freqs, gains)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """``y * 10 ** (db / 20)`` as float32 ``(n,)``."""
    return (_as_wave(y) * np.float32(10.0 ** (_finite(db, "db") / 20.0))).astype(np.float32, copy=False)


def speed_perturb(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """wespeaker's speed perturbation: play ``y`` ``factor`` times faster (0.9 / 1.1 in its recipes).

    Resamples with libsoxr (HQ) from ``sr * factor`` to ``sr``, so the result at ``sr`` has
    ``round(n / factor)`` samples and its pitch and tempo scaled by ``factor``. A new signal: callers
    give it a new speaker label (wespeaker treats each factor's copies as separate speakers).
    """
    import soxr

    y = _as_wave(y)
    sr = _check_sr(sr)
    factor = _finite(factor, "factor")
    if not 0.25 <= factor <= 4.0:
        raise ConfigError(f"speed_perturb: factor must be in [0.25, 4], got {factor}")
    if factor == 1.0:
        return y.copy()
    return soxr.resample(y, sr * factor, sr, quality="HQ").astype(np.float32, copy=False)
