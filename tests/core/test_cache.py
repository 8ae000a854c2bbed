"""spkid.data.cache on real FSDD speech: parallel build, resume, rebuild of corrupt entries, config checks,
sharding, concurrent builders, and the ``spkid prepare`` command."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from spkid.data.featstore import FeatureStore
from spkid.data.cache import FeatureCache, build_cache, entry_path, in_shard, merge_caches, verify_cache
from spkid.features.config import FeatureConfig
from spkid.errors import CacheError
from spkid.features.api import extract_features
from spkid.data.labels import LabelMap
from spkid.data.manifest import Manifest, write_manifest
from spkid.data.layouts.registry import load_dataset

CONFIG = FeatureConfig(sr=8000, n_fft=256)


@pytest.fixture(scope="module")
def manifest20(fsdd_dir) -> Manifest:
    """20 real FSDD files: 4 speakers x 5 takes (indices 3-7: test and train)."""
    full = load_dataset(fsdd_dir)
    keep = {f"2_{s}_{i}.wav" for s in ("george", "jackson", "lucas", "theo") for i in range(3, 8)}
    return Manifest(full.root, tuple(u for u in full if u.path in keep))


def test_build_parallel_load_and_resume(manifest20, tmp_path):
    report = build_cache(manifest20, tmp_path, CONFIG, workers=2, progress=False)
    assert (report.built, report.skipped, report.failed) == (20, 0, [])
    cache = FeatureCache(tmp_path, CONFIG)
    assert len(cache) == 20 and cache.labels == LabelMap.from_manifest(manifest20)
    assert cache.manifest == manifest20
    u = manifest20.utterances[7]
    feats = cache.load(u)
    assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[1] == CONFIG.n_mels
    np.testing.assert_array_equal(feats, extract_features(manifest20.path_of(u), CONFIG))
    np.testing.assert_array_equal(cache.load(u.path), feats)
    entry = cache.load_entry(u)
    assert entry["source"] == u.path and entry["sr"] == 8000 and entry["n_samples"] > 0
    assert sum(1 for _ in cache) == 20 and len(cache.utterances("test")) == 8
    again = build_cache(manifest20, tmp_path, CONFIG, workers=2, progress=False)
    assert (again.built, again.skipped, again.failed) == (0, 20, [])


def test_corrupt_entries_are_reported_and_rebuilt(manifest20, tmp_path):
    build_cache(manifest20, tmp_path, CONFIG, progress=False)
    rels = [u.path for u in manifest20.utterances[:4]]
    paths = [entry_path(tmp_path, r) for r in rels]
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])  # truncated
    flipped = bytearray(paths[1].read_bytes())
    flipped[-10] ^= 0xFF
    paths[1].write_bytes(bytes(flipped))  # bit flip in the payload
    paths[2].write_bytes(b"garbage")
    paths[3].unlink()
    stale, fresh = (tmp_path / "entries" / f".{n}.tmp" for n in ("stale", "fresh"))  # from interrupted writes
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    report = verify_cache(tmp_path)
    assert sorted(report.stray_tmp) == sorted(map(str, (fresh, stale)))
    assert report.missing == [rels[3]] and sorted(r for r, _ in report.corrupt) == sorted(rels[:3])
    assert report.valid == 16 and not report.complete
    with pytest.raises(CacheError, match="checksum"):
        FeatureCache(tmp_path).load(rels[1])
    rebuilt = build_cache(manifest20, tmp_path, CONFIG, progress=False)
    assert (rebuilt.built, rebuilt.skipped) == (4, 16)
    assert verify_cache(tmp_path).complete
    assert fresh.exists() and not stale.exists()  # a fresh one may belong to a concurrent builder


def test_other_feature_config_is_refused_showing_both(manifest20, tmp_path):
    small = Manifest(manifest20.root, manifest20.utterances[:2])
    build_cache(small, tmp_path, CONFIG, progress=False)
    other = CONFIG.replace(n_mels=30)
    for attempt in (lambda: build_cache(small, tmp_path, other, progress=False), lambda: FeatureCache(tmp_path, other)):
        with pytest.raises(CacheError) as err:
            attempt()
        assert CONFIG.describe() in str(err.value) and other.describe() in str(err.value)
    assert FeatureCache(tmp_path).config == CONFIG


def test_shards_cover_every_entry_exactly_once(manifest20, tmp_path):
    n = 3
    owners = {u.path: [i for i in range(n) if in_shard(u.path, (i, n))] for u in manifest20}
    assert all(len(v) == 1 for v in owners.values())
    assert len({v[0] for v in owners.values()}) > 1  # the split is not degenerate
    reports = [build_cache(manifest20, tmp_path / "shared", CONFIG, shard=(i, n), progress=False) for i in range(n)]
    assert [r.built for r in reports] == [sum(v == [i] for v in owners.values()) for i in range(n)]
    assert sum(r.built for r in reports) == 20 and verify_cache(tmp_path / "shared").complete
    # shards built into separate folders (e.g. on several machines), then merged
    for i in range(n):
        build_cache(manifest20, tmp_path / f"s{i}", CONFIG, shard=(i, n), progress=False)
    assert not verify_cache(tmp_path / "s0", manifest20).complete
    merged = merge_caches(tmp_path / "merged", [tmp_path / f"s{i}" for i in range(n)], manifest20)
    assert merged.complete and merged.valid == 20


def test_two_concurrent_builders_share_one_cache(manifest20, tmp_path):
    write_manifest(tmp_path / "m.txt", manifest20)
    code = (  # both processes import, say they are ready, then start together when "go" appears
        "import json, os, sys, time\n"
        "from spkid.data.cache import build_cache\nfrom spkid.features.config import FeatureConfig\n"
        "from spkid.data.manifest import read_manifest\n"
        "m = read_manifest(sys.argv[1])\nopen(sys.argv[3] + str(os.getpid()), 'w').close()\n"
        "while not os.path.exists(sys.argv[4]): time.sleep(0.001)\n"
        f"r = build_cache(m, sys.argv[2], FeatureConfig(**{CONFIG.to_dict()!r}), progress=False)\n"
        "print(json.dumps([r.built, r.skipped, len(r.failed)]))\n"
    )
    ready, go = tmp_path / "ready", tmp_path / "go"
    ready.mkdir()
    cmd = [sys.executable, "-c", code, str(tmp_path / "m.txt"), str(tmp_path / "cache"), f"{ready}/", str(go)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    counts = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert all(c[0] + c[1] == 20 and c[2] == 0 for c in counts)
    report = verify_cache(tmp_path / "cache", manifest20)
    assert report.complete and report.valid == 20
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["feature_config"] == CONFIG.to_dict()


def _prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spkid", "prepare", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=120)


def test_prepare_command_writes_manifest_and_feature_store(fsdd_dir, tmp_path):
    data = tmp_path / "fsdd"
    data.mkdir()
    for i in range(3, 7):
        for speaker in ("george", "theo"):
            shutil.copy(fsdd_dir / f"5_{speaker}_{i}.wav", data)
    args = [str(data), "--cache", str(tmp_path / "cache"), "--manifest", str(tmp_path / "m.txt"), "--sr", "8000",
            "--n-fft", "256", "--n-mels", "32", "--workers", "2"]
    first = _prepare(*args)
    assert first.returncode == 0, first.stderr
    assert "8 utterances from 2 speakers (train 4, val 0, test 4)" in first.stdout
    assert "decoded 8, reused 0" in first.stdout and (tmp_path / "m.txt").exists()
    store = FeatureStore(tmp_path / "cache")
    assert store.feature_config == CONFIG.replace(n_mels=32)
    assert len(store) == 8 and store.read(0).shape[1] == 32 and store.verify() == 1
    second = _prepare(*args)
    assert second.returncode == 0 and "read manifest" in second.stdout and "decoded 0, reused 8" in second.stdout
    mismatch = _prepare(*[a if a != "32" else "24" for a in args])
    assert mismatch.returncode == 2 and "n_mels=32" in mismatch.stderr and "n_mels=24" in mismatch.stderr
