"""Feature-extraction settings: :class:`FeatureConfig`, the H. Fayek log-mel recipe as a strict config.

H. Fayek, "Speech Processing for Machine Learning: Filter banks, MFCCs and what's in-between" (2016):
pre-emphasis 0.97, 25 ms Hamming frames every 10 ms, 512-point power spectrum, 40 triangular mel
filters, natural log, per-utterance mean normalisation.
"""
from __future__ import annotations

import dataclasses
import math
import typing

from spkid._strict import StrictConfig, round_half_up
from spkid.errors import ConfigError

__all__ = ["FeatureConfig"]


@dataclasses.dataclass(frozen=True)
class FeatureConfig(StrictConfig):
    """Log-mel filterbank parameters (the H. Fayek recipe; defaults are the paper's).

    ``sr`` is the rate audio is resampled to before feature extraction.
    """

    sr: int = 16000
    n_mels: int = 40
    frame_length: float = 0.025  # seconds
    frame_shift: float = 0.010  # seconds
    n_fft: int = 512
    preemphasis: float = 0.97
    window: typing.Literal["hamming", "hann", "rectangular"] = "hamming"
    fmin: float = 0.0
    fmax: float | None = None
    log: typing.Literal["natural", "db"] = "natural"
    normalize: typing.Literal["mean", "meanvar"] | None = "mean"

    def validate(self) -> None:
        name = type(self).__name__
        if self.sr <= 0:
            raise ConfigError(f"{name}.sr must be > 0, got {self.sr}")
        if not (math.isfinite(self.frame_length) and self.frame_length > 0):
            raise ConfigError(f"{name}.frame_length must be > 0 seconds, got {self.frame_length}")
        if not (math.isfinite(self.frame_shift) and self.frame_shift > 0):
            raise ConfigError(f"{name}.frame_shift (hop) must be > 0 seconds, got {self.frame_shift}")
        if self.n_fft <= 0:
            raise ConfigError(f"{name}.n_fft must be > 0, got {self.n_fft}")
        if self.win_length < 1 or self.hop_length < 1:
            raise ConfigError(
                f"{name}: frame_length/frame_shift of {self.frame_length}/{self.frame_shift} s give "
                f"{self.win_length}/{self.hop_length} samples at sr={self.sr}; both must be >= 1"
            )
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"{name}: frame of {self.win_length} samples is longer than n_fft={self.n_fft}"
            )
        if not 1 <= self.n_mels <= self.n_fft // 2 + 1:
            raise ConfigError(
                f"{name}.n_mels must be in 1..n_fft/2+1={self.n_fft // 2 + 1}, got {self.n_mels}"
            )
        if not 0.0 <= self.preemphasis < 1.0:
            raise ConfigError(f"{name}.preemphasis must be in [0, 1), got {self.preemphasis}")
        top = self.sr / 2 if self.fmax is None else self.fmax
        if not 0.0 <= self.fmin < top <= self.sr / 2:
            raise ConfigError(
                f"{name}: need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sr={self.sr}"
            )

    @property
    def win_length(self) -> int:
        """Frame length in samples."""
        return round_half_up(self.frame_length * self.sr)

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return round_half_up(self.frame_shift * self.sr)
