"""On-the-fly waveform augmentation: :class:`AugmentConfig` and the seeded :class:`Augmenter`.

The recipe follows the peers' VoxCeleb setups: wespeaker adds MUSAN noise and RIRS_NOISES reverberation
on the fly (aug_prob 0.6, fbank computed after augmentation) plus speed perturbation 0.9/1.1 whose copies
count as new speakers; voxceleb_trainer mixes MUSAN noise at 0-15 dB SNR, babble of 3-7 other talkers at
13-20 dB and convolves with RIRs. MUSAN and RIRS_NOISES cannot be downloaded here, so without user folders
the :class:`Augmenter` uses synthetic coloured noise (:mod:`spkid.audio.noise`) and simulated rooms
(:mod:`spkid.audio.rooms`); channel effects come from :mod:`spkid.audio.channels`.

Everything is pure numpy/scipy/soxr and driven by an explicit ``numpy.random.Generator``, so a caller that
seeds one per (seed, epoch, batch, item) gets the same waveforms in every backend and every run.

Order (fixed): the seven on/off decisions are drawn first, ``rng.random(7) < probs``, in the order
reverb, noise, babble, channel, telephone, eq, gain; the kinds that are on then run in that order, each
drawing its own parameters:

1. reverb -- convolve with a random file of ``rir_dir`` or a :func:`~spkid.audio.rooms.simulate_rir` room
   with ``RT60 ~ U(rt60)`` (speech is reverberated before noise is added: the noise source is elsewhere);
2. noise -- a random file of ``noise_dir`` (tiled/cropped at a random offset) or synthetic noise of a colour
   drawn from ``noise_colors``, at ``SNR ~ U(noise_snr)`` against the (reverberant) speech;
3. babble -- ``k ~ U{babble_speakers}`` distinct waveforms of the caller's ``babble_pool`` (other
   speakers; at most the pool's size), summed at equal power, at ``SNR ~ U(babble_snr)``;
4. channel -- zero-phase Butterworth band-pass with edges ``U(channel_low_hz)`` and ``U(channel_high_hz)``;
5. telephone -- 300-3400 Hz, 8 kHz round trip, mu-law when ``telephone_mu_law``;
6. eq -- random spectral tilt and ripple within ``+-eq_db``;
7. gain -- ``U(gain_db)`` dB.

Speed perturbation changes speaker labels and the length, so it is not here: callers use
:func:`spkid.audio.channels.speed_perturb` when they build their label set.

Clipping rule: the result is never hard-clipped; when its peak magnitude exceeds 1.0 the whole clip is
scaled down to peak 1.0 (which keeps the SNR and the spectrum). With nothing drawn the input comes back
unchanged (as float32). Shapes: ``y`` mono float32 ``(n,)`` in, float32 ``(n,)`` out.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from spkid._strict import StrictConfig
from spkid.audio.channels import _as_wave, _check_rng, bandpass, gain, random_eq, telephone
from spkid.audio.io import load_audio
from spkid.audio.noise import NOISE_COLORS, add_colored_noise, add_noise, babble
from spkid.audio.rooms import reverberate, simulate_rir
from spkid.errors import AudioError, ConfigError

__all__ = ["AugmentConfig", "Augmenter", "AUGMENT_ORDER", "AUDIO_EXTENSIONS", "scan_audio_folder"]

AUGMENT_ORDER = ("reverb", "noise", "babble", "channel", "telephone", "eq", "gain")

# what a noise / RIR folder scan picks up (libsndfile-readable formats)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph", ".aiff", ".aif")


@dataclasses.dataclass(frozen=True)
class AugmentConfig(StrictConfig):
    """Per-kind probabilities and ranges of the waveform augmentation; every kind is off by default.

    ``*_prob`` is the per-utterance probability of each kind (see the module docstring for the order);
    a range ``(lo, hi)`` is sampled uniformly. SNRs are in dB, RT60 in seconds, frequencies in Hz (a high
    edge at or above ``sr / 2`` leaves that side open), ``babble_speakers`` is an inclusive integer range.
    Defaults are voxceleb_trainer's (noise 0-15 dB, babble 3-7 talkers at 13-20 dB).
    """

    noise_prob: float = 0.0
    noise_snr: tuple[float, float] = (0.0, 15.0)
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")  # synthetic noise, when no noise_dir
    babble_prob: float = 0.0
    babble_snr: tuple[float, float] = (13.0, 20.0)
    babble_speakers: tuple[int, int] = (3, 7)
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)  # simulated rooms, when no rir_dir
    channel_prob: float = 0.0
    channel_low_hz: tuple[float, float] = (50.0, 400.0)
    channel_high_hz: tuple[float, float] = (3000.0, 7500.0)
    telephone_prob: float = 0.0
    telephone_mu_law: bool = True
    eq_prob: float = 0.0
    eq_db: float = 6.0
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-6.0, 6.0)

    def _fail(self, field: str, problem: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{field}: {problem}, got {getattr(self, field)!r}")

    def _range(self, field: str, lo_min: float, hi_max: float, *, strict_lo: bool = False) -> None:
        lo, hi = getattr(self, field)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            self._fail(field, "must be finite")
        if lo > hi:
            self._fail(field, "needs lo <= hi")
        if lo < lo_min or (strict_lo and lo <= lo_min) or hi > hi_max:
            self._fail(field, f"must lie in {'(' if strict_lo else '['}{lo_min}, {hi_max}]")

    def validate(self) -> None:
        for kind in AUGMENT_ORDER:
            p = getattr(self, f"{kind}_prob")
            if not (math.isfinite(p) and 0.0 <= p <= 1.0):
                self._fail(f"{kind}_prob", "must be a probability in [0, 1]")
        self._range("noise_snr", -30.0, 100.0)
        self._range("babble_snr", -30.0, 100.0)
        self._range("rt60", 0.05, 5.0)
        self._range("channel_low_hz", 0.0, 20000.0)
        self._range("channel_high_hz", 0.0, 1e6, strict_lo=True)
        self._range("gain_db", -60.0, 60.0)
        if self.channel_low_hz[1] >= self.channel_high_hz[0]:
            self._fail("channel_low_hz", f"must stay below channel_high_hz {self.channel_high_hz!r}")
        if not self.noise_colors:
            self._fail("noise_colors", "needs at least one colour")
        for c in self.noise_colors:
            if c not in NOISE_COLORS:
                self._fail("noise_colors", f"{c!r} is not one of {', '.join(NOISE_COLORS)}")
        lo, hi = self.babble_speakers
        if not 1 <= lo <= hi <= 100:
            self._fail("babble_speakers", "needs 1 <= lo <= hi <= 100")
        if not (math.isfinite(self.eq_db) and 0.0 <= self.eq_db <= 40.0):
            self._fail("eq_db", "must be in [0, 40] dB")

    @property
    def enabled(self) -> bool:
        """True when any kind has a non-zero probability."""
        return any(getattr(self, f"{k}_prob") > 0 for k in AUGMENT_ORDER)


def scan_audio_folder(folder: str | os.PathLike, what: str) -> tuple[Path, ...]:
    """The audio files under ``folder`` (recursively, sorted, by :data:`AUDIO_EXTENSIONS`); AudioError naming
    the folder when it is missing, not a folder, or holds no audio. ``what`` names it in messages."""
    root = Path(folder)
    if not root.exists():
        raise AudioError(f"{what} folder not found", path=root)
    if not root.is_dir():
        raise AudioError(f"{what} folder is not a directory", path=root)
    files = tuple(sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()))
    if not files:
        raise AudioError(f"{what} folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})", path=root)
    return files


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


class Augmenter:
    """Seeded waveform augmentation after an :class:`AugmentConfig` (order and clipping: module docstring).

    ``noise_dir`` / ``rir_dir`` are scanned once here (e.g. MUSAN, RIRS_NOISES; see
    :func:`scan_audio_folder`); each file is read when it is drawn, with
    :func:`spkid.audio.io.load_audio` at ``sr`` (an unreadable file raises its AudioError naming it;
    multi-channel RIRs use their first channel). Without them, synthetic noise and simulated rooms are used.

    ``augmenter(y, rng, babble_pool=None)`` -> float32 ``(n,)``. ``babble_pool`` is a sequence of 1-D
    waveforms of other speakers at ``sr``; it is required when babble is drawn.
    """

    def __init__(self, config: AugmentConfig | Mapping | None = None, *, noise_dir: str | os.PathLike | None = None,
                 rir_dir: str | os.PathLike | None = None, sr: int = 16000):
        if config is None or isinstance(config, Mapping):
            config = AugmentConfig.from_dict(config)
        if not isinstance(config, AugmentConfig):
            raise ConfigError(f"Augmenter: config must be an AugmentConfig or a mapping, got {type(config).__name__}")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ConfigError(f"Augmenter: sr must be a positive integer (Hz), got {sr!r}")
        self.config = config
        self.sr = int(sr)
        self.noise_files = () if noise_dir is None else scan_audio_folder(noise_dir, "noise")
        self.rir_files = () if rir_dir is None else scan_audio_folder(rir_dir, "impulse response")
        self._probs = np.array([getattr(config, f"{k}_prob") for k in AUGMENT_ORDER], dtype=np.float64)

    def __repr__(self) -> str:
        return (f"Augmenter({self.config.describe()}, sr={self.sr}, noise_files={len(self.noise_files)}, "
                f"rir_files={len(self.rir_files)})")

    def draw(self, rng: np.random.Generator) -> tuple[str, ...]:
        """Draw which kinds are on (consumes exactly 7 uniforms from ``rng``), in :data:`AUGMENT_ORDER`."""
        on = _check_rng(rng).random(len(AUGMENT_ORDER)) < self._probs
        return tuple(k for k, flag in zip(AUGMENT_ORDER, on) if flag)

    def _rir(self, rng: np.random.Generator) -> np.ndarray:
        if self.rir_files:
            path = self.rir_files[int(rng.integers(len(self.rir_files)))]
            return load_audio(path, sr=self.sr, mono=False, min_duration=0.0)[0]
        return simulate_rir(self.sr, _uniform(rng, self.config.rt60), rng)

    def _noise(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        snr = _uniform(rng, self.config.noise_snr)
        if self.noise_files:
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            return add_noise(z, load_audio(path, sr=self.sr), snr, rng=rng)
        color = self.config.noise_colors[int(rng.integers(len(self.config.noise_colors)))]
        return add_colored_noise(z, snr, rng, color)

    def _babble(self, z: np.ndarray, rng: np.random.Generator, pool: Sequence[np.ndarray] | None) -> np.ndarray:
        if pool is None or len(pool) == 0:
            raise ConfigError("Augmenter: babble_prob > 0 needs a babble_pool of other speakers' waveforms")
        lo, hi = self.config.babble_speakers
        k = min(int(rng.integers(lo, hi + 1)), len(pool))
        picks = rng.choice(len(pool), size=k, replace=False)
        return babble(z, [pool[int(i)] for i in picks], _uniform(rng, self.config.babble_snr), rng)

    def __call__(self, y: np.ndarray, rng: np.random.Generator, *,
                 babble_pool: Sequence[np.ndarray] | None = None) -> np.ndarray:
        y = _as_wave(y)
        kinds = self.draw(rng)
        if not kinds:
            return y.copy()
        cfg, sr, z = self.config, self.sr, y
        for kind in kinds:
            if kind == "reverb":
                z = reverberate(z, self._rir(rng))
            elif kind == "noise":
                z = self._noise(z, rng)
            elif kind == "babble":
                z = self._babble(z, rng, babble_pool)
            elif kind == "channel":
                z = bandpass(z, sr, _uniform(rng, cfg.channel_low_hz), _uniform(rng, cfg.channel_high_hz))
            elif kind == "telephone":
                z = telephone(z, sr, use_mu_law=cfg.telephone_mu_law)
            elif kind == "eq":
                z = random_eq(z, sr, rng, max_db=cfg.eq_db)
            else:  # gain
                z = gain(z, _uniform(rng, cfg.gain_db))
        peak = float(np.max(np.abs(z)))
        if peak > 1.0:
            z = z / np.float32(peak)
        return np.asarray(z, dtype=np.float32)
