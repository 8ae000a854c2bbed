"""Energy-based voice activity detection, streaming, in bounded memory.

The recipe (the classic adaptive-threshold energy detector, e.g. the energy VAD of Kaldi's
``compute-vad`` and of ETSI ES 202 050's frame-energy stage):

1. non-overlapping ``frame`` -second frames, energy ``10 log10(mean(x^2))`` dB (full scale);
2. a running noise floor: the ``floor_percentile`` -th percentile of the energies of the last
   ``floor_seconds`` (the current block included);
3. a frame is speech when its energy exceeds ``max(floor + margin_db, min_db)``;
4. smoothing: speech runs separated by less than ``min_silence`` seconds are joined, runs shorter than
   ``min_speech`` dropped, each region padded by ``pad`` seconds on both sides; a region longer than
   ``max_region`` seconds is cut there (so no region, hence no buffer, grows without bound).

Why energy and not a library: the candidates that install offline either need a deep-learning framework
in the core (Silero VAD: torch or onnxruntime plus a model file) or a C extension the project does not
otherwise depend on (webrtcvad, unmaintained wheels); the detector here is deterministic, dependency-free,
streams with a one-block look-ahead, and separates speech from silence and stationary noise (its noise
floor adapts), which is what the sliding-window timeline needs -- non-stationary noise (babble, music) is
passed on as speech, to be scored against the gallery like any other sound.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator

import numpy as np

from spkid._strict import StrictConfig
from spkid.errors import ConfigError

__all__ = ["VadConfig", "SpeechRegion", "speech_regions", "speech_intervals"]


@dataclasses.dataclass(frozen=True)
class VadConfig(StrictConfig):
    """Parameters of the energy VAD (seconds and dB; see the module docstring)."""

    frame: float = 0.02
    margin_db: float = 12.0
    min_db: float = -60.0
    floor_percentile: float = 10.0
    floor_seconds: float = 30.0
    min_silence: float = 0.4
    min_speech: float = 0.2
    pad: float = 0.05
    max_region: float = 30.0

    def validate(self) -> None:
        for name in ("frame", "floor_seconds", "max_region"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"VadConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("min_silence", "min_speech", "pad", "margin_db"):
            if getattr(self, name) < 0:
                raise ConfigError(f"VadConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.floor_percentile <= 100:
            raise ConfigError(f"VadConfig.floor_percentile must be in [0, 100], got {self.floor_percentile}")
        if self.pad > self.min_silence:
            raise ConfigError(f"VadConfig.pad ({self.pad}) must not exceed min_silence ({self.min_silence})")
        if self.max_region < 4 * self.frame:
            raise ConfigError(f"VadConfig.max_region must be at least 4 frames, got {self.max_region}")


@dataclasses.dataclass(frozen=True)
class SpeechRegion:
    """A detected stretch of speech: ``start`` / ``end`` in seconds from the start of the stream and its
    ``samples`` (n,) float32."""

    start: float
    end: float
    samples: np.ndarray


def speech_regions(blocks: Iterable[np.ndarray], sr: int, config: VadConfig | None = None
                   ) -> Iterator[SpeechRegion]:
    """Speech regions of a stream of (n,) float32 blocks at ``sr`` Hz, yielded as soon as each is closed.

    Memory: the samples since the current region began (at most ``max_region`` seconds) and the energies
    of the last ``floor_seconds``.
    """
    cfg = config or VadConfig()
    hop = max(1, int(round(cfg.frame * sr)))
    fps = sr / hop
    gap, shortest = int(round(cfg.min_silence * fps)), int(round(cfg.min_speech * fps))
    longest, pad = int(round(cfg.max_region * fps)), int(round(cfg.pad * sr))
    history: collections.deque = collections.deque(maxlen=max(1, int(round(cfg.floor_seconds * fps))))
    buf, buf_start, framed = np.zeros(0, np.float32), 0, 0  # samples from buf_start on; frames done
    start, last = -1, -1  # current run: first and last speech frame (start -1: no run)
    total = 0

    cut_at = -1  # the frame where the current run was cut at max_region (no padding across a cut)

    def region(a: int, b: int, cut: bool = False) -> SpeechRegion:  # frames [a, b), padded, clipped to the data
        lo = a * hop if a == cut_at else max(a * hop - pad, 0, buf_start)
        hi = b * hop if cut else min(b * hop + pad, buf_start + len(buf))
        return SpeechRegion(lo / sr, hi / sr, buf[lo - buf_start:hi - buf_start].copy())

    for block in _with_end(blocks):
        if block is not None:
            y = np.asarray(block, dtype=np.float32).reshape(-1)
            buf, total = np.concatenate([buf, y]), total + y.size
            n_new = total // hop - framed
        else:  # end of stream: a last partial frame counts
            n_new = (1 if total > framed * hop else 0)
        if n_new <= 0:
            continue
        seg = buf[framed * hop - buf_start:(framed + n_new) * hop - buf_start]
        frames = np.zeros((n_new, hop), np.float32)
        frames.reshape(-1)[:seg.size] = seg
        energy = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        if block is None:  # the partial frame's mean over its real samples
            energy[-1] = 10.0 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12)
        history.extend(energy.tolist())
        threshold = max(float(np.percentile(np.fromiter(history, float), cfg.floor_percentile)) + cfg.margin_db,
                        cfg.min_db)
        for f in np.flatnonzero(energy > threshold) + framed:  # only speech frames change the state
            f = int(f)
            if start >= 0 and f - last - 1 >= gap:
                if last + 1 - start >= shortest:
                    yield region(start, last + 1)
                start = -1
            if start < 0:
                start = f
            elif f - start >= longest:
                yield region(start, f, cut=True)
                start = cut_at = f
            last = f
        framed += n_new
        if start >= 0 and framed - last - 1 >= gap:  # the run's silence is already long enough
            if last + 1 - start >= shortest:
                yield region(start, last + 1)
            start = -1
        keep = (start * hop if start >= 0 else framed * hop) - pad
        if keep > buf_start:
            buf, buf_start = buf[keep - buf_start:], keep
    if start >= 0 and last + 1 - start >= shortest:
        yield region(start, last + 1)


def _with_end(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from blocks
    yield None


def speech_intervals(y: np.ndarray, sr: int, config: VadConfig | None = None, block_seconds: float = 1.0
                     ) -> list[tuple[float, float]]:
    """``[(start, end), ...]`` seconds of speech in a whole signal ``y`` (n,), streamed in blocks as
    :func:`speech_regions` would read a file."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    step = max(1, int(block_seconds * sr))
    return [(r.start, r.end) for r in speech_regions((y[i:i + step] for i in range(0, len(y), step)), sr, config)]
