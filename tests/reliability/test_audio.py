"""Bad and unusual audio input: every failure is an AudioError naming the file; odd formats still work."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

import spkid.features.api as F
from spkid.audio.io import info, load_audio, load_audio_with_rate
from spkid.errors import AudioError, FeatureError


def _tone(freq=440.0, sr=16000, seconds=1.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    y = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return y if channels == 1 else np.repeat(y[:, None], channels, axis=1)


def _expect(path, match, **kw):
    with pytest.raises(AudioError, match=match) as exc:
        load_audio(path, **kw)
    assert str(path) in str(exc.value) and exc.value.path == str(path)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.wav", "not found")


def test_directory(tmp_path):
    (tmp_path / "d.wav").mkdir()
    _expect(tmp_path / "d.wav", "directory")


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.wav").write_bytes(b"")
    _expect(tmp_path / "z.wav", r"empty file \(0 bytes\)")


def test_truncated_header(tmp_path):
    sf.write(tmp_path / "ok.wav", _tone(), 16000)
    (tmp_path / "t.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:30])
    _expect(tmp_path / "t.wav", "cannot decode")


def test_not_audio_named_wav(tmp_path):
    (tmp_path / "text.wav").write_bytes(b"this is a text file, not RIFF audio\n" * 20)
    _expect(tmp_path / "text.wav", "cannot decode")


def test_unsupported_container_without_decoder(tmp_path):
    (tmp_path / "x.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200)
    _expect(tmp_path / "x.m4a", "cannot decode")


def test_zero_samples(tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros(0, np.float32), 16000)
    _expect(tmp_path / "e.wav", r"0 samples")


def test_all_zero_signal(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(16000, np.float32), 16000)
    _expect(tmp_path / "s.wav", "silent")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    y = _tone()
    y[100] = bad
    sf.write(tmp_path / "n.wav", y, 16000, subtype="FLOAT")
    _expect(tmp_path / "n.wav", "NaN or Inf")


def test_shorter_than_one_window(tmp_path):
    sf.write(tmp_path / "short.wav", _tone(seconds=0.01), 16000)
    _expect(tmp_path / "short.wav", "too short")
    _expect(tmp_path / "short.wav", "too short", min_duration=0.02)
    assert load_audio(tmp_path / "short.wav", min_duration=0.005).shape == (160,)


def test_info_on_bad_file_names_it(tmp_path):
    (tmp_path / "bad.flac").write_bytes(b"fLaC" + b"\x00" * 10)
    with pytest.raises(AudioError, match="bad.flac"):
        info(tmp_path / "bad.flac")


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1 / 64), ("PCM_S8", 1 / 64), ("PCM_16", 1e-4),
                                         ("PCM_24", 1e-6), ("PCM_32", 1e-8), ("FLOAT", 0)])
def test_pcm_widths_are_scaled(tmp_path, subtype, tol):
    y = _tone(sr=8000)
    ext = "wav" if subtype != "PCM_S8" else "aiff"
    path = tmp_path / f"a.{ext}"
    sf.write(path, y, 8000, subtype=subtype)
    out, sr = load_audio_with_rate(path, sr=None)
    assert sr == 8000 and out.dtype == np.float32 and out.shape == y.shape
    assert np.abs(out - y).max() <= tol


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_mixdown(tmp_path, channels):
    gains = np.linspace(0.2, 1.0, channels, dtype=np.float32)
    data = _tone(channels=channels) * gains
    sf.write(tmp_path / "m.wav", data, 16000, subtype="FLOAT")
    y = load_audio(tmp_path / "m.wav")
    np.testing.assert_allclose(y, data.mean(axis=1), atol=1e-6)
    assert load_audio(tmp_path / "m.wav", mono=False).shape == (channels, 16000)


def _peak_hz(y, sr):
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.argmax(spec) * sr / len(y)


@pytest.mark.parametrize("native", [8000, 16000, 22050, 44100, 48000])
def test_resampling_keeps_length_and_pitch(tmp_path, native):
    sf.write(tmp_path / "tone.wav", _tone(sr=native, seconds=2.0), native, subtype="FLOAT")
    y, sr = load_audio_with_rate(tmp_path / "tone.wav", sr=16000)
    assert sr == 16000 and y.dtype == np.float32
    assert abs(len(y) - 32000) <= 1
    assert _peak_hz(y, 16000) == pytest.approx(440.0, abs=1.0)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_long_clip_fbank_memory_is_bounded(rng):
    """20 minutes at 16 kHz: working memory stays at a few chunks, not all frames' spectra."""
    y = np.tile((0.1 * rng.standard_normal(16000)).astype(np.float32), 20 * 60)
    frames = F.n_frames(len(y), 400, 160)
    out_bytes = frames * 40 * 4
    all_spectra = frames * 512 * 4  # what an unchunked framing alone would allocate
    F.fbank(y[:16000], 16000)  # warm caches (filterbank, config) outside the measurement
    tracemalloc.start()
    try:
        out = F.fbank(y, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (frames, 40) and np.isfinite(out).all()
    assert peak < out_bytes + 32 * 2**20, (peak, out_bytes)
    assert peak < all_spectra / 8


def test_fbank_rejects_too_short_and_nonfinite_arrays():
    with pytest.raises(FeatureError):
        F.fbank(np.zeros(10, np.float32), 16000)
    with pytest.raises(FeatureError):
        F.fbank(np.full(1000, np.inf, np.float32), 16000)
