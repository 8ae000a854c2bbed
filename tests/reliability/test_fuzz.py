"""Property-based fuzzing (hypothesis) of every parser of untrusted input: fbank parameters and configs,
the restricted unpickler, the manifest reader and label maps, audio decoding and gallery headers.

Each property: the input is either accepted (and the result is sane) or refused with the module's
:class:`~spkid.errors.SpkidError` subclass naming the file -- never another exception, never code run.

The normal suite runs the short ``spkid-ci`` profile (a few dozen examples per property). A longer fuzz
run is a documented command (tests/reliability/README.md)::

    SPKID_FUZZ_EXAMPLES=20000 python -m pytest tests/reliability/test_fuzz.py -p no:cacheprovider
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spkid.features.api as F
from spkid.audio.io import load_audio
from spkid.data.entries import restricted_loads
from spkid.features.config import FeatureConfig
from spkid.errors import AudioError, CacheError, ConfigError, FeatureError, GalleryError, SplitError
from spkid.search.gallery import Gallery
from spkid.data.labels import LabelMap
from spkid.data.manifest import Manifest, Utterance, read_manifest, write_manifest

_EXAMPLES = int(os.environ.get("SPKID_FUZZ_EXAMPLES", "0"))
_COMMON = dict(deadline=None, derandomize=not _EXAMPLES, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("spkid-ci", max_examples=40, **_COMMON)
settings.register_profile("spkid-fuzz", max_examples=max(_EXAMPLES, 1), **_COMMON)
FUZZ = settings.get_profile("spkid-fuzz" if _EXAMPLES else "spkid-ci")


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips bits, 1 inserts, 2 deletes, 3 truncates."""
    out = bytearray(data)
    for kind, pos, byte in edits:
        i = pos % (len(out) + 1)
        if kind == 0 and i < len(out):
            out[i] ^= byte or 1
        elif kind == 1:
            out.insert(i, byte)
        elif kind == 2 and i < len(out):
            del out[i]
        elif kind == 3:
            del out[i:]
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)


# ------------------------------------------------------------------------------------ fbank parameters
fbank_params = st.fixed_dictionaries({
    "sr": st.one_of(st.sampled_from([8000, 16000, 22050, 44100]), st.integers(-10, 100_000)),
    "n_mels": st.integers(-2, 300),
    "n_fft": st.sampled_from([0, 64, 128, 256, 512, 1024, 1000]),
    "frame_length": st.one_of(st.floats(0.001, 0.05), st.sampled_from([0.0, -0.01, float("nan"), float("inf")])),
    "frame_shift": st.one_of(st.floats(0.0005, 0.03), st.sampled_from([0.0, -0.01, float("nan")])),
    "preemphasis": st.floats(-0.5, 1.5),
    "window": st.sampled_from(["hamming", "hann", "rectangular", "kaiser"]),
    "fmin": st.floats(-100.0, 10_000.0),
    "fmax": st.one_of(st.none(), st.floats(-100.0, 60_000.0)),
    "log": st.sampled_from(["natural", "db", "log2"]),
    "normalize": st.sampled_from(["mean", "meanvar", None, "max"]),
})
signals = st.tuples(st.integers(0, 3000), st.sampled_from(["noise", "zeros", "ones", "huge", "nan"]),
                    st.integers(0, 2**32 - 1))


def _signal(n: int, kind: str, seed: int) -> np.ndarray:
    y = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    if kind == "zeros":
        y[:] = 0
    elif kind == "ones":
        y[:] = 1
    elif kind == "huge":
        y *= 1e30
    elif kind == "nan" and n:
        y[seed % n] = np.nan
    return y


@FUZZ
@given(params=fbank_params, signal=signals)
def test_fbank_any_parameters_give_features_or_a_spkid_error(params, signal):
    y = _signal(*signal)
    try:
        config = FeatureConfig.from_dict(params)
    except ConfigError:
        config = None
    try:
        out = F.fbank(y, **params)
    except (ConfigError, FeatureError) as exc:
        # refused: the config was invalid, or the signal short / non-finite / overflowing float32
        assert config is None or len(y) < config.win_length or not np.isfinite(y).all() or signal[1] == "huge", exc
        return
    assert config is not None, "fbank accepted parameters FeatureConfig refuses"
    assert out.dtype == np.float32
    assert out.shape == (F.n_frames(len(y), config.win_length, config.hop_length), config.n_mels)
    if signal[1] != "huge":
        assert np.isfinite(out).all()


config_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 70_000), st.floats(allow_nan=True),
                          st.text(max_size=8), st.lists(st.integers(), max_size=2))


@FUZZ
@given(data=st.dictionaries(st.sampled_from(FeatureConfig.field_names() + ["n_mel", "hop", ""]), config_values))
def test_feature_config_from_any_dict(data):
    try:
        config = FeatureConfig.from_dict(data)
    except ConfigError:
        return
    assert FeatureConfig.from_dict(json.loads(config.to_json())) == config
    assert 1 <= config.n_mels <= config.n_fft // 2 + 1 and config.hop_length >= 1 and config.sr > 0


# --------------------------------------------------------------------------------- restricted unpickler
arrays = st.builds(
    lambda dtype, shape, seed: (np.random.default_rng(seed).standard_normal(shape) * 100).astype(dtype),
    st.sampled_from(["float32", "float64", "int64", "int8", "uint16", "bool", "complex64"]),
    st.lists(st.integers(0, 4), max_size=3).map(tuple), st.integers(0, 1000),
)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
                   st.binary(max_size=10), st.complex_numbers(allow_nan=False), arrays,
                   st.builds(np.float32, st.floats(-1e3, 1e3)))
objects = st.recursive(leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.lists(kids, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=5), kids, max_size=4),
    st.frozensets(st.integers(), max_size=4)), max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@FUZZ
@given(obj=objects)
def test_restricted_unpickler_round_trips_plain_data(obj):
    """Cache entries are written with protocol 4: what it pickles of plain data loads back exactly."""
    assert _same(restricted_loads(pickle.dumps(obj, protocol=4)), obj)


HOSTILE = [(os.system, ("touch {m}",)), (subprocess.call, (["touch", "{m}"],)), (eval, ("open('{m}','w')",)),
           (exec, ("open('{m}','w')",)), (open, ("{m}", "w")), (shutil.copy, ("/etc/hostname", "{m}")),
           (getattr, ("{m}", "upper")), (np.save, ("{m}", np.zeros(1)))]


class _Call:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@FUZZ
@given(which=st.sampled_from(range(len(HOSTILE))), wrap=objects, protocol=st.integers(2, 5),
       where=st.sampled_from(["alone", "in list", "in dict"]))
def test_restricted_unpickler_refuses_code_anywhere(tmp_path_factory, which, wrap, protocol, where):
    marker = tmp_path_factory.mktemp("m") / "pwned"
    func, args = HOSTILE[which]
    args = tuple(a.format(m=marker) if isinstance(a, str) else
                 [x.format(m=marker) for x in a] if isinstance(a, list) else a for a in args)
    payload = _Call(func, args)
    obj = {"alone": payload, "in list": [wrap, payload], "in dict": {"x": wrap, "features": payload}}[where]
    with pytest.raises(CacheError, match="refusing to load global"):
        restricted_loads(pickle.dumps(obj, protocol=protocol))
    assert not marker.exists()


# --------------------------------------------------------------------------- manifests and label maps
names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,5}", fullmatch=True).filter(lambda s: s not in (".", ".."))
utterances = st.lists(st.builds(lambda sp, f, split: Utterance(f"{sp}/{f}.wav", sp, split), names, names,
                                st.sampled_from(["train", "val", "test"])),
                      min_size=1, max_size=8, unique_by=lambda u: u.path)


@FUZZ
@given(utts=utterances, edit=edits)
def test_mutated_manifest_reads_back_or_raises_split_error(tmp_path_factory, utts, edit):
    path = tmp_path_factory.mktemp("m") / "manifest.txt"
    write_manifest(path, Manifest(path.parent, tuple(utts)))
    assert read_manifest(path).utterances == tuple(utts)
    path.write_bytes(_mutate(path.read_bytes(), edit))
    try:
        m = read_manifest(path)
    except SplitError as exc:
        assert str(path) in str(exc)
        return
    paths = [u.path for u in m.utterances]
    assert paths and len(set(paths)) == len(paths)
    assert all(u.split in ("train", "val", "test") and u.speaker for u in m.utterances)
    assert all(not p.startswith("/") and ".." not in p.split("/") and "\\" not in p for p in paths)


@FUZZ
@given(speakers=st.lists(names, min_size=1, max_size=6, unique=True), edit=edits)
def test_mutated_label_map_loads_or_raises_split_error(tmp_path_factory, speakers, edit):
    path = tmp_path_factory.mktemp("l") / "labels.json"
    LabelMap.from_speakers(speakers).save(path)
    path.write_bytes(_mutate(path.read_bytes(), edit))
    try:
        labels = LabelMap.load(path)
    except SplitError as exc:
        assert str(path) in str(exc)
        return
    assert len(set(labels.speakers)) == len(labels) >= 1
    assert all(labels.speaker(labels.index(s)) == s for s in labels.speakers)


# ------------------------------------------------------------------------------------- audio decoding
def _wav(subtype: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    t = np.arange(1600) / 8000
    sf.write(buf, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype=subtype, format=fmt)
    return buf.getvalue()


SOUNDS = {k: _wav(*k.split("-")) for k in ("PCM_16-WAV", "FLOAT-WAV", "PCM_24-WAV", "PCM_U8-WAV", "PCM_16-FLAC")}


@FUZZ
@given(kind=st.sampled_from(sorted(SOUNDS)), edit=edits, junk=st.binary(max_size=64))
def test_mutated_audio_decodes_or_raises_audio_error(tmp_path_factory, kind, edit, junk):
    d = tmp_path_factory.mktemp("a")
    for name, data in ((f"x.{kind.split('-')[1].lower()}", _mutate(SOUNDS[kind], edit)), ("junk.wav", junk)):
        path = d / name
        path.write_bytes(data)
        try:
            y = load_audio(path, sr=16000)
        except AudioError as exc:
            assert str(path) in str(exc)
            continue
        assert y.dtype == np.float32 and y.ndim == 1 and len(y) >= 400 and np.isfinite(y).all()


@pytest.mark.parametrize("channels,sr", [(1, 16000), (2, 8000)])
def test_float_samples_that_overflow_when_mixed_or_resampled_are_refused(tmp_path, channels, sr):
    """Found by the fuzz above: a float WAV shifted by one byte decodes to finite values near 1e38."""
    y = np.full((1600, channels), 3e38, np.float32)
    y[::2] *= -1
    sf.write(tmp_path / "wild.wav", y, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="overflow") as exc:
        load_audio(tmp_path / "wild.wav", sr=sr)
    assert str(tmp_path / "wild.wav") in str(exc.value)


# ---------------------------------------------------------------------------------------- gallery files
@FUZZ
@given(edit=edits)
def test_mutated_gallery_header_loads_or_raises_gallery_error(tmp_path_factory, edit):
    rng = np.random.default_rng(0)
    g = Gallery(metadata={"model": "m"}).enroll("ann", rng.normal(size=(2, 4))).enroll("bob", rng.normal(size=(1, 4)))
    jpath = g.save(tmp_path_factory.mktemp("g") / "gal")
    jpath.write_bytes(_mutate(jpath.read_bytes(), edit))
    try:
        loaded = Gallery.load(jpath)
    except GalleryError as exc:
        assert "gal." in str(exc)
        return
    # both files are checksummed: a mutation that still loads changed nothing but JSON layout
    assert loaded.speakers == ["ann", "bob"] and loaded.metadata == {"model": "m"}
    assert loaded.identify(np.ones(4), top_k=1)


def test_gallery_header_without_threshold_key_is_refused(tmp_path):
    """Found by the fuzz above: a renamed 'threshold' key once raised KeyError."""
    g = Gallery().enroll("ann", np.ones((1, 4)))
    jpath = g.save(tmp_path / "gal")
    header = json.loads(jpath.read_text())
    header["thresholc"] = header.pop("threshold")
    jpath.write_text(json.dumps(header))
    with pytest.raises(GalleryError, match="threshold"):
        Gallery.load(jpath)
