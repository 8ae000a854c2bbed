"""Training from a waveform store through the CLI: ``spkid prepare --waves``, then ``spkid train --waves``
with waveform augmentation (crops read from the memory map, augmented and featurised on the fly), and
waveform augmentation refused, not ignored, when training from pre-computed features.

Uses the framework-free stand-in backend for the loop and torch (when installed) for the CLI run.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from spkid.app.cli import main
from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import TrainSampler
from spkid.data.synthetic import make_corpus
from spkid.data.waves import WaveStore
from spkid.data.wavesampler import WaveSampler, WaveSet, make_sampler
from spkid.errors import ConfigError
from spkid.features.config import FeatureConfig
from spkid.training.checkpoints import read_checkpoint
from spkid.training.loop import run_training
from tests.train_cases import NumpyAdapter, tiny_config

AUGMENT = {"noise_prob": 0.5, "noise_snr": [5.0, 20.0], "reverb_prob": 0.3, "telephone_prob": 0.2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, n_speakers=3, utterances_per_speaker=6, sr=16000, seed=0, duration=(0.6, 1.2))
    return root


@pytest.fixture(scope="module")
def waves(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "waves"
    assert main(["prepare", str(corpus), "--layout", "folders", "--waves", str(out), "--val-fraction", "0",
                 "--test-fraction", "0.2", "--no-progress"]) == 0
    return out


def test_prepare_builds_a_wave_store_and_needs_a_target(corpus, waves, capsys):
    store = WaveStore(waves)
    assert store.sr == 16000 and len(store) == 18 and len(store.speakers) == 3
    assert len(store.indices("train")) + len(store.indices("test")) == 18
    assert main(["prepare", str(corpus), "--layout", "folders", "--no-progress"]) == 2
    assert "--cache DIR" in capsys.readouterr().err


def test_make_sampler_picks_by_data_and_refuses_augmentation_on_features(waves):
    store = WaveStore(waves)
    train = WaveSet(store, store.indices("train"))
    config = tiny_config(waveform_augment=AUGMENT)
    sampler = make_sampler(train, config)
    assert isinstance(sampler, WaveSampler) and sampler.augmenter is not None
    assert make_sampler(train, tiny_config()).augmenter is None
    feats = FeatureSet([np.zeros((50, 40), np.float32)] * 4, np.array([0, 0, 1, 1]), ("a", "b"), FeatureConfig())
    assert isinstance(make_sampler(feats, tiny_config()), TrainSampler)
    with pytest.raises(ConfigError, match="need waveforms"):
        make_sampler(feats, config)
    with pytest.raises(ConfigError, match="need waveforms"):
        make_sampler(feats, tiny_config(noise_dir="/some/musan"))


def test_the_shared_loop_trains_from_waveforms_and_resumes_exactly(waves, tmp_path):
    store = WaveStore(waves)
    train = WaveSet(store, store.indices("train"))
    config = tiny_config(waveform_augment=AUGMENT, epochs=3)
    full = run_training(NumpyAdapter(), config, train, None, tmp_path / "full", progress=False)
    run_training(NumpyAdapter(), config.replace(epochs=2), train, None, tmp_path / "part", progress=False)
    resumed = run_training(NumpyAdapter(), config, train, None, tmp_path / "part", resume=True, progress=False)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    meta, _ = read_checkpoint(tmp_path / "full")
    assert meta["train_config"]["waveform_augment"]["noise_prob"] == 0.5


def test_each_epoch_reports_the_data_wait_per_step_outside_the_history(waves, tmp_path, capsys):
    store = WaveStore(waves)
    train = WaveSet(store, store.indices("train"))
    history = run_training(NumpyAdapter(), tiny_config(epochs=2, waveform_augment=AUGMENT), train, None,
                           tmp_path / "r", progress=True)
    waits = [float(m) for m in re.findall(r"data_wait_ms=([0-9.e+-]+)", capsys.readouterr().out)]
    assert len(waits) == 2 and all(w >= 0 for w in waits)
    assert all("data_wait_ms" not in h for h in history)  # the history stays reproducible


def test_spkid_train_from_waves_with_augmentation(waves, tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    args = ["train", "--backend", "torch", "--waves", str(waves), "--out", str(run), "--epochs", "2",
            "--model-overrides", json.dumps(tiny_config().model_overrides), "--batch-size", "6",
            "--crop-frames", "40", "--waveform-augment", json.dumps(AUGMENT), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    meta, _ = read_checkpoint(run)
    assert meta["train_config"]["waveform_augment"]["reverb_prob"] == 0.3
    assert meta["feature_config"]["sr"] == 16000 and len(meta["speakers"]) == 3
    history = meta["history"]
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert main(["evaluate", "--model", str(run), "--waves", str(waves), "--no-progress"]) == 0
    assert "top-1" in capsys.readouterr().out.lower()
    from spkid.inference.embeddings import load_embeddings

    assert main(["embed", "--model", str(run), "--waves", str(waves), "--out", str(tmp_path / "emb.npz"),
                 "--no-progress"]) == 0
    emb = load_embeddings(tmp_path / "emb.npz")
    assert len(emb) == len(WaveStore(waves)) and np.isfinite(emb.embeddings).all()
