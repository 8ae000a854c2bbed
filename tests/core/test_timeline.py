"""Energy VAD (silence, noise, speech) and the who-speaks-when timeline on constructed recordings with known truth.

The "voices" are harmonic tones with a syllable-rate envelope, each on its own fundamental, and the embedding is
their normalised band-power spectrum, so a voice's windows score ~1 against its own centroid and ~0 against the
others': the tests check the segmentation (VAD, windows, smoothing, unknown, boundaries, JSON), not a model.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from spkid.audio.io import stream_audio
from spkid.audio.vad import VadConfig, speech_intervals, speech_regions
from spkid.data.synthetic.voices import make_speakers, synthesize_utterance
from spkid.errors import ConfigError
from spkid.search.gallery import Gallery
from spkid.search.timeline import TimelineConfig, format_table, segments_to_json, timeline_of_blocks, timeline_of_file

SR = 16000
F0 = {"alice": 180.0, "bob": 310.0, "carol": 470.0, "stranger": 640.0}


def voice(name: str, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * F0[name] * h * t + rng.uniform(0, 6)) / h for h in (1, 2, 3))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))  # syllables, never silent
    return (0.1 * envelope * y).astype(np.float32)


def embed(waves) -> np.ndarray:
    out = []
    for w in waves:
        frames = w[: len(w) // (SR // 4) * (SR // 4)].reshape(-1, SR // 4)  # 0.25 s frames
        spec = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)  # 4 Hz bins
        bands = spec[: 4000 // 4].reshape(-1, 10).sum(axis=1)  # 40 Hz bands up to 4 kHz
        out.append(bands / np.linalg.norm(bands))
    return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def gallery() -> Gallery:
    rng = np.random.default_rng(0)
    g = Gallery(threshold=0.5)
    for name in ("alice", "bob", "carol"):
        g.enroll(name, embed([voice(name, 3.0, rng) for _ in range(2)]))
    return g


def recording(turns, rng, gap_noise: float = 1e-4):
    """``turns`` [(name or None for a pause, seconds)] -> (samples, truth [(start, end, name)])."""
    parts, truth, t = [], [], 0.0
    for name, seconds in turns:
        y = np.zeros(int(seconds * SR), np.float32) if name is None else voice(name, seconds, rng)
        if name is not None:
            truth.append((t, t + seconds, name))
        parts.append(y)
        t += seconds
    y = np.concatenate(parts)
    return y + (gap_noise * rng.standard_normal(len(y))).astype(np.float32), truth


def blocks(y, seconds: float = 1.0):
    step = int(seconds * SR)
    return (y[i:i + step] for i in range(0, len(y), step))


def expected(truth):
    return [(a, b, None if name == "stranger" else name) for a, b, name in truth]


TURNS = [(None, 1.0), ("alice", 3.0), (None, 0.8), ("bob", 2.5), (None, 1.0), ("stranger", 3.0), (None, 0.6),
         ("alice", 2.0), (None, 0.7), ("carol", 5.5), (None, 1.0)]


# ----------------------------------------------------------------------------------------------- VAD
def test_vad_finds_nothing_in_silence_and_stationary_noise(rng):
    assert speech_intervals(np.zeros(5 * SR, np.float32), SR) == []
    assert speech_intervals((0.05 * rng.standard_normal(20 * SR)).astype(np.float32), SR) == []


def test_vad_finds_speech_between_pauses(rng):
    y, truth = recording(TURNS, rng)
    found = speech_intervals(y, SR)
    assert len(found) == len(truth)
    for (a, b), (ta, tb, _) in zip(found, truth):
        assert abs(a - ta) <= 0.1 and abs(b - tb) <= 0.1


def test_vad_on_synthetic_speech_in_noise(rng):
    """Synthetic speech (its own background noise, 25-35 dB SNR) with 1 s pauses of noise at -60 dBFS."""
    speakers = make_speakers(2, seed=1)
    parts, truth, t = [], [], 0.0
    for k in range(4):
        pause = np.zeros(SR, np.float32)
        u = synthesize_utterance(speakers[k % 2], sr=SR, duration=2.0, seed=k, snr_db=(25.0, 35.0))
        parts += [pause, u]
        truth.append((t + 1.0, t + 1.0 + len(u) / SR))
        t += 1.0 + len(u) / SR
    y = np.concatenate(parts + [np.zeros(SR, np.float32)])
    y += (1e-3 * rng.standard_normal(len(y))).astype(np.float32)
    found = speech_intervals(y, SR)
    speech = sum(b - a for a, b in truth)
    hit = sum(max(0.0, min(b, tb) - max(a, ta)) for a, b in found for ta, tb in truth)
    assert hit >= 0.9 * speech  # nearly all the speech is found ...
    assert sum(b - a for a, b in found) - hit <= 0.1 * speech  # ... and little of the pauses


def test_vad_regions_are_bounded_and_streamed(rng):
    cfg = VadConfig(max_region=5.0)
    y = voice("alice", 60.0, rng)  # one minute without a pause
    consumed = []

    def feed():
        for i, b in enumerate(blocks(y)):
            consumed.append(i)
            yield b

    regions = speech_regions(feed(), SR, cfg)
    first = next(regions)
    assert len(consumed) <= 7  # yielded after ~5 s, not at the end of the stream
    rest = list(regions)
    lengths = [len(r.samples) for r in [first, *rest]]
    assert max(lengths) <= 5.0 * SR + 2 * cfg.pad * SR + cfg.frame * SR
    assert sum(lengths) == pytest.approx(len(y), abs=0.1 * SR)  # cut pieces tile the speech, no overlap
    starts = [r.start for r in [first, *rest]]
    assert all(b.start >= a.end - 1e-9 for a, b in zip([first, *rest], rest))
    assert starts == sorted(starts)


def test_vad_config_is_checked():
    with pytest.raises(ConfigError, match="pad"):
        VadConfig(pad=0.5, min_silence=0.2)
    with pytest.raises(ConfigError, match="unknown"):
        VadConfig.from_dict({"nope": 1})


# ------------------------------------------------------------------------------------------ timeline
def test_timeline_labels_turns_and_unknown(gallery, rng):
    y, truth = recording(TURNS, rng)
    segments = list(timeline_of_blocks(blocks(y), SR, embed, gallery))
    assert [(s.speaker) for s in segments] == [name for _, _, name in expected(truth)]
    for s, (a, b, _) in zip(segments, truth):
        assert abs(s.start - a) <= 0.15 and abs(s.end - b) <= 0.15
    assert all(s.score > 0.9 for s in segments if s.speaker)
    unknown = [s for s in segments if s.speaker is None]
    assert unknown and all(s.score < 0.5 for s in unknown)
    # silence is covered by no segment
    for (a, b), nxt in zip([(s.start, s.end) for s in segments], segments[1:]):
        assert nxt.start > b


def test_timeline_splits_abutting_turns(gallery, rng):
    """No pause between two speakers: the change is found inside one speech region."""
    y, truth = recording([(None, 1.0), ("bob", 4.0), ("carol", 4.0), ("alice", 3.0), (None, 1.0)], rng)
    segments = list(timeline_of_blocks(blocks(y), SR, embed, gallery))
    assert [s.speaker for s in segments] == ["bob", "carol", "alice"]
    bounds = [abs(s.start - a) for s, (a, _, _) in zip(segments, truth)] + [
        abs(s.end - b) for s, (_, b, _) in zip(segments, truth)]
    assert np.mean(bounds) <= 0.5 and max(bounds) <= 0.75


def test_closed_set_without_threshold(rng):
    g = Gallery()  # no threshold: every segment gets a name
    g.enroll("alice", embed([voice("alice", 3.0, rng)]))
    g.enroll("bob", embed([voice("bob", 3.0, rng)]))
    y, _ = recording([(None, 1.0), ("stranger", 3.0), (None, 1.0)], rng)
    assert [s.speaker for s in timeline_of_blocks(blocks(y), SR, embed, g)] in (["alice"], ["bob"])
    assert [s.speaker for s in timeline_of_blocks(blocks(y), SR, embed, g, threshold=0.5)] == [None]


def test_timeline_of_a_file_json_schema(gallery, rng, tmp_path):
    y, truth = recording(TURNS, rng)
    path = tmp_path / "meeting.wav"
    sf.write(path, y[::2], SR // 2, subtype="PCM_16")  # 8 kHz on disk: resampled while streaming
    assert sum(len(b) for b in stream_audio(path, SR, 0.5)) == pytest.approx(len(y), abs=SR // 100)
    segments = timeline_of_file(path, SR, embed, gallery, block_seconds=0.5)
    doc = json.loads(json.dumps(segments_to_json(path, segments)))
    assert list(doc) == ["file", "segments"] and doc["file"] == str(path)
    assert [list(s) for s in doc["segments"]] == [["start", "end", "speaker", "score"]] * len(doc["segments"])
    assert [s["speaker"] for s in doc["segments"]] == [n for _, _, n in expected(truth)]
    for s in doc["segments"]:
        assert isinstance(s["start"], float) and isinstance(s["end"], float) and isinstance(s["score"], float)
        assert s["start"] == round(s["start"], 2) and 0 <= s["start"] < s["end"] <= len(y) / SR + 0.01
    lines = format_table(path, segments)
    assert lines[0] == f"{path}: {len(segments)} segment(s)" and "unknown" in "\n".join(lines)


def test_timeline_of_silence_is_empty(gallery, tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(3 * SR, np.float32), SR)
    assert timeline_of_file(path, SR, embed, gallery) == []


def test_timeline_config_is_checked():
    with pytest.raises(ConfigError, match="hop"):
        TimelineConfig(window=1.0, hop=2.0)
    assert TimelineConfig.from_dict({"vad": {"min_silence": 0.5}}).vad.min_silence == 0.5


def test_a_long_file_streams_in_bounded_memory(gallery, rng, tmp_path):
    """Three minutes on disk; the peak of Python/numpy allocations while labelling it stays far below the
    size of the decoded signal (so it was never read whole)."""
    import tracemalloc

    turns = [(None, 0.7)] + [(name, 4.0) for _ in range(15) for name in ("alice", "bob", "carol")]
    turns = [t for turn in turns for t in (turn, (None, 0.7))][:-1]
    y, truth = recording(turns, rng)
    path = tmp_path / "long.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    whole = y.nbytes  # float32 samples of the whole file
    del y
    tracemalloc.start()
    try:
        segments = timeline_of_file(path, SR, embed, gallery)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(segments) == len(truth)
    assert 0 < peak < whole / 4, f"peak {peak / 1e6:.1f} MB for a {whole / 1e6:.1f} MB signal"
