"""Training from a waveform store through the CLI: ``spkid prepare --waves``, then ``spkid train --waves``
with waveform augmentation (crops read from the memory map, augmented and featurised on the fly), and
waveform augmentation refused, not ignored, when training from pre-computed features.

Uses the framework-free stand-in backend for the loop and torch (when installed) for the CLI run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

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


def test_spkid_train_takes_the_robust_recipe_and_its_features(corpus, waves, tmp_path, capsys):
    """``spkid train --config benchmarks/recipes/libri251_robust.yaml`` works from the CLI: its TrainConfig
    fields (waveform augmentation) and its ``features:`` (no mean normalisation) both reach the run; a
    feature cache built with other features is refused with the way to rebuild it."""
    pytest.importorskip("torch")
    import yaml

    recipe = Path(__file__).resolve().parents[2] / "benchmarks" / "recipes" / "libri251_robust.yaml"
    spec = yaml.safe_load(recipe.read_text())
    small = ["--epochs", "1", "--model-overrides", json.dumps({**tiny_config().model_overrides, "input_norm": True}),
             "--batch-size", "6", "--crops-per-utterance", "1", "--num-workers", "0", "--no-progress"]
    run = tmp_path / "run"
    assert main(["train", "--backend", "torch", "--waves", str(waves), "--out", str(run), "--config", str(recipe),
                 *small]) == 0, capsys.readouterr().err
    meta, _ = read_checkpoint(run)
    assert meta["train_config"]["waveform_augment"] == {**meta["train_config"]["waveform_augment"],
                                                        **spec["waveform_augment"]}
    assert meta["train_config"]["crop_frames"] == spec["crop_frames"]
    assert meta["feature_config"]["normalize"] is spec["features"]["normalize"] is None

    cache = tmp_path / "cache"
    assert main(["prepare", str(corpus), "--layout", "folders", "--cache", str(cache), "--no-progress"]) == 0
    plain = {k: v for k, v in spec.items() if k not in ("waveform_augment",)}
    plain_recipe = tmp_path / "plain.yaml"
    plain_recipe.write_text(yaml.safe_dump(plain))
    capsys.readouterr()
    assert main(["train", "--backend", "torch", "--cache", str(cache), "--out", str(tmp_path / "r2"), "--config",
                 str(plain_recipe), *small]) == 2
    err = capsys.readouterr().err
    assert "differ from the feature cache's" in err and str(cache) in err and "--feature-config" in err


def test_a_recipe_with_unknown_feature_fields_is_refused(tmp_path):
    from spkid.training.config import split_recipe

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nfeatures: {normalise: null}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: features: unknown FeatureConfig field\(s\) normalise"):
        split_recipe(bad)
    bad.write_text("features: [1, 2]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        split_recipe(bad)
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 2\nfeatures: {normalize: null, n_mels: 40}\n")
    assert split_recipe(good) == ({"epochs": 2}, {"normalize": None, "n_mels": 40})


def test_the_loop_builds_only_the_rows_an_adapter_trains_on(tmp_path):
    """``run_training`` hands a data-parallel adapter's ``row_share`` to the wave sampler: batches arrive
    with that rank's rows built and the rest zero (each rank augments its share, not the global batch)."""
    import functools

    from spkid.training.distributed import rank_rows, usable
    from tests.train_cases import wave_blobs

    seen = []

    class SecondRank(NumpyAdapter):
        def row_share(self):
            return functools.partial(rank_rows, world=2, accumulation=1, rank=1)

        def train_step(self, x, y, lr):
            lo, hi = rank_rows(len(y), world=2, accumulation=1, rank=1)
            if usable(len(y), 2, 1):  # 18 items in batches of 8: the trailing 2 are built whole (skipped by DDP)
                seen.append((bool(x[:lo].any() or x[hi:].any()), bool(x[lo:hi].any()), lo > 0))
            return super().train_step(x, y, lr)

    config = tiny_config(epochs=1, waveform_augment=AUGMENT, batch_size=8)
    run_training(SecondRank(), config, wave_blobs(), None, tmp_path / "run", progress=False)
    assert len(seen) == 2 and all(s == (False, True, True) for s in seen), seen
