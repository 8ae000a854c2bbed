"""Who speaks when: a long recording segmented and labelled against an enrolled gallery.

The recipe (sliding-window speaker tracking against known voiceprints, as in the segmentation stage of
speaker diarization, e.g. Sell & Garcia-Romero, "Speaker diarization with PLDA i-vector scoring and
unsupervised calibration", SLT 2014, with the clustering replaced by scoring against the gallery):

1. voice activity detection splits the stream into speech regions (:func:`spkid.audio.vad.speech_regions`,
   streamed block by block: memory is bounded by one region, at most ``VadConfig.max_region`` seconds);
2. each region is covered by ``window`` -second windows every ``hop`` seconds (a region shorter than a
   window is one window), each embedded (the caller's ``embed`` function: waveforms in, (N, D) out, so this
   module needs no backend) and scored against the gallery's centroids (cosine);
3. each ``step`` -second cell of the region gets the mean score of the windows covering it, per speaker;
4. smoothing: a Viterbi path through the enrolled speakers maximising the sum of cell scores (times
   ``step``) minus ``switch_cost`` per change of speaker (an HMM with a uniform switch penalty); then runs
   shorter than ``min_segment`` seconds join their better-scoring neighbour;
5. open set: a run whose mean score for its speaker is below the threshold is *unknown* (decided once per
   run, on all its evidence, like one identification of that stretch -- not cell by cell, where the best of
   many speakers at each instant would too often beat the threshold); adjacent unknown runs fuse;
6. segments are the runs; silence between regions is covered by no segment.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from spkid._strict import StrictConfig
from spkid.audio.vad import SpeechRegion, VadConfig, speech_regions
from spkid.errors import ConfigError

__all__ = ["TimelineConfig", "Segment", "timeline_of_blocks", "timeline_of_file", "segments_to_json", "format_table"]

Embed = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TimelineConfig(StrictConfig):
    """Windows, cells and smoothing of the timeline (seconds; ``switch_cost`` in cosine x seconds)."""

    window: float = 2.0
    hop: float = 0.5
    step: float = 0.1
    switch_cost: float = 0.4
    min_segment: float = 0.5
    vad: VadConfig = dataclasses.field(default_factory=VadConfig)

    def validate(self) -> None:
        for name in ("window", "hop", "step"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TimelineConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hop > self.window:
            raise ConfigError(f"TimelineConfig.hop ({self.hop}) must not exceed window ({self.window})")
        if self.switch_cost < 0 or self.min_segment < 0:
            raise ConfigError("TimelineConfig.switch_cost and min_segment must be >= 0")


@dataclasses.dataclass(frozen=True)
class Segment:
    """``start`` / ``end`` seconds, ``speaker`` (an enrolled name, None for unknown) and ``score``: the mean
    cosine over the segment of its speaker -- for unknown, of the enrolled speaker the smoothing chose there,
    whose score fell below the threshold (time-weighted over fused unknown runs)."""

    start: float
    end: float
    speaker: str | None
    score: float

    def to_dict(self) -> dict:
        """``{"start", "end", "speaker", "score"}``: times rounded to 0.01 s, the score to 0.001."""
        return {"start": round(self.start, 2), "end": round(self.end, 2), "speaker": self.speaker,
                "score": round(self.score, 3)}


def _windows(n: int, size: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges of windows covering ``n`` samples; the last one ends at ``n``."""
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size + 1, hop))
    if starts[-1] + size < n:
        starts.append(n - size)
    return [(s, s + size) for s in starts]


def _viterbi(emission: np.ndarray, cost: float) -> np.ndarray:
    """(N,) int best state path of (N, K) per-cell rewards with ``cost`` per change of state."""
    n, k = emission.shape
    back = np.zeros((n, k), dtype=np.int64)
    delta = emission[0].copy()
    for i in range(1, n):
        best = int(np.argmax(delta))
        switch = delta[best] - cost
        stay = delta >= switch
        back[i] = np.where(stay, np.arange(k), best)
        delta = np.where(stay, delta, switch) + emission[i]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(delta))
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def _runs(path: np.ndarray) -> list[list[int]]:
    """``[[state, first, end), ...]`` of a path."""
    edges = np.r_[0, np.flatnonzero(np.diff(path)) + 1, path.size]
    return [[int(path[a]), int(a), int(b)] for a, b in zip(edges[:-1], edges[1:])]


def _merge_short(runs: list[list[int]], reward: np.ndarray, shortest: int) -> list[list[int]]:
    """Runs shorter than ``shortest`` cells join the neighbour whose state scores them better."""
    while len(runs) > 1:
        lengths = [b - a for _, a, b in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= shortest:
            break
        _, a, b = runs[i]
        options = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(options, key=lambda j: reward[a:b, runs[j][0]].sum())
        runs[j][1], runs[j][2] = min(runs[j][1], a), max(runs[j][2], b)
        del runs[i]
        if j > i:
            j -= 1
        for k in (j - 1, j + 1):  # neighbours now of the same state fuse
            if 0 <= k < len(runs) and runs[k][0] == runs[j][0]:
                lo, hi = sorted((j, k))
                runs[lo][2] = runs[hi][2]
                del runs[hi]
                j = lo
    return runs


def label_region(region: SpeechRegion, sr: int, embed: Embed, centroids: np.ndarray, speakers: Sequence[str],
                 threshold: float | None, config: TimelineConfig) -> list[Segment]:
    """The segments of one speech region: ``centroids`` (S, D) unit rows named ``speakers``."""
    y = region.samples
    spans = _windows(len(y), max(1, int(round(config.window * sr))), max(1, int(round(config.hop * sr))))
    emb = np.asarray(embed([y[a:b] for a, b in spans]), dtype=np.float32)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    scores = emb @ centroids.T  # (W, S)
    duration = len(y) / sr
    n_cells = max(1, int(np.ceil(duration / config.step - 1e-9)))
    centres = (np.arange(n_cells) + 0.5) * config.step * sr
    cover = (np.array([a for a, _ in spans])[None, :] <= centres[:, None]) & (
        centres[:, None] < np.array([b for _, b in spans])[None, :])
    cover[cover.sum(axis=1) == 0, -1] = True  # a cell past the last window's end (rounding)
    cell = (cover.astype(np.float64) @ scores) / cover.sum(axis=1, keepdims=True)  # (N, S)
    reward = cell * config.step
    runs = _runs(_viterbi(reward, config.switch_cost))
    runs = _merge_short(runs, reward, int(round(config.min_segment / config.step)))
    out: list[Segment] = []
    for state, a, b in runs:
        start, end = region.start + a * config.step, min(region.start + b * config.step, region.end)
        score = float(cell[a:b, state].mean())
        if threshold is not None and score < threshold:  # open set: the segment's own score decides
            if out and out[-1].speaker is None and abs(out[-1].end - start) < 1e-9:  # fuse with an unknown
                prev = out.pop()
                w0, w1 = prev.end - prev.start, end - start
                score = (prev.score * w0 + score * w1) / (w0 + w1)
                start = prev.start
            out.append(Segment(start, end, None, score))
        else:
            out.append(Segment(start, end, speakers[state], score))
    return out


def timeline_of_blocks(blocks: Iterable[np.ndarray], sr: int, embed: Embed, gallery, threshold: float | None = None,
             config: TimelineConfig | None = None) -> Iterator[Segment]:
    """Segments of a stream of (n,) float32 blocks at ``sr`` Hz against a
    :class:`~spkid.search.gallery.Gallery` (or anything with its ``speakers``, ``threshold`` and
    ``centroids()``), yielded region by region (``threshold``: the open-set
    threshold; default the gallery's, None = every segment gets a name)."""
    config = config or TimelineConfig()
    threshold = gallery.threshold if threshold is None else threshold
    centroids = gallery.centroids().astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    speakers = gallery.speakers
    for region in speech_regions(blocks, sr, config.vad):
        yield from label_region(region, sr, embed, centroids, speakers, threshold, config)


def timeline_of_file(path: str | os.PathLike, sr: int, embed: Embed, gallery, threshold: float | None = None,
                     config: TimelineConfig | None = None, block_seconds: float = 1.0) -> list[Segment]:
    """:func:`timeline_of_blocks` of an audio file, read in ``block_seconds`` blocks (:func:`spkid.audio.io.stream_audio`)."""
    from spkid.audio.io import stream_audio

    return list(timeline_of_blocks(stream_audio(path, sr, block_seconds), sr, embed, gallery, threshold, config))


def segments_to_json(path: str | os.PathLike, segments: Sequence[Segment]) -> dict:
    """``{"file": path, "segments": [{"start", "end", "speaker", "score"}, ...]}``."""
    return {"file": os.fspath(path), "segments": [s.to_dict() for s in segments]}


def format_table(path: str | os.PathLike, segments: Sequence[Segment]) -> list[str]:
    """Readable lines: one per segment, ``start - end  speaker  score``."""
    lines = [f"{os.fspath(path)}: {len(segments)} segment(s)", f"  {'start':>8}  {'end':>8}  {'speaker':<20}  cosine"]
    lines += [f"  {s.start:8.2f}  {s.end:8.2f}  {s.speaker or 'unknown':<20}  {s.score:6.3f}" for s in segments]
    return lines
