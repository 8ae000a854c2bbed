"""Reverberation: convolution with a room impulse response, and simulated rooms.

Part of spkid's on-the-fly waveform augmentation (:mod:`spkid.audio.augment`); the peers convolve speech
with RIRS_NOISES impulse responses (wespeaker, voxceleb_trainer). Without such files,
:func:`simulate_rir` draws a room from a statistical model.

:func:`reverberate` normalises the RIR to unit energy (``sum(rir**2) == 1``, so the reverberant speech keeps
roughly its power), aligns on the direct path (the RIR's largest-magnitude sample, as speechbrain and
Kaldi's ``wav-reverberate`` do) so the output is not delayed, and returns exactly ``len(y)`` samples.

:func:`simulate_rir` is the exponential-decay (Polack 1988, "La transmission de l'energie sonore dans les
salles") model of a diffuse field: after the direct path, the tail is Gaussian noise under the amplitude
envelope ``exp(-6.9 t / RT60)`` (``20 log10 e**-6.9 = -60 dB`` at ``t = RT60``, Sabine's definition of
the reverberation time), plus a few discrete early reflections (2-20 ms after the direct sound) under
the same envelope carrying a tenth of the tail's energy. The reverberant part is scaled to a
direct-to-reverberant ratio ``drr_db``.
Shapes: ``y`` mono float32 ``(n,)``; RIRs float32 ``(m,)``.
"""
from __future__ import annotations

import numpy as np

from spkid.audio.channels import _as_wave, _check_rng, _check_sr, _finite
from spkid.errors import AudioError, ConfigError

__all__ = ["normalize_rir", "reverberate", "simulate_rir", "schroeder_rt60"]


def normalize_rir(rir: np.ndarray) -> np.ndarray:
    """``rir / sqrt(sum(rir**2))``: unit energy, float32 ``(m,)``; a silent RIR raises AudioError."""
    h = _as_wave(rir, "rir").astype(np.float64)
    energy = float(np.sum(h * h))
    if energy <= 0.0:
        raise AudioError("impulse response is silent (all zeros)")
    return (h / np.sqrt(energy)).astype(np.float32)


def reverberate(y: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``y`` (n,) with ``rir`` (m,), energy-normalised and aligned on its direct path.

    The output ``z[t] = sum_k h[k] y[t + d - k]`` with ``h`` the unit-energy RIR and ``d = argmax |h|``:
    the direct sound lands where it was in ``y`` (no delay) and the tail follows. Computed with
    ``scipy.signal.oaconvolve`` in float32 (FFTs of float32 are about 1.5x faster than of float64 and
    agree to ~1e-6 of the peak); returns float32 ``(n,)``.
    """
    from scipy.signal import oaconvolve

    y = _as_wave(y)
    h = normalize_rir(rir)
    d = int(np.argmax(np.abs(h)))
    full = oaconvolve(y, h, mode="full")  # n + m - 1 >= d + n samples
    return full[d:d + len(y)].astype(np.float32)


def simulate_rir(sr: int, rt60: float, rng: np.random.Generator, *, drr_db: float | None = None,
                 reflections: int | None = None, max_delay_s: float = 0.005) -> np.ndarray:
    """A simulated room impulse response (see the module docstring for the model), unit energy.

    Parameters
    ----------
    sr : rate in Hz.
    rt60 : reverberation time in seconds (60 dB decay), 0.05-5.
    rng : the random generator (direct-path delay, reflections, tail noise, DRR).
    drr_db : direct-to-reverberant energy ratio in dB; None draws it from U(0, 10).
    reflections : number of early reflections; None draws 3-6.
    max_delay_s : the direct path arrives after U(0, max_delay_s) seconds (the onset delay real RIRs have).

    Returns
    -------
    rir : float32 ``(m,)`` with ``m = delay + ceil(1.2 * rt60 * sr)``, ``sum(rir**2) == 1``, its largest
        magnitude at the direct path.
    """
    sr = _check_sr(sr)
    rng = _check_rng(rng)
    rt60 = _finite(rt60, "rt60")
    if not 0.05 <= rt60 <= 5.0:
        raise ConfigError(f"simulate_rir: rt60 must be in [0.05, 5] s, got {rt60}")
    drr = float(rng.uniform(0.0, 10.0)) if drr_db is None else _finite(drr_db, "drr_db")
    n_ref = int(rng.integers(3, 7)) if reflections is None else int(reflections)
    delay = int(rng.integers(0, max(1, int(round(_finite(max_delay_s, "max_delay_s") * sr))) + 1))
    n_tail = int(np.ceil(1.2 * rt60 * sr))
    t = np.arange(n_tail) / sr
    env = np.exp(-6.9 * t / rt60)
    rev = rng.standard_normal(n_tail) * env
    rev[0] = 0.0  # the direct sound owns t = 0
    if n_ref > 0:
        lags = rng.integers(max(1, int(0.002 * sr)), max(2, min(int(0.020 * sr), n_tail)), size=n_ref)
        amps = rng.uniform(0.3, 0.8, size=n_ref) * rng.choice([-1.0, 1.0], size=n_ref)
        early = 0.1 * float(np.sum(rev * rev))  # the reflections carry a tenth of the tail's energy
        ref = np.zeros(n_tail)
        np.add.at(ref, lags, amps * env[lags])
        ref *= np.sqrt(early / max(float(np.sum(ref * ref)), 1e-30))
        rev += ref
    rev *= np.sqrt(10.0 ** (-drr / 10.0) / max(float(np.sum(rev * rev)), 1e-30))
    rev = np.clip(rev, -0.9, 0.9)  # keep the direct path the largest sample (the alignment point)
    rev[0] = 1.0
    h = np.concatenate([np.zeros(delay), rev])
    return (h / np.sqrt(np.sum(h * h))).astype(np.float32)


def schroeder_rt60(rir: np.ndarray, sr: int, *, db_range: tuple[float, float] = (-5.0, -35.0)) -> float:
    """Estimate RT60 by Schroeder backward integration (Schroeder 1965): the energy decay curve
    ``EDC(t) = sum_{k>=t} h[k]**2`` in dB is fitted by least squares between ``db_range`` (T30 by
    default) and extrapolated to -60 dB. Returns seconds."""
    h = _as_wave(rir, "rir").astype(np.float64)
    sr = _check_sr(sr)
    edc = np.cumsum((h * h)[::-1])[::-1]
    if edc[0] <= 0:
        raise AudioError("impulse response is silent (all zeros)")
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-300))
    hi, lo = db_range
    idx = np.nonzero((edc_db <= hi) & (edc_db >= lo))[0]
    if idx.size < 2:
        raise AudioError(f"impulse response decays too little to fit {hi}..{lo} dB")
    slope = np.polyfit(idx / sr, edc_db[idx], 1)[0]
    return float(-60.0 / slope)
