"""Feature caches under attack and accident: crafted pickles, truncation, random bytes, bad audio,
kill -9 in the middle of a build."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from spkid.data.entries import FORMAT_VERSION, MAGIC, dump_entry, load_entry, restricted_loads
from spkid.data.cache import FeatureCache, build_cache, entry_path, merge_caches, verify_cache
from spkid.features.config import FeatureConfig
from spkid.errors import CacheError
from spkid.data.manifest import Manifest, Utterance, write_manifest
from spkid.data.layouts.registry import load_dataset

CONFIG = FeatureConfig(sr=8000, n_fft=256)


def _entry(features) -> dict:
    return {"format_version": FORMAT_VERSION, "feature_config": CONFIG.to_dict(), "source": "a.wav",
            "n_samples": 100, "sr": 8000, "features": features}


class _Shell:
    """Pickles to a call of ``func(*args)``: what an attacker would put in a cache file."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "subprocess.call", "eval"])
def test_crafted_entry_with_valid_checksum_runs_no_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    payloads = {
        "os.system": _Shell(os.system, f"touch {marker}"),
        "subprocess.call": _Shell(subprocess.call, ["touch", str(marker)]),
        "eval": _Shell(eval, f"open({str(marker)!r}, 'w').close()"),
    }
    path = tmp_path / "evil.pkl"
    dump_entry(path, _entry(payloads[kind]))  # a correct header and sha256: only the unpickler stands guard
    with pytest.raises(CacheError, match="refusing to load global") as err:
        load_entry(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # the same payload is live: an unrestricted pickle.loads would have run it
    pickle.loads(path.read_bytes()[len(MAGIC) + 2 + 8 + 32:])
    assert marker.exists()


def test_truncated_and_foreign_entries(tmp_path):
    path = tmp_path / "e.pkl"
    dump_entry(path, _entry(np.ones((3, 40), np.float32)))
    good = path.read_bytes()
    assert load_entry(path)["features"].shape == (3, 40)
    cases = {
        b"": "truncated",
        good[:20]: "truncated",
        good[:-1]: "truncated",
        good + b"x": "truncated",
        b"NOTSPKID" + good[8:]: "magic",
        good[:8] + (FORMAT_VERSION + 1).to_bytes(2, "big") + good[10:]: "version",
    }
    for data, words in cases.items():
        path.write_bytes(data)
        with pytest.raises(CacheError, match=words):
            load_entry(path)
    with pytest.raises(CacheError, match="not found"):
        load_entry(tmp_path / "absent.pkl")


@pytest.mark.parametrize("payload", [[1, 2], {"features": np.ones(3, np.float32)}, _entry(np.ones((3, 40))),
                                     _entry(np.ones(40, np.float32)), _entry("text")])
def test_well_formed_but_wrong_content(tmp_path, payload):
    dump_entry(tmp_path / "e.pkl", payload)
    with pytest.raises(CacheError):
        load_entry(tmp_path / "e.pkl")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256), cut=st.integers(0, 400), flip=st.integers(0, 400))
def test_random_and_mutated_bytes_raise_only_cache_error(tmp_path_factory, data, cut, flip):
    valid = pickle.dumps(_entry(np.arange(6, dtype=np.float32).reshape(2, 3)), protocol=4)
    mutated = bytearray(valid[:cut] + data + valid[cut:])
    if mutated:
        mutated[flip % len(mutated)] ^= 0x5A
    for blob in (data, bytes(mutated)):
        try:
            restricted_loads(blob)
        except CacheError:
            pass
    path = tmp_path_factory.mktemp("fuzz") / "e.pkl"
    for blob in (data, MAGIC + data):
        path.write_bytes(blob)
        with pytest.raises(CacheError):
            load_entry(path)
    # even with a correct header, junk payloads only ever give CacheError
    header = MAGIC + FORMAT_VERSION.to_bytes(2, "big") + len(mutated).to_bytes(8, "big")
    path.write_bytes(header + hashlib.sha256(bytes(mutated)).digest() + bytes(mutated))
    try:
        load_entry(path)
    except CacheError:
        pass


MEMORY_BOMBS = {  # a few bytes each, asking an unguarded unpickler for gigabytes
    "memo index 2**31": b"\x80\x04K\x01r\xff\xff\xff\x7f.",
    "_reconstruct of 1e9 items": b"\x80\x04cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xca\x9a;\x85C\x01b\x87R.",
    "ndarray.__new__ of 1e9 objects": b"\x80\x04cnumpy\nndarray\nJ\x00\xca\x9a;\x85\x8c\x01O\x86\x81.",
    "bytearray(1e10)": b"\x80\x04cbuiltins\nbytearray\n\x8a\x05\x00\xe4\x0bT\x02\x85R.",
    "object dtype": b"\x80\x04cnumpy\ndtype\n\x8c\x02O8\x85R.",
}


def test_memory_bombs_fail_fast_within_a_small_address_space():
    """Under a 1.5 GB address-space limit each bomb is refused (or harmless) without a MemoryError."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))\n"
        "from spkid.data.entries import restricted_loads\nfrom spkid.errors import CacheError\n"
        "for blob in map(bytes.fromhex, sys.argv[1:]):\n"
        "    try:\n        print('loaded', restricted_loads(blob))\n"
        "    except CacheError as exc:\n        print('refused', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *(b.hex() for b in MEMORY_BOMBS.values())],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(MEMORY_BOMBS) and not any("MemoryError" in ln for ln in lines), lines
    assert sum(ln.startswith("refused") for ln in lines) == len(MEMORY_BOMBS) - 1  # the memo one loads: 1


def test_bad_audio_is_reported_and_skipped(fsdd_dir, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    good = ["0_george_7.wav", "0_theo_7.wav", "1_lucas_7.wav"]
    for name in good:
        shutil.copy(fsdd_dir / name, root)
    (root / "empty.wav").write_bytes(b"")
    (root / "junk.wav").write_bytes(b"RIFF not really a wave file" * 10)
    utts = [Utterance(n, n.split("_")[1]) for n in good] + [
        Utterance(n, "x") for n in ("empty.wav", "junk.wav", "missing.wav")
    ]
    report = build_cache(Manifest(root, tuple(utts)), tmp_path / "cache", CONFIG, workers=2, progress=False)
    assert report.built == 3 and report.skipped == 0
    assert sorted(r for r, _ in report.failed) == ["empty.wav", "junk.wav", "missing.wav"]
    assert all(msg for _, msg in report.failed)
    cache = FeatureCache(tmp_path / "cache")
    assert sorted(u.path for u in cache.utterances()) == sorted(good)
    assert sorted(verify_cache(tmp_path / "cache").missing) == ["empty.wav", "junk.wav", "missing.wav"]


def test_not_a_cache(tmp_path):
    with pytest.raises(CacheError, match="no cache.json"):
        FeatureCache(tmp_path)
    (tmp_path / "cache.json").write_text("{broken")
    with pytest.raises(CacheError, match="cannot read cache header"):
        FeatureCache(tmp_path)
    (tmp_path / "cache.json").write_text('{"format": "spkid-feature-cache", "format_version": 1, "feature_config": {"n_mel": 3}}')
    with pytest.raises(CacheError, match="n_mel"):
        FeatureCache(tmp_path)


HEADER_OK = {"format": "spkid-feature-cache", "format_version": 1}
BAD_FEATURE_CONFIGS = [  # (feature_config in cache.json, words the CacheError must contain)
    ("16k", ["feature_config", "FeatureConfig", "mapping", "str"]),
    ([["sr", 8000]], ["feature_config", "FeatureConfig", "mapping", "list"]),
    (8000, ["feature_config", "FeatureConfig", "int"]),
    ({"sr": "8000"}, ["feature_config", "FeatureConfig.sr", "expected int"]),
    ({"sr": 8000.5}, ["FeatureConfig.sr"]),
    ({"n_mels": None}, ["FeatureConfig.n_mels"]),
    ({"frame_length": 10**400}, ["FeatureConfig.frame_length", "out of range"]),
    ({"sr": 10**400}, ["FeatureConfig"]),
    ({"frame_shift": 1e308}, ["FeatureConfig"]),
    ({"1": 2, "sr": 8000, "n_mel": 3}, ["unknown key", "'n_mel'"]),
    (None, ["no feature_config"]),
]


@pytest.mark.parametrize("config,words", BAD_FEATURE_CONFIGS, ids=[repr(c)[:30] for c, _ in BAD_FEATURE_CONFIGS])
def test_malformed_cache_header_is_a_cache_error_naming_the_file(tmp_path, config, words):
    """Whatever ``feature_config`` holds, every reader of the header says CacheError (never a raw
    ValueError/TypeError/OverflowError) with the path of cache.json."""
    header = dict(HEADER_OK, **({} if config is None else {"feature_config": config}))
    (tmp_path / "cache.json").write_text(json.dumps(header))
    manifest = Manifest(tmp_path, (Utterance("a/1.wav", "a"),))
    for read in (FeatureCache, lambda d: verify_cache(d, manifest),
                 lambda d: build_cache(manifest, d, CONFIG, progress=False),
                 lambda d: merge_caches(tmp_path / "merged", [d], manifest)):
        with pytest.raises(CacheError) as err:
            read(tmp_path)
        msg = str(err.value)
        assert str(tmp_path / "cache.json") in msg, msg
        assert all(w in msg for w in words), msg


def test_entry_whose_feature_config_is_not_plain_is_refused(tmp_path):
    """An entry (valid checksum) whose feature_config holds an array or odd keys is a CacheError when
    loaded, verified or rebuilt over: comparing it with the cache's config must never raise."""
    fsdd = tmp_path / "data"
    fsdd.mkdir()
    (fsdd / "a").mkdir()
    sf.write(fsdd / "a" / "1.wav", np.sin(np.arange(8000) / 3.0).astype(np.float32) * 0.3, 8000)
    manifest = Manifest(fsdd, (Utterance("a/1.wav", "a"),))
    cache_dir = tmp_path / "cache"
    assert build_cache(manifest, cache_dir, CONFIG, progress=False).built == 1
    path = entry_path(cache_dir, "a/1.wav")
    for bad in ({**CONFIG.to_dict(), "sr": np.array([8000, 8000])}, {1: 2}, {"sr": {"x": 1}}, [1, 2]):
        dump_entry(path, {**_entry(np.ones((3, 40), np.float32)), "source": "a/1.wav", "feature_config": bad})
        with pytest.raises(CacheError, match="malformed source or feature_config") as err:
            FeatureCache(cache_dir).load("a/1.wav")
        assert str(path) in str(err.value)
        report = verify_cache(cache_dir)
        assert report.valid == 0 and [p for p, _ in report.corrupt] == ["a/1.wav"]
    assert build_cache(manifest, cache_dir, CONFIG, progress=False).built == 1  # rebuilt over the bad one
    assert FeatureCache(cache_dir).load("a/1.wav").shape[1] == CONFIG.n_mels


def test_entry_built_with_an_unusable_config_says_so(tmp_path):
    """A plain but invalid feature_config in an entry is reported as another config, not a ConfigError."""
    (tmp_path / "cache.json").write_text(json.dumps(dict(HEADER_OK, feature_config=CONFIG.to_dict())))
    (tmp_path / "manifest.txt").write_text("train a a.wav\n")
    dump_entry(entry_path(tmp_path, "a.wav"), {**_entry(np.ones((3, 40), np.float32)),
                                               "feature_config": {"n_mel": 3}})
    with pytest.raises(CacheError, match="another feature config") as err:
        FeatureCache(tmp_path).load("a.wav")
    assert "unusable feature_config" in str(err.value) and "n_mel" in str(err.value)


def _prepare(*args: str, **kw):
    return subprocess.Popen([sys.executable, "-m", "spkid", "prepare", *args, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_prepare_exits_nonzero_only_when_nothing_usable(tmp_path):
    for i in range(3):
        (tmp_path / "data" / "spk").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "spk" / f"{i}.wav").write_bytes(b"")
    out, err = (p := _prepare(str(tmp_path / "data"), "--cache", str(tmp_path / "cache"))).communicate(timeout=120)
    assert p.returncode == 1, err
    assert "failed 3" in out and "nothing usable" in out and "spk/0.wav" in out


_LEGACY_BUILD = """
import sys
from spkid.data.cache import build_cache
from spkid.data.manifest import read_manifest
from spkid.features.config import FeatureConfig
r = build_cache(read_manifest(sys.argv[1]), sys.argv[2], FeatureConfig(), workers=2, progress=False)
print(r.summary())
"""


def _legacy_build(*args: str, **kw):
    return subprocess.Popen([sys.executable, "-c", _LEGACY_BUILD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_midway_leaves_only_valid_entries(fsdd_dir, tmp_path):
    """The older per-utterance cache (still built by build_cache, still read)."""
    full = load_dataset(fsdd_dir)
    manifest = Manifest(full.root, full.utterances[::15])  # 200 real files
    write_manifest(tmp_path / "m.txt", manifest)
    args = [str(tmp_path / "m.txt"), str(tmp_path / "cache")]
    proc = _legacy_build(*args, start_new_session=True)
    entries = tmp_path / "cache" / "entries"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if entries.is_dir() and sum(n.endswith(".pkl") for n in os.listdir(entries)) >= 10:
            break
        time.sleep(0.001)
    assert proc.poll() is None, f"build ended before it could be killed: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its worker processes
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = [n for n in os.listdir(entries) if n.endswith(".pkl")]
    assert 10 <= len(done) < 200
    for name in done:  # no entry that exists is invalid
        assert load_entry(entries / name)["source"] == name[: -len(".pkl")]
    rerun = _legacy_build(*args)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert f"built {200 - len(done)}, skipped {len(done)} " in out
    report = verify_cache(tmp_path / "cache")
    assert report.complete and report.valid == 200
    for tmp in map(Path, report.stray_tmp):  # half-written temp files of the killed build go when stale
        os.utime(tmp, (0, 0))
    build_cache(manifest, tmp_path / "cache", FeatureConfig(), progress=False)
    assert verify_cache(tmp_path / "cache").stray_tmp == []
