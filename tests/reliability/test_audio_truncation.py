"""Audio whose data section is cut short is an AudioError naming the file: a WAV whose data chunk is
shorter than its header declares (libsndfile alone would load the prefix silently), a FLAC that loses sync."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spkid.audio.io import info, load_audio_with_rate
from spkid.errors import AudioError


def _tone(n: int = 16000) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)


@pytest.mark.parametrize("keep", [100, 1000, 15999])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_data_is_refused(tmp_path, keep, subtype):
    sf.write(tmp_path / "full.wav", _tone(), 16000, subtype=subtype)
    data = (tmp_path / "full.wav").read_bytes()
    width = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}[subtype]
    header = len(data) - width * 16000
    (tmp_path / "cut.wav").write_bytes(data[: header + width * keep + 1])  # + half a sample
    assert info(tmp_path / "cut.wav").frames == keep  # what libsndfile alone would load
    with pytest.raises(AudioError, match="truncated WAV") as exc:
        load_audio_with_rate(tmp_path / "cut.wav", sr=None)
    assert str(tmp_path / "cut.wav") in str(exc.value)


def test_complete_wav_with_trailing_chunk_loads(tmp_path):
    """A chunk after the data (e.g. LIST metadata) is not mistaken for truncation."""
    sf.write(tmp_path / "full.wav", _tone(), 16000, subtype="PCM_16")
    data = bytearray((tmp_path / "full.wav").read_bytes()) + b"LIST" + (4).to_bytes(4, "little") + b"INFO"
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    (tmp_path / "meta.wav").write_bytes(bytes(data))
    y, sr = load_audio_with_rate(tmp_path / "meta.wav", sr=None)
    full, _ = load_audio_with_rate(tmp_path / "full.wav", sr=None)
    np.testing.assert_array_equal(y, full)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_flac_is_an_audio_error(tmp_path, fraction):
    sf.write(tmp_path / "full.flac", _tone(), 16000)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(AudioError, match="cannot decode") as exc:
        load_audio_with_rate(tmp_path / "cut.flac")
    assert str(tmp_path / "cut.flac") in str(exc.value)
