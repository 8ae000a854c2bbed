"""spkid.data.sampler and spkid.data.featuresets: seeded crops, repeat-padding, augmentation, evaluation pieces and
batches, feature sets and their hold-out split."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.errors import FeatureError
from spkid.training.evaluation import average_posteriors, predict
from spkid.data.featuresets import FeatureSet, split_holdout
from spkid.data.sampler import TrainSampler, add_noise, augment_features, eval_batches, eval_pieces, repeat_pad


def numbered(lengths, n_mels=3, n_classes=2) -> FeatureSet:
    """Utterance u has frame t equal to 1000*u + t in every band: any crop tells where it came from."""
    feats = [np.repeat((1000.0 * u + np.arange(t))[:, None], n_mels, axis=1).astype(np.float32)
             for u, t in enumerate(lengths)]
    return FeatureSet(feats, [u % n_classes for u in range(len(lengths))], tuple("ab"[:n_classes]))


@given(t=st.integers(1, 40), n=st.integers(1, 120), offset=st.integers(0, 39))
def test_repeat_pad_tiles_from_offset(t, n, offset):
    offset %= t
    x = np.arange(t, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    y = repeat_pad(x, n, offset=offset)
    assert y.shape == (n, 2)
    np.testing.assert_array_equal(y[:, 0], (offset + np.arange(n)) % t)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=2, max_size=12), crop=st.integers(1, 50),
       batch=st.integers(1, 8), repeats=st.integers(1, 3), seed=st.integers(0, 2**31), epoch=st.integers(0, 50))
def test_sampler_crops_are_contiguous_deterministic_and_cover_the_epoch(lengths, crop, batch, repeats, seed, epoch):
    data = numbered(lengths)
    cfg = TrainConfig(crop_frames=crop, batch_size=batch, crops_per_utterance=repeats, seed=seed)
    s = TrainSampler(data, cfg)
    seen = []
    for i, (x, y) in enumerate(s.epoch(epoch)):
        x2, y2 = s.batch(epoch, i)  # rebuilt alone (as a worker would): identical
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
        assert x.shape[1:] == (crop, 3) and x.dtype == np.float32 and 1 <= len(x) <= batch
        for row, label in zip(x[:, :, 0], y):
            u, t = divmod(int(row[0]), 1000)
            frames = (row - 1000 * u).astype(int)
            # consecutive frames of utterance u, wrapping around (repeat-padding) when it is short
            np.testing.assert_array_equal(frames, (t + np.arange(crop)) % lengths[u] if lengths[u] < crop
                                          else t + np.arange(crop))
            assert label == data.labels[u]
            seen.append(u)
    counts = np.bincount(seen, minlength=len(lengths))
    n = len(lengths) * repeats
    dropped = n - len(seen)
    assert dropped == (1 if n % min(batch, n) == 1 else 0)
    assert counts.sum() == n - dropped and counts.max() <= repeats


def test_sampler_epochs_and_seeds_differ():
    data = numbered([50] * 20)
    a = TrainSampler(data, TrainConfig(crop_frames=10, batch_size=4, seed=1))
    b = TrainSampler(data, TrainConfig(crop_frames=10, batch_size=4, seed=2))
    assert not np.array_equal(a.batch(0, 0)[0], a.batch(1, 0)[0])
    assert not np.array_equal(a.batch(0, 0)[0], b.batch(0, 0)[0])
    with pytest.raises(IndexError):
        a.batch(0, len(a))


def test_augmentation_is_seeded_and_changes_only_masked_cells():
    cfg = TrainConfig(crop_frames=40, batch_size=4, time_masks=2, freq_masks=2, augment_prob=1.0,
                      time_mask_frames=10, freq_mask_bins=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 40, 12)).astype(np.float32)
    y = augment_features(x.copy(), cfg, np.random.default_rng(5))
    y2 = augment_features(x.copy(), cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(y, y2)
    changed = y != x
    assert changed.any()
    for i in range(4):  # every changed cell holds the example's mean, and lies in a full row or column
        np.testing.assert_allclose(y[i][changed[i]], x[i].mean(), rtol=1e-5)
        rows, cols = changed[i].all(axis=1), changed[i].all(axis=0)
        assert (changed[i] <= (rows[:, None] | cols[None, :])).all()


def test_gain_adds_one_constant_per_example_in_log_units():
    x = np.zeros((3, 5, 4), np.float32)
    y = augment_features(x.copy(), TrainConfig(gain_db=(10.0, 10.0), augment_prob=1.0), np.random.default_rng(0))
    np.testing.assert_allclose(y, np.log(10.0), rtol=1e-6)  # +10 dB power = x10 = +ln(10) in natural log
    y = augment_features(x.copy(), TrainConfig(gain_db=(-6.0, 6.0), augment_prob=0.0), np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)


def test_sampler_applies_configured_augmentation():
    data = numbered([30] * 6)
    plain = TrainSampler(data, TrainConfig(crop_frames=20, batch_size=6)).batch(0, 0)[0]
    aug = TrainSampler(data, TrainConfig(crop_frames=20, batch_size=6, time_masks=1, augment_prob=1.0)).batch(0, 0)[0]
    assert plain.shape == aug.shape and not np.array_equal(plain, aug)


def test_add_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    y = np.sin(np.linspace(0, 2000, 200_000)).astype(np.float32)
    noisy = add_noise(y, 10.0, rng)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y).astype(np.float64) ** 2))
    assert noisy.dtype == np.float32 and abs(snr - 10.0) < 0.1


def test_eval_pieces_full_and_windows():
    feats = [np.ones((5, 2), np.float32), np.arange(70, dtype=np.float32).reshape(35, 2)]
    pieces, owner = eval_pieces(feats, TrainConfig(crop_frames=8, eval_mode="full"))
    assert [p.shape[0] for p in pieces] == [8, 35] and owner.tolist() == [0, 1]
    pieces, owner = eval_pieces(feats, TrainConfig(eval_mode="windows", window_frames=10, hop_frames=10))
    assert owner.tolist() == [0, 1, 1, 1, 1]
    assert all(p.shape == (10, 2) for p in pieces)
    np.testing.assert_array_equal(pieces[-1], feats[1][25:])  # the last window is aligned to the end
    with pytest.raises(FeatureError):
        eval_pieces([np.zeros((0, 2), np.float32)], TrainConfig())


def test_eval_batches_pad_with_zeros_and_report_lengths():
    pieces = [np.full((t, 2), t, np.float32) for t in (7, 3, 5, 3)]
    got = list(eval_batches(pieces, 3))
    assert sum(len(i) for _, _, i in got) == 4
    for x, lengths, idx in got:
        for row, n, i in zip(x, lengths, idx):
            assert n == pieces[i].shape[0]
            np.testing.assert_array_equal(row[:n], pieces[i])
            assert not row[n:].any()


def test_predict_averages_windows_per_utterance():
    def forward(x, lengths):  # mean of the valid frames: a stand-in model
        mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
        m = (x * mask[..., None]).sum(1) / lengths[:, None]
        return {"logits": m, "embedding": 2 * m}

    feats = [np.arange(40, dtype=np.float32).reshape(20, 2), np.ones((3, 2), np.float32)]
    cfg = TrainConfig(eval_mode="windows", window_frames=10, hop_frames=5, eval_batch_size=2)
    out = predict(forward, feats, cfg)
    pieces, owner = eval_pieces(feats, cfg)
    want = np.stack([np.mean([p.mean(0) for p, o in zip(pieces, owner) if o == u], axis=0) for u in range(2)])
    np.testing.assert_allclose(out["logits"], want, rtol=1e-6)
    np.testing.assert_allclose(out["embedding"], 2 * want, rtol=1e-6)


def test_average_posteriors_is_the_log_of_the_mean_softmax():
    a = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    b = np.array([[0.0, 3.0, 0.0], [1000.0, 0.0, 0.0]])  # large logits must not overflow
    soft = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    out = average_posteriors([a, b])
    np.testing.assert_allclose(np.exp(out), (soft(a) + soft(b)) / 2, rtol=1e-12)
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0)
    np.testing.assert_allclose(average_posteriors([a]), np.log(soft(a)))
    assert out.argmax(1).tolist() == [1, 0]  # the confident member decides
    with pytest.raises(ValueError, match="at least one"):
        average_posteriors([])
    with pytest.raises(ValueError, match="one shape"):
        average_posteriors([a, a[:, :2]])


def test_split_holdout_is_stratified_disjoint_and_seeded():
    data = numbered([5] * 30, n_classes=2)
    train, val = split_holdout(data, 0.2, seed=3)
    assert sorted(train.ids + val.ids) == sorted(data.ids) and not set(train.ids) & set(val.ids)
    assert np.bincount(val.labels).tolist() == [3, 3]
    assert split_holdout(data, 0.2, seed=3)[1].ids == val.ids
    assert split_holdout(data, 0.0)[1] is None


def test_feature_set_validates():
    with pytest.raises(FeatureError):
        FeatureSet([np.zeros((3, 2))], [0, 1], ("a", "b"))
    with pytest.raises(FeatureError):
        FeatureSet([np.zeros((3, 2)), np.zeros((3, 4))], [0, 1], ("a", "b"))
    with pytest.raises(FeatureError):
        FeatureSet([np.zeros((3, 2))], [2], ("a", "b"))
    fs = FeatureSet([np.zeros((3, 2))], [1], ("a", "b"), FeatureConfig())
    assert fs.n_classes == 2 and fs.n_mels == 2 and fs.features[0].dtype == np.float32
