"""Feature-extraction speed: spkid.fbank vs librosa vs python_speech_features vs a bare-FFT floor.

Single thread (BLAS/OpenMP pinned to 1 before numpy loads), audio decoded up front (not timed). Each
method's time for a file is the best of ``--repeats`` runs; times are summed over all files and reported
as x-real-time (seconds of audio per second of compute). The floor is the bare real FFT of the
already-framed, windowed, zero-padded signal -- the fastest of numpy.fft.rfft and scipy.fft.rfft on either
an ``(n_frames, n_fft)`` buffer or ``(n_frames, win)`` frames with ``n=n_fft`` -- i.e. the FFT alone, with
no framing, power, filterbank or log.

    python benchmarks/features.py [DATA_DIR] [--repeats 3] [--limit N]

Last line: ``spkid=<x>xRT librosa=<x>xRT psf=<x>xRT floor=<x>xRT ratio_librosa=<r> ratio_floor=<r>``.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-251"
SR, N_FFT, N_MELS, WIN, HOP = 16000, 512, 40, 400, 160


def spkid_fbank(y):
    from spkid.features.api import fbank

    return fbank(y, SR, n_mels=N_MELS, n_fft=N_FFT)


def librosa_fbank(y):
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, window="hamming", n_mels=N_MELS,
        power=2.0, center=False,
    )
    return np.log(np.maximum(mel, 1e-10))


def psf_fbank(y):
    import python_speech_features as psf

    feat, _ = psf.fbank(y, SR, WIN / SR, HOP / SR, nfilt=N_MELS, nfft=N_FFT, winfunc=np.hamming)
    return np.log(feat)


def _frames(y):
    """Windowed frames, prepared outside the timed region: ((n, n_fft) buffer, (n, win) array)."""
    n = 1 + -(-(len(y) - WIN) // HOP)
    padded = np.zeros((n - 1) * HOP + WIN, dtype=np.float32)
    padded[: len(y)] = y
    framed = np.ascontiguousarray(sliding_window_view(padded, WIN)[::HOP] * np.hamming(WIN).astype(np.float32))
    buf = np.zeros((n, N_FFT), dtype=np.float32)
    buf[:, :WIN] = framed
    return buf, framed


FLOORS = {
    "scipy buffer": lambda b, f: scipy.fft.rfft(b, axis=1, workers=1),
    "scipy n=": lambda b, f: scipy.fft.rfft(f, n=N_FFT, axis=1, workers=1),
    "numpy buffer": lambda b, f: np.fft.rfft(b, axis=1),
    "numpy n=": lambda b, f: np.fft.rfft(f, n=N_FFT, axis=1),
}


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help="folder of 16 kHz flac/wav files")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs per file (default 3)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (default: all)")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from spkid.audio.io import load_audio

    files = sorted(p for p in Path(args.data).iterdir() if p.suffix in (".flac", ".wav"))
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise SystemExit(f"no audio in {args.data}")
    signals = [load_audio(p, sr=SR) for p in tqdm(files, desc="decode", leave=False)]
    audio_s = sum(len(y) for y in signals) / SR

    methods = {"spkid": spkid_fbank, "librosa": librosa_fbank, "psf": psf_fbank}
    for fn in methods.values():  # warm-up: imports, caches
        fn(signals[0])
    totals = dict.fromkeys([*methods, *FLOORS], 0.0)
    for y in tqdm(signals, desc="benchmark", leave=False):
        for name, fn in methods.items():
            totals[name] += _best(lambda: fn(y), args.repeats)
        buf, framed = _frames(y)
        for name, fn in FLOORS.items():
            totals[name] += _best(lambda: fn(buf, framed), args.repeats)

    floor_name = min(FLOORS, key=totals.get)
    xrt = {k: audio_s / v for k, v in totals.items()}
    print(f"{len(files)} files, {audio_s / 60:.1f} min of audio, sr={SR}, n_fft={N_FFT}, n_mels={N_MELS}, "
          f"single thread, best of {args.repeats}")
    print(f"{'method':<22}{'seconds':>10}{'x real time':>14}{'vs spkid':>10}")
    for name, total in totals.items():
        label = f"floor: {name}" if name in FLOORS else name
        print(f"{label:<22}{total:>10.3f}{xrt[name]:>14.0f}{totals['spkid'] / total:>10.2f}")
    floor = xrt[floor_name]
    print(f"spkid={xrt['spkid']:.0f}xRT librosa={xrt['librosa']:.0f}xRT psf={xrt['psf']:.0f}xRT "
          f"floor={floor:.0f}xRT ratio_librosa={xrt['spkid'] / xrt['librosa']:.2f} "
          f"ratio_floor={xrt['spkid'] / floor:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
