"""Audio whose data section is cut short: PCM WAV keeps exactly the samples that are there (libsndfile
trusts the file size over the header), compressed FLAC that loses sync is an AudioError naming the file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spkid.audio import info, load_audio_with_rate
from spkid.errors import AudioError


def _tone(n: int = 16000) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)


@pytest.mark.parametrize("keep", [1000, 7999])
def test_truncated_wav_data_loads_the_intact_prefix(tmp_path, keep):
    sf.write(tmp_path / "full.wav", _tone(), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * keep + 1])  # header + keep samples + half a sample
    assert info(tmp_path / "cut.wav").frames == keep
    y, sr = load_audio_with_rate(tmp_path / "cut.wav", sr=None)
    full, _ = load_audio_with_rate(tmp_path / "full.wav", sr=None)
    assert sr == 16000 and len(y) == keep
    np.testing.assert_array_equal(y, full[:keep])


def test_truncated_wav_shorter_than_a_frame_is_refused(tmp_path):
    sf.write(tmp_path / "full.wav", _tone(), 16000, subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[: 44 + 2 * 100])
    with pytest.raises(AudioError, match="too short") as exc:
        load_audio_with_rate(tmp_path / "cut.wav")
    assert str(tmp_path / "cut.wav") in str(exc.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_flac_is_an_audio_error(tmp_path, fraction):
    sf.write(tmp_path / "full.flac", _tone(), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(AudioError, match="cannot decode") as exc:
        load_audio_with_rate(tmp_path / "cut.flac")
    assert str(tmp_path / "cut.flac") in str(exc.value)
