"""spkid.data.synthetic: the built-in demo corpus is deterministic, well-formed and neither trivial nor impossible."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spkid.data.synthetic import make_corpus, make_speakers, synthesize_utterance


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default corpus (8 speakers x 24 utterances), built once for this module."""
    out = tmp_path_factory.mktemp("synth")
    return out, make_corpus(out)


def test_layout_and_format(corpus):
    out, paths = corpus
    assert len(paths) == 8 * 24 and paths == sorted(paths)
    assert sorted(p.name for p in out.iterdir()) == [f"spk{i:02d}" for i in range(8)]
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    for p in paths[::17]:
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert p.parent.name == p.name.split("_")[0]
        assert 1.5 <= info.duration <= 3.0
        y, _ = sf.read(p, dtype="float32")
        assert np.isfinite(y).all() and 0.005 < np.sqrt(np.mean(y**2)) < 0.5


def test_deterministic_and_seeded(tmp_path):
    a = make_corpus(tmp_path / "a", n_speakers=2, utterances_per_speaker=2, seed=3)
    b = make_corpus(tmp_path / "b", n_speakers=2, utterances_per_speaker=2, seed=3)
    c = make_corpus(tmp_path / "c", n_speakers=2, utterances_per_speaker=2, seed=4)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert all(x.read_bytes() != z.read_bytes() for x, z in zip(a, c))


def test_sample_rate_and_duration(tmp_path):
    y = synthesize_utterance(make_speakers(1)[0], sr=8000, duration=1.0, seed=1)
    assert y.dtype == np.float32 and y.shape == (8000,) and np.abs(y).max() <= 1.0
    (p,) = make_corpus(tmp_path, n_speakers=1, utterances_per_speaker=1, sr=22050, duration=(0.5, 0.5))
    assert sf.info(p).samplerate == 22050 and sf.info(p).frames == round(0.5 * 22050)


def test_speakers_differ_in_pitch_and_tract():
    sp = make_speakers(8, seed=0)
    assert len({s.name for s in sp}) == 8
    f0 = np.array([s.f0 for s in sp])
    vtl = np.array([s.vtl for s in sp])
    assert f0.std() > 10 and vtl.std() > 0.02
    narrow = make_speakers(8, seed=0, spread=0.1)
    assert np.std([s.f0 for s in narrow]) < f0.std()


def _mean_logmel(paths):
    from spkid.audio.io import load_audio
    from spkid.features.api import fbank

    return np.stack([fbank(load_audio(p), 16000, normalize=None).mean(axis=0) for p in paths])


def test_neither_trivial_nor_impossible(corpus):
    """A linear baseline (logistic regression on each clip's mean log-mel) is well above chance (1/8)
    but clearly below perfect, on held-out clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, paths = corpus
    x = _mean_logmel(paths)
    y = [p.parent.name for p in paths]
    acc = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), x, y, cv=4).mean()
    assert 0.35 < acc < 0.95, acc
