"""Log-mel filterbank and MFCC features (the H. Fayek recipe, python_speech_features-compatible).

Recipe (H. Fayek, "Speech Processing for Machine Learning: Filter banks, MFCCs and what's in between",
2016; the same computation as ``python_speech_features.fbank`` with ``winfunc=numpy.hamming``):

1. pre-emphasis ``y[t] = x[t] - a * x[t-1]`` (``y[0] = x[0]``);
2. frames of ``win = round_half_up(frame_length * sr)`` samples every ``hop = round_half_up(frame_shift *
   sr)``, the signal zero-padded so the last frame is full: ``n_frames = 1 + ceil((L - win) / hop)``;
3. a window (``numpy.hamming`` by default) and the power spectrum ``|rfft(frame, n_fft)|**2 / n_fft``;
4. ``n_mels`` triangular filters equally spaced on the mel scale ``m = 2595 log10(1 + f / 700)`` between
   ``fmin`` and ``fmax``, with edges on FFT bins ``floor((n_fft + 1) * f / sr)``
   (:func:`spkid.features.mel.mel_filterbank`);
5. energies below ``EPS`` (float64 machine epsilon, as python_speech_features) are floored to it, then
   ``log="natural"`` takes ``ln`` and ``log="db"`` takes ``10 * log10`` of the power filterbank;
6. ``normalize="mean"`` subtracts each filter's mean over frames (cepstral mean normalisation);
   ``"meanvar"`` also divides by its standard deviation; ``None`` leaves the log energies alone.

One parameter list for every function: a :class:`~spkid.features.config.FeatureConfig` (``config=``,
default the recipe's) plus keyword overrides of its fields, librosa-style names -- ``sr``, ``n_mels``,
``n_fft``, ``frame_length`` / ``frame_shift`` (seconds) or ``win_length`` / ``hop_length`` (samples),
``preemphasis``, ``window``, ``fmin``, ``fmax``, ``log``, ``normalize`` -- all validated by FeatureConfig
(an unknown keyword is a :class:`~spkid.errors.ConfigError` naming it)::

    fbank(y, 16000)                                  # the recipe: 40 mels, 25 / 10 ms, n_fft 512
    fbank(y, 16000, n_mels=64, hop_length=80)        # keyword overrides
    fbank(y, config=cfg)  ==  fbank_from_config(y, cfg)

The computation itself (chunked framing, one FFT call per chunk, a measured block-sparse filterbank
product, no process-wide settings touched) is :mod:`spkid.features._kernel`.
"""
from __future__ import annotations

import functools
import numbers
import os
from typing import Any, Iterable

import numpy as np

from spkid.features import _kernel
from spkid.features.config import FeatureConfig
from spkid.features.mel import EPS, frame_params, mel_filterbank, n_frames
from spkid.errors import AudioError, ConfigError, FeatureError

__all__ = [
    "fbank",
    "fbank_batch",
    "fbank_from_config",
    "mfcc",
    "extract_features",
    # defined in spkid.features.mel, kept importable from here for existing code
    "EPS",
    "mel_filterbank",
    "n_frames",
    "frame_params",
]

_FBANK = FeatureConfig()  # the recipe
_MFCC = FeatureConfig(n_mels=26, normalize=None)  # python_speech_features.mfcc's defaults
#: librosa's sample-count names -> the FeatureConfig field (seconds) they set.
_SAMPLE_ALIASES = {"win_length": "frame_length", "hop_length": "frame_shift"}
_NAMES = frozenset(FeatureConfig.field_names()) | frozenset(_SAMPLE_ALIASES)


# ------------------------------------------------------------------------------ the parameter list
def _apply_overrides(config: FeatureConfig, overrides: dict[str, Any]) -> FeatureConfig:
    unknown = sorted(set(overrides) - _NAMES)
    if unknown:
        raise ConfigError(
            f"unknown feature parameter(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(FeatureConfig.field_names() + list(_SAMPLE_ALIASES))}"
        )
    kw = config.to_dict()
    kw.update((k, v) for k, v in overrides.items() if k not in _SAMPLE_ALIASES)
    sr = kw["sr"]
    if isinstance(sr, numbers.Integral) and not isinstance(sr, bool):
        kw["sr"] = int(sr)
    elif isinstance(sr, float) and sr.is_integer():  # 16000.0 from a float-typed caller
        kw["sr"] = int(sr)
    samples = {k: overrides[k] for k in _SAMPLE_ALIASES if k in overrides}
    if samples:
        if not (type(kw["sr"]) is int and kw["sr"] > 0):  # samples -> seconds needs a valid rate
            FeatureConfig.from_dict(kw)  # raises, naming sr
            raise ConfigError(f"invalid sr {kw['sr']!r}")  # pragma: no cover - from_dict raised
        for name, value in samples.items():
            field = _SAMPLE_ALIASES[name]
            if field in overrides:
                raise ConfigError(f"give {name} (samples) or {field} (seconds), not both")
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{name} must be a number of samples >= 1, got {value!r}")
            kw[field] = int(value) / kw["sr"]
    cfg = FeatureConfig.from_dict(kw)
    for name, value in samples.items():
        if getattr(cfg, name) != value:  # pragma: no cover - n / sr * sr rounds back to n
            raise ConfigError(f"{name}={value} is not representable at sr={cfg.sr}")
    return cfg


@functools.lru_cache(maxsize=256)
def _resolve_cached(config: FeatureConfig, key: tuple) -> FeatureConfig:
    return _apply_overrides(config, {name: value for name, _, value in key})


def _resolve(config: FeatureConfig | None, overrides: dict[str, Any], base: FeatureConfig) -> FeatureConfig:
    """``config`` (default ``base``) with keyword ``overrides``, validated; cached, since a config is
    built per call."""
    if config is None:
        config = base
    elif not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    if not overrides:
        return config
    # the value's type is part of the key: 1 == True and 16000 == 16000.0 must not share an entry
    key = tuple(sorted((name, type(value), value) for name, value in overrides.items()))
    try:
        return _resolve_cached(config, key)
    except TypeError:  # an unhashable value (a list): FeatureConfig reports it
        return _apply_overrides(config, overrides)


# ------------------------------------------------------------------------------ checks
def _as_signal(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"expected a 1-D signal (n_samples,), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise FeatureError(f"expected a real-valued signal, got dtype {y.dtype}")
    return np.ascontiguousarray(y, dtype=np.float32)


def _check_lengths(ys: list[np.ndarray], p: _kernel.Plan) -> None:
    for i, y in enumerate(ys):
        if y.size < p.win:
            which = "" if len(ys) == 1 else f"signal {i}: "
            raise FeatureError(
                f"{which}signal of {y.size} samples is shorter than one frame "
                f"({p.win} samples = {p.win / p.sr * 1000:.1f} ms at sr={p.sr})"
            )


def _fbank(ys: list, config: FeatureConfig) -> list[np.ndarray]:
    p = _kernel.plan(config)
    sigs = [_as_signal(y) for y in ys]
    _check_lengths(sigs, p)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf input is reported by finish
        return [_kernel.finish(e, t, p) for e, t in zip(*_kernel.log_energies(sigs, p))]


# ------------------------------------------------------------------------------ public functions
def fbank(y, sr: int | None = None, *, config: FeatureConfig | None = None, **overrides) -> np.ndarray:
    """Log-mel filterbank energies of a signal (the recipe in the module docstring).

    Parameters
    ----------
    y : ``(n_samples,)`` signal at ``sr`` Hz, at least one frame long.
    sr : its sample rate in Hz (default ``config.sr``; no resampling: see :func:`extract_features`).
    config : a :class:`~spkid.features.config.FeatureConfig` (default: the recipe's).
    **overrides : fields of the config -- ``n_mels``, ``n_fft``; ``frame_length``, ``frame_shift``
        (seconds) or ``win_length``, ``hop_length`` (samples); ``preemphasis`` (``a``, 0 disables);
        ``window`` (``"hamming"`` | ``"hann"`` | ``"rectangular"``, numpy's symmetric windows);
        ``fmin``, ``fmax`` (Hz, ``fmax=None`` is ``sr / 2``); ``log`` (``"natural"`` | ``"db"``);
        ``normalize`` (``"mean"`` | ``"meanvar"`` | ``None``, per filter over the frames).

    Returns
    -------
    ``(n_frames, n_mels)`` float32 with ``n_frames = 1 + ceil((n_samples - win) / hop)``.

    Raises
    ------
    FeatureError : the signal is not 1-D, shorter than one frame, or not finite.
    ConfigError : an unknown keyword or impossible parameters (checked by FeatureConfig).
    """
    if sr is not None:
        overrides["sr"] = sr
    return _fbank([y], _resolve(config, overrides, _FBANK))[0]


def fbank_batch(ys: Iterable, sr: int | None = None, *, config: FeatureConfig | None = None,
                **overrides) -> list[np.ndarray]:
    """:func:`fbank` of many signals (same parameters), their frames packed into shared FFT calls.

    Returns a list of ``(n_frames_i, n_mels)`` float32 arrays, equal to ``[fbank(y, sr, ...) for y in
    ys]`` up to float32 rounding (each signal normalised on its own).
    """
    if sr is not None:
        overrides["sr"] = sr
    return _fbank(list(ys), _resolve(config, overrides, _FBANK))


def fbank_from_config(y, config: FeatureConfig) -> np.ndarray:
    """:func:`fbank` of ``y`` (already at ``config.sr``) with every parameter from ``config``."""
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    return _fbank([y], config)[0]


def extract_features(path_or_y, config: FeatureConfig | None = None, *, sr: int | None = None,
                     **overrides) -> np.ndarray:
    """Features of a file or a signal: ``(n_frames, n_mels)`` float32, per ``config`` (default the
    recipe's) and keyword ``overrides`` of its fields, as :func:`fbank`.

    A path is loaded with :func:`spkid.audio.io.load_audio` at ``config.sr``. An array is taken to be at
    ``sr`` Hz (default ``config.sr``) and resampled to ``config.sr`` when they differ -- here ``sr`` is
    the input's rate; the features' rate is ``config.sr``.
    """
    config = _resolve(config, overrides, _FBANK)
    if isinstance(path_or_y, (str, os.PathLike)):
        from spkid.audio.io import load_audio

        y = load_audio(path_or_y, sr=config.sr, min_duration=0.0)
        p = _kernel.plan(config)
        if y.size < p.win:
            raise AudioError(
                f"too short for one {config.frame_length * 1000:g} ms frame ({y.size} samples at "
                f"{config.sr} Hz)", path=path_or_y,
            )
        return _fbank([y], config)[0]
    y = _as_signal(path_or_y)
    if sr is not None and sr != config.sr:
        from spkid.audio.io import resample

        y = resample(y, sr, config.sr)
    return _fbank([y], config)[0]


def mfcc(y, sr: int | None = None, *, config: FeatureConfig | None = None, n_mfcc: int = 13,
         lifter: int = 22, append_energy: bool = True, **overrides) -> np.ndarray:
    """MFCCs as python_speech_features computes them: ``(n_frames, n_mfcc)`` float32.

    The DCT-II (orthonormal) of the log power filterbank (the recipe's steps 1-5; natural log unless
    ``log="db"``), coefficients ``0..n_mfcc-1``, then a sinusoidal lifter ``1 + (L/2) sin(pi n / L)``
    (``lifter=0`` disables), and with ``append_energy`` the 0th coefficient replaced by the log total
    frame energy. Fayek's recipe keeps coefficients 2-13: ``mfcc(...)[:, 1:]``.

    Parameters are :func:`fbank`'s -- ``config`` plus keyword overrides -- except that the default
    config is python_speech_features' (26 mels, no normalisation), and ``normalize`` (``"mean"`` |
    ``"meanvar"``) applies to the cepstra, last.
    """
    from scipy.fft import dct

    if sr is not None:
        overrides["sr"] = sr
    cfg = _resolve(config, overrides, _MFCC)
    n_mels = cfg.n_mels
    if isinstance(n_mfcc, bool) or not isinstance(n_mfcc, int) or not 1 <= n_mfcc <= n_mels:
        raise ConfigError(f"n_mfcc must be an int in 1..n_mels={n_mels}, got {n_mfcc!r}")
    if isinstance(lifter, bool) or not isinstance(lifter, (int, float)) or lifter < 0:
        raise ConfigError(f"lifter must be a number >= 0, got {lifter!r}")
    p = _kernel.plan(cfg, bool(append_energy))
    sig = _as_signal(y)
    _check_lengths([sig], p)
    with np.errstate(invalid="ignore", over="ignore"):
        (e,), (total,) = _kernel.log_energies([sig], p)
        _kernel.finish(e, total, p, normalize_=False)
    cep = dct(e[:, :n_mels], type=2, axis=1, norm="ortho")[:, :n_mfcc].astype(np.float32)
    if lifter > 0:
        cep *= (1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(n_mfcc) / lifter)).astype(np.float32)
    if append_energy:
        cep[:, 0] = e[:, n_mels]
    _kernel.normalize(cep, cfg.normalize)
    return cep
