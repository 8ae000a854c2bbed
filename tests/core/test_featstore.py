"""The feature store (spkid.data.featstore): frames equal to the features, the old per-utterance cache
converted with one command, batches equal to the old cache's for a seed, crash-safe resumption after
kill -9, a tampered shard named, --shard parts merged. (Memory per process: tests/core/test_streaming.py.)"""
from __future__ import annotations


import numpy as np
import pytest

from spkid.app.cli import main
from spkid.data.cache import build_cache
from spkid.data.featstore import FeatureStore, StoredFeatures, build_feature_store, merge_feature_stores
from spkid.data.featuresets import load_feature_set, split_holdout
from spkid.data.layouts.registry import load_dataset
from spkid.data.sampler import EpochSteps, TrainSampler, eval_pieces
from spkid.data.synthetic import make_corpus
from spkid.errors import CacheError
from spkid.features.api import extract_features
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from tests.store_support import kill_after_first_shard

CONFIG = FeatureConfig(sr=8000, n_fft=256, n_mels=24)
ROWS = 400  # frames a shard: the corpus makes several shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("featstore")
    make_corpus(base / "corpus", n_speakers=3, utterances_per_speaker=5, sr=8000)
    manifest = load_dataset(base / "corpus", "folders", val=0.2, test=0.2)
    build_feature_store(manifest, base / "store", CONFIG, shard_rows=ROWS)
    build_cache(manifest, base / "old", CONFIG, progress=False)
    return base, manifest


def test_frames_are_the_features_and_views_copy_nothing(corpus):
    base, manifest = corpus
    store = FeatureStore(base / "store")
    assert len(store) == len(manifest) and len(store.shard_files) >= 3 and store.verify() == len(store.shard_files)
    assert store.feature_config == CONFIG and store.n_mels == 24 and store.ids == tuple(u.path for u in manifest)
    for i, u in enumerate(manifest):
        want = extract_features(manifest.path_of(u), CONFIG)
        np.testing.assert_array_equal(store.read(i), want)
        view = store.view(i)
        assert not view.flags.writeable and not view.flags.owndata and view.shape == want.shape
        np.testing.assert_array_equal(store.read(i, 3, 5), want[3:8])


def test_stored_features_pickle_without_the_maps(corpus):
    """A spawned loader worker gets the index, not the parent's memory maps: it maps the shards itself."""
    import pickle

    base, _ = corpus
    seq = StoredFeatures(FeatureStore(base / "store"), [4, 0, 2])
    before = [np.array(x) for x in seq]  # maps the shards in this process
    assert seq.store._maps
    copy = pickle.loads(pickle.dumps(seq))
    assert copy.store._maps == {} and np.array_equal(copy.index, seq.index)
    assert all(np.array_equal(x, y) for x, y in zip(copy, before))


def test_old_cache_converts_with_one_command_and_loads_alike(corpus, tmp_path):
    base, manifest = corpus
    assert main(["prepare", str(base / "old"), "--cache", str(tmp_path / "new"), "--no-progress"]) == 0
    new, built = FeatureStore(tmp_path / "new"), FeatureStore(base / "store")
    assert new.ids == built.ids and new.feature_config == built.feature_config
    for i in range(len(new)):
        np.testing.assert_array_equal(new.read(i), built.read(i))
    with pytest.raises(CacheError, match="older format"):
        build_feature_store(manifest, base / "old", CONFIG)
    for split in ("train", "val", "test"):
        a = load_feature_set(split, cache=base / "old", progress=False)
        b = load_feature_set(split, cache=tmp_path / "new", progress=False)
        assert isinstance(b.features, StoredFeatures) and not isinstance(a.features, StoredFeatures)
        assert a.ids == b.ids and a.speakers == b.speakers and np.array_equal(a.labels, b.labels)
        assert all(np.array_equal(x, y) for x, y in zip(a.features, b.features))


@pytest.mark.parametrize("seed", [0, 3])
def test_batches_from_the_store_equal_batches_from_the_old_cache(corpus, seed):
    base, _ = corpus
    config = TrainConfig(batch_size=4, crop_frames=30, crops_per_utterance=3, seed=seed, augment_prob=1.0,
                         time_masks=1, freq_masks=1, gain_db=(-3.0, 3.0))
    old = load_feature_set("train", cache=base / "old", progress=False)
    new = load_feature_set("train", cache=base / "store", progress=False)
    a, b = TrainSampler(old, config), TrainSampler(new, config)
    assert len(a) == len(b) > 2
    for epoch in (0, 1):
        for (xa, ya), (xb, yb) in zip(a.epoch(epoch), b.epoch(epoch)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # holding validation out, and evaluation pieces, stream the same numbers too
    (ta, va), (tb, vb) = split_holdout(old, 0.3, seed), split_holdout(new, 0.3, seed)
    assert isinstance(vb.features, StoredFeatures) and va.ids == vb.ids and ta.ids == tb.ids
    pa, pb = eval_pieces(va.features, config)[0], eval_pieces(vb.features, config)[0]
    assert len(pa) == len(pb) and all(np.array_equal(x, y) for x, y in zip(pa, pb))


def test_epoch_steps_are_the_stream_of_batches_cut_anywhere(corpus):
    base, _ = corpus
    sampler = TrainSampler(load_feature_set("train", cache=base / "store", progress=False),
                           TrainConfig(batch_size=3, crop_frames=20, crops_per_utterance=2))
    n = len(sampler)
    stream = [b for e in range(3) for b in sampler.epoch(e)]
    for start, stop in [(0, n), (2, n + 3), (n - 1, 3 * n), (5, 5)]:
        plan = EpochSteps(sampler, start, stop)
        got = list(plan.epoch())
        assert len(got) == len(plan) == stop - start
        for (x, y), (wx, wy) in zip(got, stream[start:stop]):
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)


_KILLED = """
import sys, time
import spkid.data.featstore as fs
from spkid.data.layouts.registry import load_dataset
from spkid.features.config import FeatureConfig
import spkid.features.api as api
orig = api.extract_features
def slow(*a, **k):
    time.sleep(0.1)
    return orig(*a, **k)
api.extract_features = slow
m = load_dataset(sys.argv[1], "folders", val=0.2, test=0.2)
fs.build_feature_store(m, sys.argv[2], FeatureConfig(sr=8000, n_fft=256, n_mels=24), shard_rows=int(sys.argv[3]))
"""


def test_a_build_killed_midway_resumes_and_verifies(corpus, tmp_path):
    base, manifest = corpus
    root = tmp_path / "killed"
    journal = kill_after_first_shard(_KILLED, [base / "corpus", root, ROWS], root)
    assert journal.exists() and not (root / "features.json").exists()
    with pytest.raises(CacheError, match="not a feature store"):
        FeatureStore(root)
    report = build_feature_store(manifest, root, CONFIG, shard_rows=ROWS)
    assert report.shards_kept >= 1 and report.reused >= 1 and report.usable == len(manifest)
    store, full = FeatureStore(root), FeatureStore(base / "store")
    assert store.verify() == len(store.shard_files) and store.ids == full.ids
    assert all(np.array_equal(store.read(i), full.read(i)) for i in range(len(full)))


def test_a_tampered_shard_is_refused_naming_it(corpus, tmp_path, capsys):
    import shutil

    base, _ = corpus
    root = tmp_path / "t"
    shutil.copytree(base / "store", root)
    shard = root / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum") as exc:
        FeatureStore(root).verify()
    assert exc.value.path == str(shard)
    # spkid train re-hashes the shards before it starts, and stops with the file named
    code = main(["train", "--cache", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and str(shard) in err and "checksum" in err and not (tmp_path / "run" / "checkpoints").exists()


def test_shard_parts_merge_into_the_whole(corpus, tmp_path):
    base, manifest = corpus
    for i in range(2):
        build_feature_store(manifest, tmp_path / f"part{i}", CONFIG, shard=(i, 2), shard_rows=ROWS)
    assert main(["prepare", "--merge", str(tmp_path / "part0"), str(tmp_path / "part1"),
                 "--cache", str(tmp_path / "merged")]) == 0
    merged, full = FeatureStore(tmp_path / "merged"), FeatureStore(base / "store")
    assert sorted(merged.ids) == sorted(full.ids) and merged.verify() == len(merged.shard_files)
    for i, r in enumerate(full.ids):
        np.testing.assert_array_equal(merged.read(merged.index_of(r)), full.read(i))
    build_feature_store(manifest, tmp_path / "other", CONFIG.replace(n_mels=16), shard=(0, 2))
    with pytest.raises(CacheError, match="cannot merge"):
        merge_feature_stores(tmp_path / "bad", [tmp_path / "part1", tmp_path / "other"])


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_loader_workers_stream_the_same_batches_from_a_store(corpus, backend):
    """Crops read in forked loader workers from the store's maps equal those of the old cache in-process,
    for a plain epoch and for training epochs that cut across passes (EpochSteps)."""
    pytest.importorskip(backend)
    base, _ = corpus
    cfg = TrainConfig(batch_size=4, crop_frames=30, crops_per_utterance=2, augment_prob=1.0, time_masks=1)
    store = TrainSampler(load_feature_set("train", cache=base / "store", progress=False), cfg)
    old = TrainSampler(load_feature_set("train", cache=base / "old", progress=False), cfg)
    n = len(old)
    for plan, want in [(store, list(old.epoch(1))),
                       (EpochSteps(store, n - 2, n + 3), list(EpochSteps(old, n - 2, n + 3).epoch()))]:
        for workers in (0, 2):
            if backend == "torch":
                from spkid_torch.data import train_loader

                got = [(x.numpy(), y.numpy()) for x, y in train_loader(plan, 1, num_workers=workers)]
            else:
                from spkid_keras.data import EpochBatches, iterate

                got = list(iterate(EpochBatches(plan, 1), num_workers=workers))
            assert len(got) == len(want) > 0
            for (x, y), (wx, wy) in zip(got, want):
                np.testing.assert_array_equal(x, wx)
                np.testing.assert_array_equal(y, wy)


def test_a_store_grows_by_appending(corpus, tmp_path):
    """Utterances added at the end of the manifest are appended: the shards already built are kept as they are."""
    from spkid.data.manifest import Manifest

    base, manifest = corpus
    head = Manifest(manifest.root, manifest.utterances[:9])
    build_feature_store(head, tmp_path / "s", CONFIG, shard_rows=ROWS)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("shard-*.npy")}
    report = build_feature_store(manifest, tmp_path / "s", CONFIG, shard_rows=ROWS)
    assert report.reused == 9 and report.decoded == len(manifest) - 9 and report.shards_kept == len(before)
    assert all((tmp_path / "s" / k).stat().st_mtime_ns == v for k, v in before.items())
    store, full = FeatureStore(tmp_path / "s"), FeatureStore(base / "store")
    assert store.ids == full.ids and all(np.array_equal(store.read(i), full.read(i)) for i in range(len(full)))
