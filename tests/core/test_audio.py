"""spkid.audio on well-formed input: decoding real files, rates, channels, info."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spkid.audio.io import info, load_audio, load_audio_with_rate
from spkid.errors import ConfigError


def test_real_files_decode(fsdd_dir, libri_dir):
    wav = sorted(fsdd_dir.glob("*.wav"))[0]
    flac = sorted(libri_dir.glob("*.flac"))[0]
    y, sr = load_audio_with_rate(wav, sr=None)
    assert sr == 8000 and y.dtype == np.float32 and y.ndim == 1
    assert 0 < np.abs(y).max() <= 1.0
    ref, _ = sf.read(wav, dtype="float32")
    np.testing.assert_array_equal(y, ref)
    z = load_audio(flac)  # already 16 kHz: no resampling
    np.testing.assert_array_equal(z, sf.read(flac, dtype="float32")[0])
    i = info(flac)
    assert (i.sr, i.channels, i.frames) == (16000, 1, len(z))
    assert i.duration == pytest.approx(len(z) / 16000)


def test_upsampling_real_file(fsdd_dir):
    wav = sorted(fsdd_dir.glob("*.wav"))[1]
    y8, _ = load_audio_with_rate(wav, sr=None)
    y16 = load_audio(wav, sr=16000)
    assert abs(len(y16) - 2 * len(y8)) <= 1
    # energy is preserved by band-limited resampling
    assert np.mean(y16**2) == pytest.approx(np.mean(y8**2), rel=0.05)


def test_mono_false_keeps_channels(tmp_path):
    t = np.arange(8000) / 8000
    st = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 500 * t)], 1).astype(np.float32)
    sf.write(tmp_path / "s.wav", st, 8000, subtype="FLOAT")
    y = load_audio(tmp_path / "s.wav", sr=None, mono=False)
    assert y.shape == (2, 8000) and y.dtype == np.float32
    np.testing.assert_array_equal(y, st.T)
    y2 = load_audio(tmp_path / "s.wav", sr=16000, mono=False)
    assert y2.shape[0] == 2 and abs(y2.shape[1] - 16000) <= 1


@pytest.mark.parametrize("bad", [0, -16000, 16000.0, "16000", True])
def test_rate_must_be_positive_int(tmp_path, bad):
    sf.write(tmp_path / "a.wav", np.ones(800, np.float32) * 0.1, 8000)
    with pytest.raises(ConfigError, match="sr"):
        load_audio(tmp_path / "a.wav", sr=bad)


def test_min_duration_must_be_valid(tmp_path):
    sf.write(tmp_path / "a.wav", np.ones(800, np.float32) * 0.1, 8000)
    with pytest.raises(ConfigError, match="min_duration"):
        load_audio(tmp_path / "a.wav", min_duration=-1)
