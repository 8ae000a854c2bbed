"""spkid.features against python_speech_features, a slow per-frame transcription, and properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spkid.features._blocks as B
import spkid.features._kernel as K
import spkid.features.api as F
import spkid.features.mel as M
from spkid.audio.io import load_audio
from spkid.features.config import FeatureConfig
from spkid.errors import ConfigError, FeatureError

psf = pytest.importorskip("python_speech_features")

# float32 resolves filter energies down to ~1e-7 of the frame's total power; below that (near-digital
# silence in a band) the float64 oracle and float32 differ in the 3rd decimal of the log.
REL_FLOOR = 1e-7


def _psf_log_fbank(y, sr, nfft=512, nfilt=40, winlen=0.025, winstep=0.01, lowfreq=0, highfreq=None):
    feat, energy = psf.fbank(y, sr, winlen, winstep, nfilt=nfilt, nfft=nfft, lowfreq=lowfreq,
                             highfreq=highfreq, preemph=0.97, winfunc=np.hamming)
    resolvable = feat >= REL_FLOOR * energy[:, None]
    return np.log(np.maximum(feat, M.EPS)), resolvable


def _files(folder, pattern, step):
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} in {folder}"
    return files[::step]


@pytest.mark.parametrize("which", ["fsdd", "libri"])
def test_matches_python_speech_features_on_real_speech(which, fsdd_dir, libri_dir):
    folder, pattern, step, sr = {
        "fsdd": (fsdd_dir, "*.wav", 100, 8000),
        "libri": (libri_dir, "*.flac", 25, 16000),
    }[which]
    for path in _files(folder, pattern, step):
        y = load_audio(path, sr=None)
        ours = F.fbank(y, sr, n_mels=40, n_fft=512, normalize=None)
        ref, ok = _psf_log_fbank(y, sr)
        assert ours.dtype == np.float32 and ours.shape == ref.shape, path
        err = np.abs(ours - ref)
        assert err[ok].max() < 1e-3, (path, err[ok].max())
        assert ok.mean() > 0.95, path  # the exclusion is a sliver, not the bulk
        assert err.max() < 1e-2, (path, err.max())


def test_matches_psf_with_band_limits(libri_dir):
    y = load_audio(_files(libri_dir, "*.flac", 1)[3], sr=None)
    ours = F.fbank(y, 16000, n_mels=64, n_fft=1024, fmin=100.0, fmax=7000.0, normalize=None)
    ref, ok = _psf_log_fbank(y, 16000, nfft=1024, nfilt=64, lowfreq=100, highfreq=7000)
    assert np.abs(ours - ref)[ok].max() < 1e-3


def _slow_fbank(x, sr, n_mels=40, win_s=0.025, hop_s=0.010, n_fft=512, a=0.97):
    """The recipe transcribed literally, one frame at a time, in float64."""
    x = np.asarray(x, dtype=np.float64)
    e = np.concatenate([x[:1], x[1:] - a * x[:-1]])
    win = int(math.floor(win_s * sr + 0.5))
    hop = int(math.floor(hop_s * sr + 0.5))
    n = 1 + math.ceil((len(e) - win) / hop)
    e = np.concatenate([e, np.zeros((n - 1) * hop + win - len(e))])
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    pts = [mel(0) + i * (mel(sr / 2) - mel(0)) / (n_mels + 1) for i in range(n_mels + 2)]
    b = [math.floor((n_fft + 1) * imel(m) / sr) for m in pts]
    out = np.zeros((n, n_mels))
    for t in range(n):
        frame = e[t * hop : t * hop + win] * np.hamming(win)
        spec = np.fft.rfft(frame, n_fft)
        power = (spec.real**2 + spec.imag**2) / n_fft
        for j in range(n_mels):
            s = 0.0
            for k in range(b[j], b[j + 1]):
                s += (k - b[j]) / (b[j + 1] - b[j]) * power[k]
            for k in range(b[j + 1], b[j + 2]):
                s += (b[j + 2] - k) / (b[j + 2] - b[j + 1]) * power[k]
            out[t, j] = math.log(max(s, M.EPS))
    return out - out.mean(axis=0)


def test_matches_slow_transcription(fsdd_dir):
    y = load_audio(_files(fsdd_dir, "*.wav", 1)[7], sr=None)[:4000]
    ours = F.fbank(y, 8000, n_mels=24, n_fft=256)
    ref = _slow_fbank(y, 8000, n_mels=24, n_fft=256)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


def test_db_is_ten_log10_of_natural(rng):
    y = rng.standard_normal(4000).astype(np.float32)
    nat = F.fbank(y, 16000, normalize=None)
    db = F.fbank(y, 16000, log="db", normalize=None)
    np.testing.assert_allclose(db, nat * (10 / np.log(10)), rtol=1e-5, atol=1e-4)


def test_normalisation(rng):
    y = rng.standard_normal(8000).astype(np.float32) * np.linspace(0.1, 1, 8000, dtype=np.float32)
    raw = F.fbank(y, 16000, normalize=None)
    mean = F.fbank(y, 16000, normalize="mean")
    mv = F.fbank(y, 16000, normalize="meanvar")
    np.testing.assert_allclose(mean, raw - raw.mean(0), atol=1e-4)
    np.testing.assert_allclose(mv, (raw - raw.mean(0)) / raw.std(0), atol=1e-3)
    assert np.abs(mean.mean(0)).max() < 1e-4


def test_mfcc_matches_psf(fsdd_dir):
    y = load_audio(_files(fsdd_dir, "*.wav", 1)[11], sr=None)
    ours = F.mfcc(y, 8000)
    ref = psf.mfcc(y, 8000, winfunc=np.hamming)
    assert ours.shape == ref.shape == (ref.shape[0], 13) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-2
    no_lift = F.mfcc(y, 8000, n_mfcc=20, n_mels=40, lifter=0, append_energy=False)
    ref2 = psf.mfcc(y, 8000, numcep=20, nfilt=40, ceplifter=0, appendEnergy=False, winfunc=np.hamming)
    assert np.abs(no_lift - ref2).max() < 1e-2


def test_batch_equals_single(rng):
    ys = [rng.standard_normal(n).astype(np.float32) for n in (400, 401, 1234, 16000, 5555)]
    batch = F.fbank_batch(ys, 16000)
    assert len(batch) == len(ys)
    for y, b in zip(ys, batch):
        # equal up to float32 rounding: FFT/BLAS kernels round rows differently by batch position
        np.testing.assert_allclose(b, F.fbank(y, 16000), rtol=0, atol=1e-5)


def _reference_fbank(y, sr, win, hop, n_fft, n_mels, window):
    """Direct float64 computation: pre-emphasis, padded frames, window, |rfft|^2 / n_fft, filters, log."""
    x = np.asarray(y, dtype=np.float64)
    e = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    n = M.n_frames(len(e), win, hop)
    e = np.concatenate([e, np.zeros((n - 1) * hop + win - len(e))])
    w = {"hamming": np.hamming, "hann": np.hanning, "rectangular": np.ones}[window](win)
    frames = np.stack([e[t * hop : t * hop + win] for t in range(n)]) * w
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    mel = power @ M.mel_filterbank(sr, n_fft, n_mels).T
    return np.log(np.maximum(mel, M.EPS)), mel >= REL_FLOOR * power.sum(1, keepdims=True)


@pytest.mark.parametrize(
    "sr, frame_length, frame_shift, n_fft, window",
    [
        (16000, 0.025, 0.010, 512, "hamming"),  # FFT inputs overlap (stride 480 < n_fft)
        (8000, 0.025, 0.010, 256, "hann"),  # stride 240 < 256
        (16000, 0.032, 0.016, 512, "hamming"),  # stride == n_fft: no overlap
        (16000, 0.020, 0.030, 512, "rectangular"),  # hop > frame: gaps between frames
        (8000, 0.025, 0.002, 512, "hamming"),  # tiny hop: many frame groups
        (22050, 0.025, 0.0125, 1024, "hann"),
    ],
)
def test_frame_layout_matches_direct_computation(rng, monkeypatch, sr, frame_length, frame_shift, n_fft,
                                                  window):
    """The grouped, overlapping FFT-input layout (and chunks packing several signals, with gaps and
    rounding to whole groups) gives the spectra of plainly framed, zero-padded frames."""
    p = K.plan(FeatureConfig(sr=sr, n_mels=24, frame_length=frame_length, frame_shift=frame_shift,
                             n_fft=n_fft, window=window, normalize=None))
    assert p.groups * p.hop == p.stride and p.lead + p.win <= p.stride and p.stride + p.lead >= n_fft
    ys = [rng.uniform(-1, 1, n).astype(np.float32) for n in (p.win, p.win + 1, 3 * sr // 10, sr)]
    monkeypatch.setattr(K, "CHUNK_FRAMES", 41)  # signals split across chunks and sharing them
    outs = F.fbank_batch(ys, sr, n_mels=24, frame_length=frame_length, frame_shift=frame_shift,
                         n_fft=n_fft, window=window, normalize=None)
    for y, out in zip(ys, outs):
        ref, ok = _reference_fbank(y, sr, p.win, p.hop, n_fft, 24, window)
        assert out.shape == ref.shape
        assert np.abs(out - ref)[ok].max() < 1e-3


def test_chunked_equals_unchunked(rng, monkeypatch):
    y = rng.standard_normal(16000 * 3).astype(np.float32)
    whole = F.fbank(y, 16000, normalize=None)
    monkeypatch.setattr(K, "CHUNK_FRAMES", 37)
    chunked = F.fbank(y, 16000, normalize=None)
    chunked_batch = F.fbank_batch([y[:999], y], 16000, normalize=None)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(chunked_batch[1], whole, rtol=0, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    extra=st.integers(0, 3000),
    sr=st.sampled_from([8000, 16000, 22050]),
    frame_length=st.sampled_from([0.02, 0.025, 0.032]),
    frame_shift=st.sampled_from([0.005, 0.01, 0.0125]),
    n_mels=st.integers(8, 40),
    window=st.sampled_from(["hamming", "hann", "rectangular"]),
    seed=st.integers(0, 2**16),
)
def test_shape_and_finiteness_property(extra, sr, frame_length, frame_shift, n_mels, window, seed):
    n_fft = 1024 if sr == 22050 else 512
    win, hop = M.frame_params(sr, frame_length, frame_shift)
    y = np.random.default_rng(seed).uniform(-1, 1, win + extra).astype(np.float32)
    out = F.fbank(y, sr, n_mels=n_mels, frame_length=frame_length, frame_shift=frame_shift,
                  n_fft=n_fft, window=window)
    assert out.shape == (1 + math.ceil((len(y) - win) / hop), n_mels)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_round_half_up_like_psf():
    # 0.0125 s at 22050 Hz = 275.625 -> 276; 0.01 s at 22050 = 220.5 -> 221 (banker's round gives 220)
    assert M.frame_params(22050, 0.0125, 0.01) == (276, 221)


def test_from_config_and_extract(tmp_path, rng):
    import soundfile as sf

    cfg = FeatureConfig(sr=8000, n_mels=30, normalize=None)
    y = rng.uniform(-0.5, 0.5, 16000).astype(np.float32)
    np.testing.assert_array_equal(F.fbank_from_config(y[:8000], cfg), F.fbank(y[:8000], 8000, n_mels=30, normalize=None))
    sf.write(tmp_path / "a.wav", y, 16000, subtype="FLOAT")
    from_file = F.extract_features(tmp_path / "a.wav", cfg)
    from_array = F.extract_features(y, cfg, sr=16000)
    assert from_file.shape == (M.n_frames(8000, 200, 80), 30)
    np.testing.assert_allclose(from_file, from_array, atol=1e-5)


def test_errors(rng):
    with pytest.raises(FeatureError, match="shorter than one frame"):
        F.fbank(np.ones(399, np.float32), 16000)
    with pytest.raises(FeatureError, match="non-finite"):
        F.fbank(np.r_[np.ones(1000), np.nan].astype(np.float32), 16000)
    with pytest.raises(FeatureError, match="1-D"):
        F.fbank(np.ones((2, 1000), np.float32), 16000)
    with pytest.raises(ConfigError):
        F.fbank(np.ones(1000, np.float32), 16000, n_fft=256)  # 400-sample frame > n_fft
    with pytest.raises(ConfigError):
        F.fbank(np.ones(1000, np.float32), 16000, fmax=9000.0)
    with pytest.raises(ConfigError):
        F.fbank(np.ones(1000, np.float32), 16000, normalize="max")
    with pytest.raises(ConfigError):
        F.fbank(np.ones(1000, np.float32), -16000)
    with pytest.raises(ConfigError):
        F.fbank_from_config(np.ones(1000, np.float32), {"sr": 16000})


def test_filterbank_is_cached_and_read_only():
    a = M.mel_filterbank(16000, 512, 40)
    assert a is M.mel_filterbank(16000, 512, 40)
    assert not a.flags.writeable
    assert a.shape == (40, 257) and (a.max(axis=1) > 0).all()


def test_features_command(tmp_path, rng, capsys):
    import soundfile as sf

    from spkid.app.cli import main

    sf.write(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 8000)
    sf.write(tmp_path / "b.wav", np.zeros(8000, np.float32), 8000)  # silent: skipped
    out = tmp_path / "out"
    rc = main(["features", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--out", str(out),
               "--n-mels", "24", "--normalize", "none"])
    text = capsys.readouterr().out
    assert rc == 0 and "1 of 2 file(s) done, 1 skipped" in text and "silent" in text
    saved = np.load(out / "a.npy")
    y = load_audio(tmp_path / "a.wav", sr=16000)
    np.testing.assert_array_equal(saved, F.fbank(y, 16000, n_mels=24, normalize=None))
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"]  # no temp files left
    assert main(["features", str(tmp_path / "b.wav")]) == 1


def test_results_do_not_depend_on_previous_calls(rng):
    """Reused work buffers must not leak samples between calls with different frame lengths."""
    y = rng.uniform(-1, 1, 8000).astype(np.float32)
    first = F.fbank(y, 8000, frame_length=0.02, n_fft=512)
    F.fbank(y, 16000, frame_length=0.032, n_fft=512)  # longer frames dirty more buffer columns
    np.testing.assert_array_equal(F.fbank(y, 8000, frame_length=0.02, n_fft=512), first)


# ------------------------------------------------------------------------------ one parameter list
def test_config_plus_keyword_overrides(rng):
    y = rng.uniform(-1, 1, 8000).astype(np.float32)
    cfg = FeatureConfig(sr=8000, n_mels=30, n_fft=256, normalize=None)
    base = F.fbank_from_config(y, cfg)
    np.testing.assert_array_equal(F.fbank(y, config=cfg), base)
    np.testing.assert_array_equal(F.fbank(y, 8000, config=cfg), base)
    np.testing.assert_array_equal(F.fbank(y, 8000, n_mels=30, n_fft=256, normalize=None), base)
    np.testing.assert_array_equal(F.fbank_batch([y], config=cfg)[0], base)
    # overrides apply on top of the config; librosa's sample counts are accepted too
    np.testing.assert_array_equal(F.fbank(y, config=cfg, n_mels=20),
                                  F.fbank_from_config(y, cfg.replace(n_mels=20)))
    np.testing.assert_array_equal(F.fbank(y, 8000, config=cfg, hop_length=40, win_length=160),
                                  F.fbank_from_config(y, cfg.replace(frame_shift=0.005, frame_length=0.02)))
    np.testing.assert_array_equal(F.fbank(y, 16000, hop_length=160), F.fbank(y, 16000))
    np.testing.assert_array_equal(F.extract_features(y, cfg, n_mels=20), F.fbank(y, config=cfg, n_mels=20))
    np.testing.assert_array_equal(F.mfcc(y, config=FeatureConfig(sr=8000, n_mels=26, normalize=None)),
                                  F.mfcc(y, 8000))


@pytest.mark.parametrize("call, match", [
    (lambda y: F.fbank(y, 16000, n_mel=40), "'n_mel'"),
    (lambda y: F.fbank_batch([y], 16000, hop=160), "'hop'"),
    (lambda y: F.mfcc(y, 16000, numcep=13), "'numcep'"),
    (lambda y: F.extract_features(y, FeatureConfig(), bogus=1), "'bogus'"),
    (lambda y: F.fbank(y, 16000, hop_length=160, frame_shift=0.01), "not both"),
    (lambda y: F.fbank(y, 16000, hop_length=0), "hop_length"),
    (lambda y: F.fbank(y, 16000, win_length=600), "n_fft"),
    (lambda y: F.fbank(y, -1, hop_length=160), "sr"),
    (lambda y: F.fbank(y, 16000, n_mels=[40]), "n_mels"),
    (lambda y: F.fbank(y, 16000, n_mels=True), "n_mels"),
    (lambda y: F.fbank(y, config={"sr": 16000}), "FeatureConfig"),
])
def test_parameter_errors_name_the_parameter(call, match):
    with pytest.raises(ConfigError, match=match):
        call(np.ones(4000, np.float32))


def test_bool_is_not_an_int_even_after_a_cached_int(rng):
    y = rng.standard_normal(4000).astype(np.float32)
    F.fbank(y, 16000, n_mels=1)  # cached (n_mels=1) must not answer for n_mels=True (1 == True)
    with pytest.raises(ConfigError):
        F.fbank(y, 16000, n_mels=True)


# ------------------------------------------------------------------------------ the filterbank product
@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (16000, 512, 40, 0.0, None), (8000, 256, 24, 0.0, None), (16000, 1024, 64, 100.0, 7000.0),
    (16000, 512, 128, 0.0, None),  # empty filters (edges sharing a bin)
])
def test_every_candidate_block_plan_is_the_filterbank_product(rng, sr, n_fft, n_mels, fmin, fmax):
    fb = M.mel_filterbank(sr, n_fft, n_mels, fmin, fmax) / n_fft
    support = M.filter_supports(fb)
    power = rng.random((300, fb.shape[1])).astype(np.float32)
    ref = power.astype(np.float64) @ fb.T
    parts = [B._partition(support, panel, call) for panel, call in B._MODELS] + [((0, n_mels),)]
    for part in parts:
        assert [j for j0, j1 in part for j in range(j0, j1)] == list(range(n_mels))  # a partition
        blocks = B._make_blocks(fb, support, part)
        out = np.full((300, n_mels), np.nan, np.float32)
        B.apply(blocks, power, out)
        np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-9 * ref.max())
        for c0, c1, j0, j1, w, step in blocks:  # every BLAS call stays on the calling thread
            assert step * (c1 - c0) * (j1 - j0) <= B.BLAS_CALL_MACS or step == 1


def test_block_choice_is_measured_and_keeps_the_default_on_close_calls():
    fb = M.mel_filterbank(16000, 512, 40) / 512
    support = M.filter_supports(fb)
    good = B._make_blocks(fb, support, B._partition(support, 8, 200.0))
    one_row_calls = tuple(b[:5] + (1,) for b in good)  # same product, one BLAS call per frame: slow
    assert B._choose([one_row_calls, good], fb.shape[1], 40, 256) is good
    twin = tuple(good)
    assert B._choose([good, twin], fb.shape[1], 40, 256) is good  # equal: the default stays
    plan = K.plan(FeatureConfig())
    assert plan.blocks is B.filterbank_blocks(16000, 512, 40, 0.0, None)  # once per process


def test_no_thread_settings_are_touched():
    """The kernel never imports threadpoolctl (nor changes BLAS threads any other way)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom spkid.features.api import fbank, mfcc\n"
            "y = np.random.default_rng(0).standard_normal(48000).astype(np.float32)\n"
            "fbank(y, 16000); mfcc(y, 16000)\nprint('threadpoolctl' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_threads_compute_the_same_features_as_one_thread(rng):
    """Thread-local buffers and a shared, locked block choice: concurrent calls (a threaded server) agree
    bit for bit with serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    ys = [rng.uniform(-1, 1, n).astype(np.float32) for n in (4000, 16000, 33333, 8000)]
    kws = [dict(sr=16000), dict(sr=8000, n_fft=256, n_mels=24), dict(sr=16000, n_mels=64, n_fft=1024),
           dict(sr=22050, n_fft=1024, hop_length=256, normalize="meanvar")]
    jobs = [(y, kw) for y in ys for kw in kws] * 3
    serial = [F.fbank(y, **kw) for y, kw in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: F.fbank(job[0], **job[1]), jobs))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
