"""The wave store (spkid.data.waves, spkid.data.waves_build): round trips, slices, shards, crash-safe
resumption, checksums, --shard builds merged, bad audio skipped, and reads that stay off the heap."""
from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from spkid.audio.io import load_audio
from spkid.data.layouts.registry import load_dataset
from spkid.data.synthetic import make_corpus
from spkid.data.waves import WaveStore, verify_wave_store
from spkid.data.store_merge import merge_wave_stores
from spkid.data.waves_build import build_wave_store
from spkid.errors import CacheError
from tests.store_support import kill_after_first_shard

SHARD = 100_000  # ~6 s of audio: a dozen 1.5-3 s utterances make 4-5 shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("waves")
    make_corpus(base / "corpus", n_speakers=3, utterances_per_speaker=4, sr=16000)
    manifest = load_dataset(base / "corpus", "folders", val=0.1, test=0.2)
    build_wave_store(manifest, base / "full", shard_samples=SHARD)
    return base, manifest


def _content(store: WaveStore) -> dict:
    return {r: (store.splits[i], store.speakers[store.labels[i]], store.read(i).tobytes())
            for i, r in enumerate(store.ids)}


def test_round_trip_int16_and_float32(corpus, tmp_path):
    base, manifest = corpus
    store = WaveStore(base / "full")
    f32_report = build_wave_store(manifest, tmp_path / "f32", dtype="float32", shard_samples=SHARD)
    f32 = WaveStore(tmp_path / "f32")
    assert f32_report.decoded == len(manifest) == len(store) == len(f32) and not f32_report.failed
    assert store.ids == tuple(u.path for u in manifest) and store.sr == 16000
    assert store.speakers == tuple(manifest.speakers) and store.splits == tuple(u.split for u in manifest)
    assert store.labels.dtype == np.int64 and store.lengths.dtype == np.int64
    for i, u in enumerate(manifest):
        y = load_audio(manifest.path_of(u), sr=16000, min_duration=0.0)
        got = store.read(i)
        assert got.dtype == np.float32 and got.shape == y.shape == (store.lengths[i],)
        assert np.abs(got - y).max() <= 1 / 32767
        np.testing.assert_array_equal(f32.read(i), y)
        assert store.speakers[store.labels[i]] == u.speaker
        np.testing.assert_array_equal(store.read_checked(i), got)
    for split in ("train", "val", "test"):
        assert [store.ids[i] for i in store.indices(split)] == [u.path for u in manifest.split(split)]


def test_random_slices_and_several_shards(corpus):
    store = WaveStore(corpus[0] / "full")
    assert len(store.shard_files) >= 3 and store.verify() == len(store.shard_files)
    for k in range(len(store.shard_files)):  # read-only views of a memory map, not copies
        m = store._map(k)
        assert isinstance(m.base, np.memmap) and not m.flags.owndata and not m.flags.writeable
    rng = np.random.default_rng(0)
    for _ in range(50):
        i = int(rng.integers(len(store)))
        n = int(store.lengths[i])
        start = int(rng.integers(n))
        length = int(rng.integers(0, n - start + 1))
        np.testing.assert_array_equal(store.read(i, start, length), store.read(i)[start:start + length])
    np.testing.assert_array_equal(store.read(0, 5), store.read(0)[5:])
    with pytest.raises(Exception, match="past the end"):
        store.read(0, 1, int(store.lengths[0]))


def _stats(root: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(root.glob("shard-*.npy"))}


def test_resume_after_a_simulated_crash(corpus, tmp_path):
    base, manifest = corpus
    root = tmp_path / "s"
    build_wave_store(manifest, root, shard_samples=SHARD)
    want = _content(WaveStore(root))
    n_shards = len(_stats(root))
    # the crash: the last shard was being written (partial temp file, no journal) and no index yet
    (root / "waves.json").unlink()
    (root / "index.npz").write_bytes(b"PK\x03\x04 partial")
    last = root / f"shard-{n_shards - 1:05d}.npy"
    (root / f".{last.name}.abc123.tmp").write_bytes(last.read_bytes()[:1000])
    last.unlink()
    (root / ".build" / f"shard-{n_shards - 1:05d}.json").unlink()
    before = _stats(root)
    time.sleep(0.01)
    report = build_wave_store(manifest, root, shard_samples=SHARD)
    assert report.shards_kept == n_shards - 1 and report.shards_written == 1
    assert report.reused + report.decoded == len(manifest) and report.reused > 0
    after = _stats(root)
    assert all(after[name] == st for name, st in before.items())  # completed shards were not rewritten
    assert not list(root.glob(".*.tmp"))
    assert _content(verify_wave_store(root)) == want


_KILLED_BUILD = """
import sys, time
import spkid.data.waves_build as wb
from spkid.data.layouts.registry import load_dataset
real = wb.load_audio
def slow(*a, **k):
    time.sleep(0.15)
    return real(*a, **k)
wb.load_audio = slow
m = load_dataset(sys.argv[1], "folders", val=0.1, test=0.2)
wb.build_wave_store(m, sys.argv[2], shard_samples=int(sys.argv[3]))
"""


def test_resume_after_kill_9(corpus, tmp_path):
    base, manifest = corpus
    root = tmp_path / "killed"
    journal = kill_after_first_shard(_KILLED_BUILD, [base / "corpus", root, SHARD], root, wait_s=30)
    assert journal.exists() and not (root / "waves.json").exists()
    before = _stats(root)
    report = build_wave_store(manifest, root, shard_samples=SHARD)
    assert report.shards_kept >= 1 and report.reused >= 1 and report.usable == len(manifest)
    after = _stats(root)
    assert all(after[name] == st for name, st in before.items())
    assert _content(verify_wave_store(root)) == _content(WaveStore(base / "full"))


def test_tampered_shard_is_named(corpus, tmp_path):
    base, manifest = corpus
    root = tmp_path / "t"
    build_wave_store(manifest, root, shard_samples=SHARD)
    shard = root / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    store = WaveStore(root)  # opening checks header and index only
    with pytest.raises(CacheError, match="checksum") as exc:
        store.verify()
    assert exc.value.path == str(shard)
    victims = [i for i in range(len(store)) if store.shard_files[store._shard[i]] == shard.name]
    with pytest.raises(CacheError) as exc:
        for i in victims:
            store.read_checked(i)
    assert exc.value.path == str(shard)
    # a rebuild notices the damaged shard, keeps those before it and redoes the rest
    report = build_wave_store(manifest, root, shard_samples=SHARD)
    assert report.shards_kept == 1
    verify_wave_store(root)


def _corrupt(src: Path, dst: Path, name: str, change) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / name
    path.write_bytes(change(path.read_bytes()))
    return path


@pytest.mark.parametrize("name, change, message", [
    ("waves.json", lambda b: b[:-40], "corrupt or truncated"),
    ("waves.json", lambda b: b.replace(b'"format_version": 1', b'"format_version": 9'), "version 9"),
    ("waves.json", lambda b: b.replace(b'"sr": 16000', b'"sr": -1'), "bad sr"),
    ("index.npz", lambda b: b[:len(b) // 2], "checksum"),
    ("shard-00002.npy", lambda b: b[:200], "truncated shard"),
])
def test_corrupt_header_or_index_names_the_file(corpus, tmp_path, name, change, message):
    path = _corrupt(corpus[0] / "full", tmp_path / "c", name, change)
    with pytest.raises(CacheError, match=message) as exc:
        WaveStore(tmp_path / "c")
    assert exc.value.path == str(path)


def test_missing_store_and_inconsistent_offsets(corpus, tmp_path):
    with pytest.raises(CacheError, match="not a wave store"):
        WaveStore(tmp_path)
    import hashlib
    import shutil

    root = tmp_path / "o"
    shutil.copytree(corpus[0] / "full", root)
    with np.load(root / "index.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["offset"][1] += 7
    with open(root / "index.npz", "wb") as fh:
        np.savez(fh, **arrays)
    header = json.loads((root / "waves.json").read_text())
    header["index"]["sha256"] = hashlib.sha256((root / "index.npz").read_bytes()).hexdigest()
    (root / "waves.json").write_text(json.dumps(header))
    with pytest.raises(CacheError, match="inconsistent offsets") as exc:
        WaveStore(root)
    assert exc.value.path == str(root / "index.npz")


def test_shard_builds_merge_to_the_full_build(corpus, tmp_path):
    base, manifest = corpus
    reports = [build_wave_store(manifest, tmp_path / f"part{i}", shard_samples=SHARD, shard=(i, 2)) for i in (0, 1)]
    assert sum(r.decoded for r in reports) == len(manifest) and all(r.decoded for r in reports)
    assert WaveStore(tmp_path / "part1").built_shard == (1, 2)
    merged = merge_wave_stores(tmp_path / "merged", [tmp_path / "part0", tmp_path / "part1"])
    merged.verify()
    full = WaveStore(base / "full")
    assert merged.speakers == full.speakers and sorted(merged.ids) == sorted(full.ids)
    assert _content(merged) == _content(full)
    with pytest.raises(CacheError, match="already holds"):
        merge_wave_stores(tmp_path / "merged", [tmp_path / "part0"])
    with pytest.raises(CacheError, match="two sources"):
        merge_wave_stores(tmp_path / "dup", [tmp_path / "part0", tmp_path / "part0"])
    build_wave_store(manifest, tmp_path / "sr8k", sr=8000, shard_samples=SHARD, shard=(1, 2))
    with pytest.raises(CacheError, match="8000 Hz") as exc:
        merge_wave_stores(tmp_path / "bad", [tmp_path / "part0", tmp_path / "sr8k"])
    assert exc.value.path == str(tmp_path / "sr8k")


def test_unreadable_audio_is_skipped_and_reported(tmp_path):
    make_corpus(tmp_path / "corpus", n_speakers=2, utterances_per_speaker=3, sr=16000, duration=(0.5, 0.8))
    bad = tmp_path / "corpus" / "spk00" / "spk00_zzz.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    manifest = load_dataset(tmp_path / "corpus", "folders", val=0.0, test=0.0)
    assert "spk00/spk00_zzz.wav" in [u.path for u in manifest]
    report = build_wave_store(manifest, tmp_path / "s", shard_samples=SHARD)
    assert [r for r, _ in report.failed] == ["spk00/spk00_zzz.wav"] and report.decoded == len(manifest) - 1
    store = verify_wave_store(tmp_path / "s")
    assert "spk00/spk00_zzz.wav" not in store.ids and len(store) == len(manifest) - 1


def test_reading_everything_stays_off_the_heap(tmp_path):
    make_corpus(tmp_path / "corpus", n_speakers=3, utterances_per_speaker=4, sr=16000, duration=(3.0, 4.0))
    manifest = load_dataset(tmp_path / "corpus", "folders", val=0.0, test=0.0)
    build_wave_store(manifest, tmp_path / "s", dtype="float32", shard_samples=400_000)
    store = WaveStore(tmp_path / "s")
    size = store.n_samples * 4
    assert size > 2_000_000
    for k in range(len(store.shard_files)):
        store._map(k)  # map every shard first: mapping is not what is measured
    tracemalloc.start()
    try:
        total = 0.0
        for i in range(len(store)):
            total += float(store.read(i)[::1000].sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 4, (peak, size)


def test_an_index_written_with_str_digests_still_opens(corpus, tmp_path):
    """Stores written before the digests became 64-byte ASCII held them as numpy str: still read alike."""
    import hashlib
    import shutil

    base, _ = corpus
    root = tmp_path / "old"
    shutil.copytree(base / "full", root)
    with np.load(root / "index.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["sha256"] = arrays["sha256"].astype(str)
    with open(root / "index.npz", "wb") as fh:
        np.savez(fh, **arrays)
    header = json.loads((root / "waves.json").read_text())
    header["index"]["sha256"] = hashlib.sha256((root / "index.npz").read_bytes()).hexdigest()
    (root / "waves.json").write_text(json.dumps(header))
    old, new = WaveStore(root), WaveStore(base / "full")
    assert old.ids == new.ids and all(np.array_equal(old.read_checked(i), new.read(i)) for i in range(len(new)))
