"""spkid.data.synthetic on bad arguments: ConfigError naming the argument, nothing written."""
from __future__ import annotations

import pytest

from spkid.errors import ConfigError
from spkid.data.synthetic import make_corpus, make_speakers, synthesize_utterance


@pytest.mark.parametrize("kwargs", [
    dict(n_speakers=0), dict(utterances_per_speaker=0), dict(duration=(0.1, 1.0)), dict(duration=(2.0, 1.0)),
    dict(spread=0.0),
])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        make_corpus(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_bad_utterance_arguments():
    voice = make_speakers(1)[0]
    with pytest.raises(ConfigError, match="sr"):
        synthesize_utterance(voice, sr=4000)
    with pytest.raises(ConfigError, match="duration"):
        synthesize_utterance(voice, duration=0.1)
