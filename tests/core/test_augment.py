"""spkid.audio.augment and its transforms (noise, rooms, channels): seeded, exact SNRs, aligned unit-energy
reverberation, simulated RT60, band limits, speed, the strict config, folder errors, framework-free."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from spkid.audio.augment import AugmentConfig, Augmenter
from spkid.audio.channels import bandpass, gain, random_eq, speed_perturb, telephone
from spkid.audio.noise import add_colored_noise, add_noise, babble, colored_noise
from spkid.audio.rooms import reverberate, schroeder_rt60, simulate_rir
from spkid.errors import AudioError, ConfigError

SR = 16000
SEEDS = (0, 1, 2)


def _speech(seed: int = 0, n: int = SR) -> np.ndarray:
    """A speech-like test signal: harmonics of a wobbling f0 under a syllable-rate envelope, float32 (n,)."""
    rng = np.random.default_rng(1000 + seed)
    t = np.arange(n) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase + rng.uniform(0, 6.28)) / k for k in range(1, 12))
    return (0.3 * y * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2) / 3).astype(np.float32)


def _snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    c = clean.astype(np.float64)
    return 10 * np.log10(np.mean(c**2) / np.mean((mixed.astype(np.float64) - c) ** 2))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


ALL_ON = dict(noise_prob=1.0, reverb_prob=1.0, babble_prob=1.0, channel_prob=1.0, telephone_prob=1.0,
              eq_prob=1.0, gain_prob=1.0)

TRANSFORMS = {
    "white": lambda y, r: add_colored_noise(y, 5.0, r, "white"),
    "pink": lambda y, r: add_colored_noise(y, 5.0, r, "pink"),
    "brown": lambda y, r: add_colored_noise(y, 5.0, r, "brown"),
    "add_noise_offset": lambda y, r: add_noise(y, colored_noise(3000, _rng(9)), 5.0, rng=r),
    "babble": lambda y, r: babble(y, [_speech(s, 5000) for s in (3, 4, 5)], 15.0, r),
    "simulated_reverb": lambda y, r: reverberate(y, simulate_rir(SR, 0.4, r)),
    "random_eq": lambda y, r: random_eq(y, SR, r),
    "augmenter": lambda y, r: Augmenter(AugmentConfig(**ALL_ON))(y, r, babble_pool=[_speech(s) for s in (3, 4)]),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_seeded_transforms_are_deterministic(name):
    y = _speech()
    f = TRANSFORMS[name]
    a, b, c = f(y, _rng(7)), f(y, _rng(7)), f(y, _rng(8))
    assert a.dtype == np.float32 and a.shape == y.shape
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert np.isfinite(a).all()


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0, 20.0])
def test_snr_is_the_one_asked_for(color, snr):
    for seed in SEEDS:
        y = _speech(seed)
        assert _snr(y, add_colored_noise(y, snr, _rng(seed), color)) == pytest.approx(snr, abs=0.5)
    # a given (shorter, tiled) noise signal, and babble
    y = _speech()
    noise = colored_noise(4321, _rng(5), color) * 0.01
    assert _snr(y, add_noise(y, noise, snr)) == pytest.approx(snr, abs=0.5)
    assert _snr(y, add_noise(y, noise, snr, rng=_rng(3))) == pytest.approx(snr, abs=0.5)
    assert _snr(y, babble(y, [_speech(s, 7000) for s in (6, 7, 8)], snr, _rng(1))) == pytest.approx(snr, abs=0.5)


def test_coloured_noise_has_its_slope():
    """pink falls ~3 dB and brown ~6 dB per octave (1/f^alpha); white is flat."""
    for color, slope in (("white", 0.0), ("pink", -3.0), ("brown", -6.0)):
        x = colored_noise(2**16, _rng(0), color)
        p = np.abs(np.fft.rfft(x)) ** 2
        band = lambda lo: p[lo:2 * lo].mean()  # noqa: E731 (one octave starting at bin lo)
        assert 10 * np.log10(band(2048) / band(1024)) == pytest.approx(slope, abs=1.0)
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)


def test_silent_input_and_silent_noise_are_guarded():
    z = np.zeros(1000, np.float32)
    out = add_colored_noise(z, 10.0, _rng(0))
    assert np.array_equal(out, z) and np.isfinite(out).all()
    y = _speech()
    assert np.array_equal(add_noise(y, np.zeros(50, np.float32), 10.0), y)
    with pytest.raises(AudioError, match="NaN"):
        add_noise(y, np.full(10, np.nan), 10.0)
    with pytest.raises(ConfigError, match="snr_db"):
        add_noise(y, np.ones(10), float("inf"))
    with pytest.raises(ConfigError, match="Generator"):
        add_colored_noise(y, 10.0, 0)


def test_reverberation_is_unit_energy_and_aligned():
    y = _rng(0).standard_normal(SR).astype(np.float32)
    # a direct-path-dominated RIR with 30 samples of onset delay and a scale far from unit energy
    rir = np.zeros(800)
    rir[30], rir[30 + 160], rir[30 + 400] = 5.0, 1.5, -1.0
    z = reverberate(y, rir)
    assert z.shape == y.shape and z.dtype == np.float32
    xc = np.correlate(z[2000:14000].astype(np.float64), y[2000:14000].astype(np.float64), "full")
    assert np.argmax(np.abs(xc)) - (12000 - 1) == 0  # peak at lag 0: not delayed
    h = rir / np.sqrt(np.sum(rir**2))
    np.testing.assert_allclose(z[1000:], (h[30] * y + h[190] * np.roll(y, 160) + h[430] * np.roll(y, 400))[1000:],
                               atol=1e-5)
    for seed in SEEDS:  # simulated rooms: unit energy, peak at the direct path, output power kept
        sim = simulate_rir(SR, 0.5, _rng(seed))
        assert np.sum(sim.astype(np.float64) ** 2) == pytest.approx(1.0, abs=1e-5)
        assert np.argmax(np.abs(sim)) <= 0.005 * SR
        zr = reverberate(y, sim)
        xc = np.correlate(zr[4000:12000].astype(np.float64), y[4000:12000].astype(np.float64), "full")
        assert np.argmax(np.abs(xc)) - (8000 - 1) == 0
        assert np.mean(zr.astype(np.float64) ** 2) == pytest.approx(np.mean(y.astype(np.float64) ** 2), rel=0.3)
    with pytest.raises(AudioError, match="silent"):
        reverberate(y, np.zeros(10))


@pytest.mark.parametrize("rt60", [0.2, 0.5, 0.8])
def test_simulated_rir_has_the_requested_rt60(rt60):
    for seed in SEEDS + (3, 4):
        rir = simulate_rir(SR, rt60, _rng(seed))
        assert schroeder_rt60(rir, SR) == pytest.approx(rt60, rel=0.25)
        assert len(rir) >= rt60 * SR


def _tones() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(SR) / SR
    parts = np.stack([np.sin(2 * np.pi * f * t) for f in (100, 1000, 6000)])
    return parts.sum(0).astype(np.float32) / 3, parts / 3


def _level_db(z: np.ndarray, ref: np.ndarray, f: int) -> float:
    """Gain in dB at frequency f (1 s clips: rfft bin f is f Hz), Hann window against leakage."""
    w = np.hanning(len(z))
    return 20 * np.log10(np.abs(np.fft.rfft(z * w))[f] / np.abs(np.fft.rfft(ref * w))[f])


@pytest.mark.parametrize("use_mu_law", [False, True])
def test_telephone_path_keeps_the_voice_band(use_mu_law):
    x, _ = _tones()
    z = telephone(x, SR, use_mu_law=use_mu_law)
    assert z.shape == x.shape and z.dtype == np.float32
    assert abs(_level_db(z, x, 1000)) < 1.0
    assert _level_db(z, x, 100) <= -20 and _level_db(z, x, 6000) <= -20


def test_bandpass_removes_out_of_band_energy():
    x, _ = _tones()
    z = bandpass(x, SR, 300, 3400)
    assert abs(_level_db(z, x, 1000)) < 0.5
    assert _level_db(z, x, 100) <= -20 and _level_db(z, x, 6000) <= -20
    assert _level_db(bandpass(x, SR, None, 3000), x, 6000) <= -20  # low-pass only
    assert abs(_level_db(bandpass(x, SR, None, 3000), x, 100)) < 0.5
    with pytest.raises(ConfigError, match="low_hz"):
        bandpass(x, SR, 4000, 3000)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
def test_bandpass_equals_scipys_butterworth_sosfiltfilt(order):
    """The cheap design and closed-form initial state give scipy's filter: butter(output="sos") +
    sosfiltfilt, for band-, low- and high-pass edges drawn at random, to float32 round-off."""
    from scipy.signal import butter, sosfilt_zi, sosfiltfilt

    from spkid.audio.channels import _butter_sos, _sos_zi

    rng = _rng(order)
    for trial in range(24):
        sr = (8000, 16000, 22050)[trial % 3]
        lo = float(rng.uniform(20, sr / 4))
        hi = float(rng.uniform(lo + 50, 0.98 * sr / 2))
        lo, hi = (lo, hi) if trial % 4 < 2 else (None, hi) if trial % 4 == 2 else (lo, None)
        y = (0.1 * rng.standard_normal(int(rng.integers(40, 30000)))).astype(np.float32)
        btype, edges = ("bandpass", [lo, hi]) if lo and hi else ("lowpass", hi) if hi else ("highpass", lo)
        sos = butter(order, edges, btype=btype, fs=sr, output="sos")
        want = sosfiltfilt(sos, y.astype(np.float64), padlen=min(3 * (2 * len(sos) + 1), len(y) - 1))
        got = bandpass(y, sr, lo, hi, order=order)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max(), err_msg=f"{btype} {edges}")
        ours = _butter_sos(order, lo, hi, sr)
        np.testing.assert_allclose(_sos_zi(ours), sosfilt_zi(ours), rtol=1e-9, atol=1e-12)


def test_gain_eq_and_speed():
    y = _speech()
    np.testing.assert_allclose(gain(y, 6.0), y * 10 ** 0.3, rtol=1e-6)
    e = random_eq(y, SR, _rng(0), max_db=6.0)
    assert e.shape == y.shape and 10 * np.log10(np.mean(e.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2)) < 6.5
    for factor in (0.9, 1.1):
        s = speed_perturb(y, SR, factor)
        assert s.dtype == np.float32 and abs(len(s) - len(y) / factor) <= 2
    assert np.array_equal(speed_perturb(y, SR, 1.0), y)


@pytest.mark.parametrize("bad, field", [
    ({"noise_prob": 1.5}, "noise_prob"),
    ({"reverb_prob": -0.1}, "reverb_prob"),
    ({"noise_snr": (15.0, 0.0)}, "noise_snr"),
    ({"babble_snr": (float("nan"), 3.0)}, "babble_snr"),
    ({"rt60": (0.0, 0.5)}, "rt60"),
    ({"babble_speakers": (0, 3)}, "babble_speakers"),
    ({"noise_colors": ("white", "purple")}, "noise_colors"),
    ({"noise_colors": ()}, "noise_colors"),
    ({"channel_low_hz": (50.0, 4000.0)}, "channel_low_hz"),
    ({"eq_db": -1.0}, "eq_db"),
    ({"gain_db": "loud"}, "gain_db"),
    ({"nosie_prob": 0.5}, "nosie_prob"),
])
def test_config_rejects_bad_values_naming_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        AugmentConfig.from_dict(bad)


def test_config_defaults_are_off_and_round_trip():
    cfg = AugmentConfig()
    assert not cfg.enabled
    on = AugmentConfig.from_dict(ALL_ON)
    assert on.enabled and AugmentConfig.from_dict(on.to_dict()) == on


def test_all_probabilities_zero_returns_the_input():
    y = _speech()
    out = Augmenter(AugmentConfig())(y, _rng(0))
    assert out is not y and out.tobytes() == y.tobytes()


def test_augmenter_output_and_clipping_rule():
    y = _speech() * 3.0  # peaks above 1 after the gain: peak-normalised, not clipped
    aug = Augmenter({"gain_prob": 1.0, "gain_db": [6.0, 6.0], "noise_prob": 1.0, "noise_snr": [10, 10]})
    z = aug(y, _rng(0))
    assert z.dtype == np.float32 and z.shape == y.shape
    assert np.max(np.abs(z)) == pytest.approx(1.0)
    ratio = np.dot(z, y) / np.dot(y, y)  # the clean part is a scaled copy of y; the rest is 10 dB of noise
    assert _snr(ratio * y, z) == pytest.approx(10.0, abs=0.5)
    with pytest.raises(ConfigError, match="babble_pool"):
        Augmenter({"babble_prob": 1.0})(y, _rng(0))


def test_augmenter_reads_noise_and_rir_folders(tmp_path):
    noise_dir, rir_dir = tmp_path / "noise", tmp_path / "rirs" / "sub"
    noise_dir.mkdir()
    rir_dir.mkdir(parents=True)
    sf.write(noise_dir / "n1.wav", colored_noise(8000, _rng(1), "pink") * 0.1, SR)
    sf.write(noise_dir / "n2.flac", colored_noise(9000, _rng(2), "brown") * 0.1, 8000)  # resampled on load
    sf.write(rir_dir / "r1.wav", np.stack([simulate_rir(SR, 0.3, _rng(3))] * 2, 1), SR)  # two channels
    (noise_dir / "notes.txt").write_text("not audio")
    aug = Augmenter({"noise_prob": 1.0, "noise_snr": [5, 5], "reverb_prob": 1.0}, noise_dir=noise_dir,
                    rir_dir=tmp_path / "rirs")
    assert [p.name for p in aug.noise_files] == ["n1.wav", "n2.flac"] and len(aug.rir_files) == 1
    y = _speech()
    z = aug(y, _rng(0))
    assert z.shape == y.shape and z.tobytes() == aug(y, _rng(0)).tobytes()


def test_folder_errors_name_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(AudioError, match="no audio files") as e:
        Augmenter(noise_dir=empty)
    assert str(empty) in str(e.value)
    with pytest.raises(AudioError, match="not found"):
        Augmenter(rir_dir=tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF0000WAVEjunk" * 4)
    aug = Augmenter({"noise_prob": 1.0}, noise_dir=bad)  # scanning reads nothing
    with pytest.raises(AudioError) as e:
        aug(_speech(), _rng(0))
    assert str(bad / "broken.wav") in str(e.value)


def test_augment_is_framework_free():
    code = ("import sys, spkid.audio.augment\n"
            "print(','.join(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'tensorflow', 'keras', 'jax'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
