"""Synthetic voices for the built-in demo corpus: a source-filter synthesiser (numpy/scipy only, no download).

What it is
----------
A classic source-filter model (Fant 1960; Klatt 1980) rendered in the short-time Fourier domain:

- **source** -- a glottal flow pulse train after Rosenberg (1971), differentiated (lip radiation), on a
  pitch contour with declination and slow intonation; cycle-to-cycle *jitter* (period) and *shimmer*
  (amplitude), pulsed aspiration noise (*breathiness*), an extra *spectral tilt* (dB/octave);
- **filter** -- a cascade of five formant resonators whose frequencies are a shared vowel/consonant
  inventory (Peterson & Barney 1952 averages, male reference) scaled by the speaker's *vocal-tract
  length* factor, plus small speaker-specific per-vowel offsets (an "accent") and speaker-specific
  upper formants F4/F5 (which depend mostly on the speaker, not the vowel); nasals add an anti-resonance;
- **utterances** -- random syllable sequences (C)V(C) of vowels, approximants and nasals (voiced,
  formant targets), fricatives (shaped noise), plosives (closure + burst) and short pauses, at the
  speaker's *speaking rate*; formant tracks are interpolated between segment targets and gains are
  smoothed, so transitions are gradual (coarticulation);
- **recording** -- every utterance gets its own mood (pitch offset), a random smooth channel
  equaliser, a background noise level (SNR 12-35 dB) and a loudness, so no single spectral statistic
  identifies the speaker.

Speakers are drawn around two "voice types" (lower/longer and higher/shorter tracts) with overlapping
ranges, so several speakers of a corpus resemble each other; ``spread`` scales how far apart speakers of
a type are. With the defaults (8 speakers x 24 clips, ``spread=1.5``) a logistic regression on each
clip's mean log-mel spectrum scores 84% (seed 0) / 89% (seed 1) in 4-fold cross-validation (chance
12.5%); ``spread=0.6`` brings it to about 73%. The small CNN of ``spkid demo`` (15 epochs, 132 training
clips) reaches about 70-80% top-1 on the 38 held-out clips, after one epoch it is still near chance. So the task is
learnable but not trivial (``tests/core/test_synthetic.py`` checks the linear baseline stays in between).

What it is not
--------------
Not speech: there are no words, no prosody beyond a pitch contour, no real glottal or articulatory
dynamics, no reverberation. It exists so that ``spkid demo``, the examples and the tests can run the whole
pipeline offline in seconds. Accuracy on it says nothing about accuracy on real speakers; the project's
accuracy figures come from real recordings (``../shared/data``), never from this corpus.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.signal

from spkid.errors import ConfigError

__all__ = ["SpeakerProfile", "make_speakers", "synthesize_utterance"]

# Vowel formants F1-F3 in Hz (Peterson & Barney 1952, adult male averages).
_VOWELS = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "E": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "A": (730, 1090, 2440), "O": (570, 840, 2410), "U": (440, 1020, 2240), "u": (300, 870, 2240),
    "V": (640, 1190, 2390), "3": (490, 1350, 1690),
}
# Voiced consonants: (F1, F2, F3, nasal anti-resonance Hz or 0).
_VOICED_C = {
    "m": (280, 1000, 2200, 1000), "n": (280, 1400, 2500, 1600), "l": (360, 1300, 2700, 0),
    "r": (310, 1060, 1380, 0), "w": (290, 610, 2150, 0), "j": (260, 2070, 3020, 0),
}
# Fricatives: (centre Hz, bandwidth Hz, relative level, F2 locus Hz, voiced).
_FRICATIVES = {
    "s": (5500, 2500, 0.5, 1800, False), "S": (3000, 1800, 0.5, 1900, False),
    "f": (4500, 7000, 0.15, 1000, False), "T": (6000, 6000, 0.12, 1400, False),
    "h": (1500, 3000, 0.12, 1500, False), "z": (5500, 2500, 0.3, 1800, True),
    "v": (4500, 7000, 0.1, 1000, True),
}
# Plosives: (burst centre Hz, burst bandwidth Hz, F2 locus Hz).
_PLOSIVES = {"p": (800, 2000, 900), "t": (4500, 3000, 1800), "k": (2200, 1500, 2000),
             "b": (800, 2000, 900), "d": (4500, 3000, 1800), "g": (2200, 1500, 2000)}
_VOWEL_NAMES = tuple(_VOWELS)
_ONSETS = tuple(_VOICED_C) + tuple(_FRICATIVES) + tuple(_PLOSIVES)
_CODAS = ("m", "n", "l", "r", "s", "S", "f", "z", "t", "k", "d", "p")
_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0, 250.0])
_N_FFT = 512
_HOP = 128


@dataclasses.dataclass(frozen=True)
class SpeakerProfile:
    """The voice of one synthetic speaker.

    ``f0`` mean pitch (Hz); ``f0_range`` intonation depth (semitones); ``vtl`` formant scale factor
    (1 = the male reference tract, > 1 = a shorter tract); ``f4``/``f5`` upper formants (Hz, before
    scaling); ``accent`` (n_vowels, 3) relative offsets of each vowel's F1-F3; ``bandwidth`` scale of the
    formant bandwidths; ``open_quotient`` and ``tilt`` (dB/octave) shape the source spectrum; ``jitter``
    and ``shimmer`` relative cycle-to-cycle perturbations; ``breathiness`` aspiration level; ``rate``
    speaking-rate factor (> 1 = faster); ``nasality`` how much a nasal zero leaks into vowels.
    """

    name: str
    f0: float
    f0_range: float
    vtl: float
    f4: float
    f5: float
    accent: tuple[tuple[float, float, float], ...]
    bandwidth: float
    open_quotient: float
    tilt: float
    jitter: float
    shimmer: float
    breathiness: float
    rate: float
    nasality: float


def make_speakers(n_speakers: int = 8, *, seed: int = 0, spread: float = 1.5) -> list[SpeakerProfile]:
    """``n_speakers`` seeded random voices named ``spk00``, ``spk01``, ...

    Half are drawn around a lower, longer-tract voice type, half around a higher one; ``spread`` scales
    how far speakers of a type differ from each other (smaller = harder to tell apart).
    """
    if n_speakers < 1:
        raise ConfigError(f"n_speakers must be >= 1, got {n_speakers}")
    if not spread > 0:
        raise ConfigError(f"spread must be > 0, got {spread}")
    rng = np.random.default_rng([seed, 7919])
    s = spread

    def around(mid: float, half_width: float) -> float:  # uniform in mid +- spread * half_width
        return float(mid + s * half_width * rng.uniform(-1.0, 1.0))

    out = []
    for i in range(n_speakers):
        high = i % 2 == 1
        out.append(SpeakerProfile(
            name=f"spk{i:02d}",
            f0=float((190.0 if high else 120.0) * np.exp(rng.normal(0, 0.12 * s))),
            f0_range=around(2.5, 1.5),
            vtl=float((1.14 if high else 1.0) * np.exp(rng.normal(0, 0.035 * s))),
            f4=float(3400.0 * np.exp(rng.normal(0, 0.04 * s))),
            f5=float(4500.0 * np.exp(rng.normal(0, 0.04 * s))),
            accent=tuple(tuple(float(v) for v in rng.normal(0, 0.035 * s, 3)) for _ in _VOWEL_NAMES),
            bandwidth=float(np.exp(rng.normal(0, 0.2 * s))),
            open_quotient=float(np.clip(rng.normal(0.55, 0.07 * s), 0.35, 0.75)),
            tilt=float(np.clip(rng.normal(-2.0, 2.0 * s), -6.0, 2.0)),
            jitter=around(0.01, 0.008),
            shimmer=around(0.06, 0.04),
            breathiness=around(0.12, 0.1),
            rate=float(np.exp(rng.normal(0, 0.12 * s))),
            nasality=around(0.2, 0.2),
        ))
    return out


# ------------------------------------------------------------------------------------------- timeline
def _syllables(rng: np.random.Generator, duration: float, rate: float) -> list[tuple[str, float]]:
    """A random (C)V(C) phone sequence with pauses, as (phone, seconds) pairs filling ``duration``."""
    seq: list[tuple[str, float]] = [("_", rng.uniform(0.08, 0.2))]
    total = seq[0][1]
    while total < duration - 0.1:
        syl = []
        if rng.random() < 0.8:
            syl.append(str(rng.choice(_ONSETS)))
        syl.append(str(rng.choice(_VOWEL_NAMES)))
        if rng.random() < 0.35:
            syl.append(str(rng.choice(_CODAS)))
        if rng.random() < 0.12:
            syl.append("_")
        for ph in syl:
            if ph in _VOWELS:
                d = rng.uniform(0.09, 0.22)
            elif ph in _PLOSIVES:
                d = rng.uniform(0.06, 0.1)
            elif ph == "_":
                d = rng.uniform(0.06, 0.2)
            else:
                d = rng.uniform(0.05, 0.12)
            d /= rate
            seq.append((ph, d))
            total += d
    seq.append(("_", max(0.08, duration - total)))
    return seq


def _targets(ph: str, prof: SpeakerProfile, prev_f: np.ndarray) -> dict:
    """Per-phone control targets: formants (5,), voicing, aspiration, frication, nasal zero."""
    f = prev_f.copy()
    t = {"voice": 0.0, "asp": 0.0, "fric": 0.0, "fc": 4000.0, "fbw": 3000.0, "zero": 0.0, "burst": False}
    if ph in _VOWELS:
        k = _VOWEL_NAMES.index(ph)
        f[:3] = np.asarray(_VOWELS[ph]) * (1.0 + np.asarray(prof.accent[k]))
        t["voice"] = 1.0
        t["zero"] = 1800.0 * prof.nasality if prof.nasality > 0.2 else 0.0
    elif ph in _VOICED_C:
        f1, f2, f3, zero = _VOICED_C[ph]
        f[:3] = (f1, f2, f3)
        t["voice"] = 0.45 if zero else 0.6
        t["zero"] = float(zero)
    elif ph in _FRICATIVES:
        fc, bw, lvl, locus, voiced = _FRICATIVES[ph]
        f[1] = locus
        t.update(fric=lvl, fc=fc, fbw=bw, voice=0.25 if voiced else 0.0)
        if ph == "h":
            t.update(fric=0.0, asp=0.3)
    elif ph in _PLOSIVES:
        fc, bw, locus = _PLOSIVES[ph]
        f[1] = locus
        t.update(fric=0.6, fc=fc, fbw=bw, burst=True, voice=0.15 if ph in "bdg" else 0.0)
    f[3], f[4] = prof.f4, prof.f5
    t["f"] = f * prof.vtl
    t["fc"] *= prof.vtl
    t["fbw"] *= prof.vtl
    return t


def _controls(seq, prof: SpeakerProfile, n_frames: int, frame_rate: float) -> dict[str, np.ndarray]:
    """Frame-rate control tracks (n_frames, ...) with interpolated formants and smoothed gains."""
    keys = ("voice", "asp", "fric", "fc", "fbw", "zero")
    tracks = {k: np.zeros(n_frames) for k in keys}
    tracks["fc"][:], tracks["fbw"][:] = 4000.0, 3000.0  # frames after the last segment (rounding)
    centres, formants = [], []
    prev_f = np.asarray(_VOWELS["V"] + (3400.0, 4500.0), dtype=float)
    start = 0.0
    for ph, d in seq:
        t = _targets(ph, prof, prev_f)
        a, b = int(start * frame_rate), max(int((start + d) * frame_rate), int(start * frame_rate) + 1)
        b = min(b, n_frames)
        if a >= n_frames:
            break
        for k in keys:
            tracks[k][a:b] = t[k]
        if t["burst"]:  # closure (silence), then the burst in the last ~25% of the segment
            burst_at = a + int(0.7 * (b - a))
            tracks["fric"][a:burst_at] = 0.0
            tracks["voice"][a:burst_at] *= 0.5
            tracks["asp"][burst_at:b] = 0.15
        centres.append((start + d / 2) * frame_rate)
        formants.append(t["f"])
        if ph in _VOWELS or ph in _VOICED_C:
            prev_f = t["f"] / prof.vtl
        start += d
    frames = np.arange(n_frames)
    formants = np.asarray(formants)
    f = np.stack([np.interp(frames, centres, formants[:, j]) for j in range(5)], axis=1)
    kernel = np.hanning(5)
    kernel /= kernel.sum()
    smooth = {k: np.convolve(tracks[k], kernel, mode="same") for k in ("voice", "asp", "fric")}
    return {**tracks, **smooth, "f": f}


# --------------------------------------------------------------------------------------------- source
def _rosenberg(phase: np.ndarray, open_q: float) -> np.ndarray:
    """Rosenberg (1971) glottal flow over one cycle; ``phase`` in [0, 1). Opening 60%, closing 40% of
    the open phase."""
    rise, fall = 0.6 * open_q, 0.4 * open_q
    g = np.zeros_like(phase)
    up = phase < rise
    down = (phase >= rise) & (phase < rise + fall)
    g[up] = 0.5 * (1.0 - np.cos(np.pi * phase[up] / rise))
    g[down] = np.cos(0.5 * np.pi * (phase[down] - rise) / fall)
    return g


def _glottal_source(prof: SpeakerProfile, n: int, sr: int, rng: np.random.Generator, mood: float) -> np.ndarray:
    """Differentiated glottal flow with jitter, shimmer and pulsed aspiration noise, (n,) float64."""
    t = np.arange(n) / sr
    dur = n / sr
    semis = prof.f0_range * sum(
        rng.normal(0, 0.6) * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 2 * np.pi))
        for _ in range(2)
    )
    f0 = prof.f0 * mood * 2.0 ** ((semis - 1.5 * t / dur) / 12.0)  # intonation + declination
    phase = np.cumsum(f0 / sr)
    n_cycles = int(phase[-1]) + 2
    jit = 1.0 + prof.jitter * rng.standard_normal(n_cycles)
    phase = np.cumsum(f0 * jit[phase.astype(int)] / sr)
    cycle = phase.astype(int)
    flow = _rosenberg(phase - cycle, prof.open_quotient)
    flow *= 1.0 + prof.shimmer * rng.standard_normal(n_cycles)[cycle]
    src = np.diff(flow, prepend=0.0) * sr / prof.f0
    noise = rng.standard_normal(n) * (0.3 + flow)
    return src + prof.breathiness * 4.0 * noise


# --------------------------------------------------------------------------------------------- filter
def _resonators(freqs: np.ndarray, centres: np.ndarray, bws: np.ndarray) -> np.ndarray:
    """Product of unity-DC-gain 2-pole resonator magnitudes; ``centres``/``bws`` (T, K) -> (T, F).

    Each resonator is ``(c^2 + b^2) / sqrt(((f - c)^2 + b^2) ((f + c)^2 + b^2))`` with ``b`` half the
    bandwidth; numerators and denominators are multiplied first, so there is one square root.
    """
    f = freqs[None, :]
    num = np.ones((centres.shape[0], 1))
    den = np.ones((centres.shape[0], freqs.shape[0]))
    for k in range(centres.shape[1]):
        c, b2 = centres[:, k : k + 1], (0.5 * bws[:, k : k + 1]) ** 2
        num = num * (c**2 + b2)
        den *= ((f - c) ** 2 + b2) * ((f + c) ** 2 + b2)
    return num / np.sqrt(den)


def _channel(freqs: np.ndarray, rng: np.random.Generator, depth_db: float) -> np.ndarray:
    """A random smooth equaliser (gain per frequency), a few cosines over log frequency."""
    x = np.log2(np.maximum(freqs, 50.0) / 50.0) / np.log2(freqs[-1] / 50.0)
    db = sum(rng.normal(0, depth_db / k) * np.cos(np.pi * k * x + rng.uniform(0, np.pi)) for k in (1, 2, 3))
    return 10.0 ** (db / 20.0)


def synthesize_utterance(
    profile: SpeakerProfile,
    *,
    sr: int = 16000,
    duration: float = 2.0,
    seed: int | np.random.Generator = 0,
    channel_db: float = 6.0,
    snr_db: tuple[float, float] = (12.0, 35.0),
) -> np.ndarray:
    """One utterance of ``profile`` (about ``duration`` seconds), float32 (n,) in [-1, 1].

    ``channel_db`` is the depth of the random recording equaliser; ``snr_db`` the range of the
    background noise level.
    """
    if sr < 8000:
        raise ConfigError(f"synthetic speech needs sr >= 8000 Hz, got {sr}")
    if not duration >= 0.3:
        raise ConfigError(f"duration must be >= 0.3 s, got {duration}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = int(round(duration * sr))
    mood = float(np.exp(rng.normal(0, 0.06)))
    seq = _syllables(rng, duration, profile.rate * float(np.exp(rng.normal(0, 0.08))))
    stft = dict(fs=sr, window="hann", nperseg=_N_FFT, noverlap=_N_FFT - _HOP)
    freqs, _, glottal = scipy.signal.stft(_glottal_source(profile, n, sr, rng, mood), **stft)
    _, _, noise = scipy.signal.stft(rng.standard_normal(n), **stft)
    n_frames = glottal.shape[1]
    ctl = _controls(seq, profile, n_frames, sr / _HOP)

    bws = np.broadcast_to(_BANDWIDTHS * profile.bandwidth, ctl["f"].shape)
    tract = _resonators(freqs, np.minimum(ctl["f"], 0.95 * sr / 2), bws)  # (T, F)
    zero = ctl["zero"]
    nasal = zero > 0
    if nasal.any():  # anti-resonance: divide by a resonator at the nasal zero (depth set by bandwidth)
        z = np.where(nasal, zero, 1000.0)[:, None] * profile.vtl
        tract = tract / np.where(nasal[:, None], _resonators(freqs, z, np.full_like(z, 300.0)), 1.0)
    octaves = np.log2(np.maximum(freqs, 100.0) / 100.0)
    tilt = 10.0 ** (profile.tilt * octaves / 20.0)
    fric = _resonators(freqs, ctl["fc"][:, None], ctl["fbw"][:, None]) * (freqs / (sr / 2))[None, :] ** 0.5

    spec = glottal * (ctl["voice"][:, None] * tract * tilt[None, :]).T
    spec += noise * (ctl["asp"][:, None] * tract + 3.0 * ctl["fric"][:, None] * fric).T
    spec *= _channel(freqs, rng, channel_db)[:, None]
    _, y = scipy.signal.istft(spec, **stft)
    y = y[:n]
    rms = np.sqrt(np.mean(y**2)) + 1e-12
    snr = rng.uniform(*snr_db)
    y = y / rms + rng.standard_normal(n) * 10.0 ** (-snr / 20.0)
    y *= 10.0 ** (rng.uniform(-26.0, -18.0) / 20.0)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
