"""WaveSampler: seeded waveform crops -> augmentation -> fbank batches with TrainSampler's interface."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spkid.audio.augment import AugmentConfig, Augmenter
from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import TrainSampler
from spkid.data.wavesampler import InMemoryWaves, WaveSampler, WaveSet, WaveSource, _tile
from spkid.errors import ConfigError, FeatureError
from spkid.features.api import fbank
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SR = 16000
CROP = 50  # frames: 400 + 49 * 160 = 8240 samples


def _source(n: int = 16, n_speakers: int = 3) -> InMemoryWaves:
    """Utterances of 3000..20000 samples (some shorter than a crop), a tone per speaker plus noise."""
    rng = np.random.default_rng(1234)
    waves, labels = [], []
    for u in range(n):
        c = u % n_speakers
        length = int(rng.integers(3000, 20000)) if u % 4 else 3000 + 17 * u
        t = np.arange(length) / SR
        y = 0.3 * np.sin(2 * np.pi * (200 + 150 * c) * t) + 0.05 * rng.standard_normal(length)
        waves.append(y.astype(np.float32))
        labels.append(c)
    return InMemoryWaves(waves, labels, [f"spk{c}" for c in range(n_speakers)], sr=SR,
                         ids=[f"u{u}.wav" for u in range(n)])


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 4, "crop_frames": CROP, "seed": 5, **kw})


def _augmenter() -> Augmenter:
    return Augmenter(AugmentConfig(noise_prob=1.0, reverb_prob=0.5, babble_prob=0.5, babble_speakers=(1, 2),
                                   telephone_prob=0.5, gain_prob=0.5), sr=SR)


def _sampler(augment: bool = False) -> WaveSampler:
    if augment:
        return WaveSampler(WaveSet(_source()), _config(time_masks=1, freq_masks=1, gain_db=(-3.0, 3.0)),
                           augmenter=_augmenter())
    return WaveSampler(WaveSet(_source()), _config())


def _digest(augment: bool, epoch: int, i: int) -> str:
    x, y = _sampler(augment).batch(epoch, i)
    return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()


def _same(a, b) -> bool:
    return all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in zip(a, b))


def test_in_memory_waves_is_a_wave_source():
    src = _source()
    assert isinstance(src, WaveSource)
    assert len(src) == 16 and src.labels.dtype == np.int64 and src.lengths.dtype == np.int64
    piece = src.read(2, 100, 50)
    assert piece.dtype == np.float32 and piece.shape == (50,)
    piece[:] = 9.0  # a copy
    assert not np.any(src.read(2, 100, 50) == 9.0)
    assert src.read(2).shape == (int(src.lengths[2]),)
    with pytest.raises(ConfigError):  # as the wave store
        src.read(2, int(src.lengths[2]) - 10, 11)
    with pytest.raises(FeatureError):
        InMemoryWaves([np.zeros(10)], [3], ["a"])


def test_waveset_remaps_labels_and_checks_speakers():
    src = _source()
    sub = WaveSet(src, [1, 4, 7, 10])  # speakers 1, 1, 1, 1 -> one class
    assert sub.speakers == ("spk1",) and sub.labels.tolist() == [0, 0, 0, 0] and sub.n_classes == 1
    two = WaveSet(src, [0, 2, 5], speakers=("spk2", "spk0"))
    assert two.labels.tolist() == [1, 0, 0] and two.ids == ["u0.wav", "u2.wav", "u5.wav"]
    assert two.subset([2]).labels.tolist() == [0] and two.subset([2]).ids == ["u5.wav"]
    with pytest.raises(FeatureError):
        WaveSet(src, [0, 1], speakers=("spk0",))
    with pytest.raises(ConfigError):
        WaveSet(src, feature_config=FeatureConfig(sr=8000))


def test_waveset_features_are_whole_utterance_fbanks():
    src = _source(6)
    ws = WaveSet(src, [0, 3, 5])
    feats = ws.features
    assert ws.features is feats and ws.n_mels == 40
    for k, j in enumerate([0, 3, 5]):
        assert np.array_equal(feats[k], fbank(src.read(j), config=ws.feature_config))
    fs = ws.to_feature_set()
    assert isinstance(fs, FeatureSet) and fs.labels.tolist() == ws.labels.tolist() and fs.n_mels == 40


def test_shapes_labels_and_order_rule():
    s = _sampler()
    assert len(s) == 4 and s.crop_samples == 400 + (CROP - 1) * 160
    assert (s.data.lengths < s.crop_samples).any() and (s.data.lengths > s.crop_samples).any()
    order = s.order(2)
    fs = FeatureSet([np.zeros((3, 40), np.float32)] * 16, s.data.labels, s.data.speakers)
    assert np.array_equal(order, TrainSampler(fs, _config()).order(2))
    seen = []
    for i, (x, y) in enumerate(s.epoch(2)):
        assert x.shape == (4, CROP, 40) and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.dtype == np.int64 and np.array_equal(y, s.data.labels[order[i * 4 : (i + 1) * 4]])
        seen.extend(order[i * 4 : (i + 1) * 4].tolist())
    assert sorted(seen) == list(range(16))
    assert s.batches_built == 4 and s.last_batch_seconds > 0 and s.total_batch_seconds >= s.last_batch_seconds
    with pytest.raises(IndexError):
        s.batch(0, 4)


def test_crop_is_the_fbank_of_the_source_slice():
    s = _sampler()
    src, fc, n = s.data.source, s.data.feature_config, s.crop_samples
    short = long = 0
    for i in range(len(s)):
        x, _ = s.batch(1, i)
        chosen, starts = s.crop_starts(1, i)
        for k, (j, start) in enumerate(zip(chosen, starts)):
            length = int(src.lengths[j])
            if length >= n:
                wave, long = src.read(int(j), int(start), n), long + 1
            else:
                wave, short = _tile(src.read(int(j)), n, int(start)), short + 1
                assert 0 <= start < length
            assert np.array_equal(x[k], fbank(wave, config=fc))
    assert short and long


def test_tile_repeats_from_offset():
    y = np.arange(5, dtype=np.float32)
    assert _tile(y, 12, 3).tolist() == [3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("augment", [False, True])
def test_batches_do_not_depend_on_build_order(augment):
    a = _sampler(augment)
    forward = [a.batch(3, i) for i in range(len(a))]
    b = _sampler(augment)
    backward = [b.batch(3, i) for i in reversed(range(len(b)))][::-1]
    for p, q in zip(forward, backward):
        assert _same(p, q)
    assert not np.array_equal(forward[0][0], _sampler(augment).batch(4, 0)[0])


def test_augmentation_changes_crops_deterministically():
    plain, aug = _sampler(False), _sampler(True)
    assert np.array_equal(plain.crop_starts(0, 1)[1], aug.crop_starts(0, 1)[1])  # same crops, then augmented
    x0, y0 = plain.batch(0, 1)
    x1, y1 = aug.batch(0, 1)
    assert np.array_equal(y0, y1) and not np.allclose(x0, x1)
    assert _same(aug.batch(0, 1), _sampler(True).batch(0, 1))
    assert np.isfinite(x1).all()


def test_babble_pool_falls_back_to_other_speakers():
    src = _source()
    one = WaveSet(src, [0, 3, 6, 9, 1])  # four of spk0: most batches of 2 hold one speaker
    cfg = _config(batch_size=2)
    aug = Augmenter(AugmentConfig(babble_prob=1.0, babble_speakers=(1, 2)), sr=SR)
    s = WaveSampler(one, cfg, augmenter=aug)
    batches = [s.batch(0, i) for i in range(len(s))]
    assert _same(batches[1], WaveSampler(one, cfg, augmenter=aug).batch(0, 1))
    with pytest.raises(ConfigError):
        WaveSampler(WaveSet(src, [0, 3]), cfg, augmenter=aug)


def test_batch_bytes_identical_in_another_process():
    code = ("import sys; sys.path.insert(0, %r); from tests.core.test_wavesampler import _digest; "
            "print(_digest(False, 2, 3)); print(_digest(True, 2, 3))" % str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    assert out == [_digest(False, 2, 3), _digest(True, 2, 3)]


def test_torch_loader_gives_the_sampler_batches():
    pytest.importorskip("torch")
    from spkid_torch.data import train_loader

    s = _sampler(True)
    want = [s.batch(1, i) for i in range(len(s))]
    for workers in (0, 2):
        got = [(x.numpy(), y.numpy()) for x, y in train_loader(s, 1, num_workers=workers)]
        assert len(got) == len(want)
        for p, q in zip(got, want):
            assert _same(p, q)


def test_keras_loader_gives_the_sampler_batches():
    pytest.importorskip("keras")
    from spkid_keras.data import EpochBatches, iterate

    s = _sampler(True)
    want = [s.batch(1, i) for i in range(len(s))]
    for workers in (0, 2):
        got = list(iterate(EpochBatches(s, 1), num_workers=workers))
        assert len(got) == len(want)
        for p, q in zip(got, want):
            assert _same(p, q)


def test_keras_loader_workers_raise_a_batch_error_at_that_batch():
    pytest.importorskip("keras")
    from spkid.errors import AudioError
    from spkid_keras.data import EpochBatches, iterate

    class Broken(EpochBatches):
        def __getitem__(self, i):
            if i == 2:
                raise AudioError("unreadable crop", path="u2.wav")
            return super().__getitem__(i)

    got = []
    with pytest.raises(AudioError, match="u2.wav: unreadable crop"):
        for batch in iterate(Broken(_sampler(True), 0), num_workers=2):
            got.append(batch)
    assert len(got) == 2


def test_a_rank_builds_only_its_rows_and_they_equal_the_full_batch():
    """With ``only_rows(rank_rows(...))`` each of 2 ranks (2 micro-batches each) augments and featurises its
    own half of the global batch: those rows are bit-identical to the unsharded batch (babble pools and
    feature masks drawn over the whole batch as before), the others zeros, and the augmenter runs only for
    the rank's items."""
    import functools

    from spkid.training.distributed import rank_rows

    calls = []

    class Counting(Augmenter):
        def __call__(self, y, rng, **kw):
            calls.append(1)
            return super().__call__(y, rng, **kw)

    def sampler(rows=None):
        aug = Counting(_augmenter().config, sr=SR)
        s = WaveSampler(WaveSet(_source()), _config(batch_size=8, time_masks=1, freq_masks=1, gain_db=(-3.0, 3.0),
                                                   grad_accumulation=2), augmenter=aug)
        s.only_rows(rows)
        return s

    full = sampler()
    for i in range(len(full)):
        x, y = full.batch(1, i)
        got = np.zeros_like(x)
        for rank in (0, 1):
            rows = functools.partial(rank_rows, world=2, accumulation=2, rank=rank)
            lo, hi = rows(len(y))
            calls.clear()
            xr, yr = sampler(rows).batch(1, i)
            assert len(calls) == hi - lo < len(y)
            np.testing.assert_array_equal(yr, y)
            np.testing.assert_array_equal(xr[lo:hi], x[lo:hi])
            assert not xr[:lo].any() and not xr[hi:].any()
            got[lo:hi] = xr[lo:hi]
        np.testing.assert_array_equal(got, x)  # the two ranks' rows tile the batch
    assert rank_rows(3, world=2, accumulation=2, rank=1) == (0, 3)  # too small to train on: skipped, built whole
