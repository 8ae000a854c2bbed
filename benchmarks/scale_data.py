"""Training on corpora larger than memory (issue 16): memory per training process and crops per second
per worker, from feature stores of 10k, 40k and 160k utterances, with a projection for VoxCeleb.

    python benchmarks/scale_data.py                       # build, memory, crops, projection
    python benchmarks/scale_data.py --sizes 10000 --steps 5 --ranks 1   # a quick look

The stores are made of repeated real speech: the 251 LibriSpeech recordings of ../shared/data are
featurised once (16 kHz, 40 log-mel bands, the recipe's defaults) and utterance ``j`` is a 2-6 s slice of
one of them (seeded), for 1,000 speakers whatever the size, so the model (and its classifier) is the
same in every run and only the corpus grows. They are written with the library's own builder
(:func:`spkid.data.waves_build.build_store`) under ``--root`` (default a temp folder; ~14 GB for all
three sizes) and reused by later runs.

memory: ``spkid train --cache STORE --max-steps N --no-verify`` with the default-size model
(vgg_attention, batch 32, 3 s crops), for torch in 1 process and 2 DDP ranks (``--devices 2``: torchrun
with gloo on this CPU) and keras in 1; /proc of every process is polled every 50 ms. "peak RSS" is the
kernel's high-water mark (VmHWM) of the largest training process (a rank; not torchrun's agent), which
counts the store's pages it mapped; "peak anon" the largest private (RssAnon) part, what the process
itself holds. crops: random 3 s crops per second per worker (one process building batches) from the
memory map, features (TrainSampler) and waveforms (WaveSampler with the robust recipe's augmentation and
the fbank computed on the fly), page cache warm.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SPKID_SHARED_DATA", REPO.parent / "shared" / "data"))
SPEAKERS = 1000
sys.path.insert(0, str(REPO / "benchmarks"))
from throughput import _table  # noqa: E402  (one table printer for the benchmarks)

_POOL: list = []  # featurised (or decoded) real recordings the synthetic utterances are cut from


def _pool(kind: str) -> None:
    from spkid.audio.io import load_audio
    from spkid.features.api import extract_features
    from spkid.features.config import FeatureConfig

    files = sorted((DATA / "librispeech-251").glob("*.flac"))
    if not files:
        sys.exit(f"no LibriSpeech recordings under {DATA / 'librispeech-251'}")
    ys = [load_audio(f, sr=16000) for f in files]
    _POOL[:] = ys if kind == "waves" else [extract_features(y, FeatureConfig()) for y in ys]


def _slice(job: tuple) -> tuple:
    """build_store worker: utterance ``spkNNNN/UUUUUU.wav`` -> a seeded 2-6 s slice of a pooled recording."""
    _, relpath, rate, dtype = job
    n = int(relpath.split("/")[1].split(".")[0])
    rng = np.random.default_rng([n, 16])
    src = _POOL[n % len(_POOL)]
    length = min(len(src), int(rng.uniform(2.0, 6.0) * rate))
    start = int(rng.integers(0, len(src) - length + 1))
    out = src[start:start + length]
    if dtype == "int16":
        from spkid.data.waves_build import quantize

        out = quantize(out, "int16")
    return relpath, np.ascontiguousarray(out), ""


def _manifest(n: int):
    from spkid.data.manifest import Manifest, Utterance

    return Manifest("/nonexistent", [Utterance(f"spk{j % SPEAKERS:04d}/{j:06d}.wav", f"spk{j % SPEAKERS:04d}", "train")
                                     for j in range(n)])


def build(root: Path, n: int, kind: str = "features") -> tuple[Path, float]:
    """The store of ``n`` utterances under ``root`` (built now unless already there); (path, build seconds)."""
    from spkid.data.featstore import FeatureStore, feature_kind
    from spkid.data.waves import WaveStore
    from spkid.data.waves_build import build_store, wave_kind
    from spkid.features.config import FeatureConfig

    path = root / f"{kind}-{n}"
    cls = FeatureStore if kind == "features" else WaveStore
    if (path / cls.HEADER_FILE).exists() and len(cls(path)) == n:
        return path, float("nan")
    if not _POOL or (kind == "waves") != (_POOL[0].ndim == 1):
        _pool(kind)
    config = FeatureConfig()
    if kind == "features":
        store_kind = dataclasses.replace(feature_kind(config), produce=_slice, params=(100, "float32"))
    else:
        store_kind = dataclasses.replace(wave_kind(16000, "int16"), produce=_slice, params=(16000, "int16"))
    t = time.perf_counter()
    build_store(_manifest(n), path, store_kind, progress=sys.stderr.isatty())
    return path, time.perf_counter() - t


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


# ----------------------------------------------------------------------------------------------- memory
def _status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "RssAnon", "PPid"):
                out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _tree(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            pp = _status(int(d)).get("PPid")
            if pp is not None:
                kids.setdefault(pp, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def measure(cmd: list[str], env: dict) -> tuple[float, float, int, float]:
    """Run ``cmd``; (peak RSS GiB, peak anon GiB of its largest leaf process, leaves seen, seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, list[int]] = {}
    parents: set[int] = set()
    done = threading.Event()

    def poll():
        while not done.is_set():
            for pid in _tree(proc.pid):
                s = _status(pid)
                if "VmHWM" in s:
                    p = peaks.setdefault(pid, [0, 0])
                    p[0], p[1] = max(p[0], s["VmHWM"]), max(p[1], s.get("RssAnon", 0))
                    parents.add(s.get("PPid", -1))
            time.sleep(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    leaves = {p: v for p, v in peaks.items() if p not in parents} or peaks
    rss = max(v[0] for v in leaves.values()) / 2**20
    anon = max(v[1] for v in leaves.values()) / 2**20
    return rss, anon, len(leaves), time.perf_counter() - t


def memory(stores: dict, args) -> list[list]:
    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = [("torch", r) for r in args.ranks] + [("keras", 1)] * ("keras" in args.backends)
    for backend, ranks in runs:
        if backend not in args.backends:
            continue
        for n, path in stores.items():
            with tempfile.TemporaryDirectory(prefix="spkid-scale-") as out:
                cmd = [sys.executable, "-m", "spkid", "train", "--backend", backend, "--cache", str(path),
                       "--out", str(Path(out) / "run"), "--max-steps", str(args.steps), "--no-verify",
                       "--no-progress", "--num-workers", str(args.workers), "--devices", str(ranks) if ranks > 1 else "cpu"]
                rss, anon, leaves, secs = measure(cmd, env)
            rows.append([backend, ranks, n, round(rss, 3), round(anon, 3), leaves, round(secs, 1)])
            print(f"  {backend} x{ranks} {n}: peak RSS {rss:.3f} GiB, anon {anon:.3f} GiB ({secs:.0f} s)", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ crops
def _rate(sampler, batches: int) -> float:
    order = sampler.order(0)  # as the loaders do: one order an epoch
    sampler.batch(0, 0, order)
    t = time.perf_counter()
    k = 0
    for i in range(min(batches, len(sampler))):
        k += len(sampler.batch(0, i, order)[1])
    return k / (time.perf_counter() - t)


def crops(stores: dict, wave_store: Path | None, args) -> list[list]:
    from spkid._strict import load_yaml_config
    from spkid.data.featuresets import load_feature_set
    from spkid.data.sampler import TrainSampler
    from spkid.data.wavesampler import WaveSampler, load_wave_set, make_sampler
    from spkid.training.config import TrainConfig

    rows = []
    plain = TrainConfig(batch_size=32, crop_frames=300)
    masked = plain.replace(augment_prob=1.0, time_masks=1, freq_masks=1)
    for n, path in stores.items():
        data = load_feature_set("train", cache=path, progress=False)
        rows.append(["features", n, round(_rate(TrainSampler(data, plain), args.batches))])
        rows.append(["features + masks", n, round(_rate(TrainSampler(data, masked), args.batches))])
    if wave_store is not None:
        recipe = load_yaml_config(REPO / "benchmarks" / "recipes" / "libri251_robust.yaml")
        waves = load_wave_set(wave_store, "train")
        aug = TrainConfig.from_dict({"waveform_augment": recipe["waveform_augment"], "batch_size": 32,
                                     "crop_frames": 300})
        rows.append(["waves + fbank", len(waves), round(_rate(WaveSampler(waves, plain), args.batches // 4))])
        rows.append(["waves + robust augmentation + fbank", len(waves),
                     round(_rate(make_sampler(waves, aug), args.batches // 4))])
    return rows


# ------------------------------------------------------------------------------------------- projection
def projection(mem_rows: list, crop_rows: list, args) -> list[list]:
    rss = max((r[3] for r in mem_rows if r[0] == "torch"), default=float("nan"))
    feat = min((r[2] for r in crop_rows if r[0] == "features"), default=float("nan"))
    wave = min((r[2] for r in crop_rows if r[0].startswith("waves + robust")), default=float("nan"))
    rows = []
    for name, hours in (("VoxCeleb1", 352.0), ("VoxCeleb2", 2442.0)):
        feat_gb = hours * 3600 * 100 * 40 * 4 / 2**30
        wave_gb = hours * 3600 * 16000 * 2 / 2**30
        rows.append([name, f"{feat_gb:.0f} / {wave_gb:.0f}", f"{8 * rss:.1f} + cache {feat_gb:.0f}",
                     f"{8 * args.gpu_crops_s:.0f}", f"{8 * args.workers_per_gpu * feat:.0f}",
                     f"{8 * args.workers_per_gpu * wave:.0f}"])
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 160_000])
    p.add_argument("--root", type=Path, help="where the stores are built and kept (default: a temp folder)")
    p.add_argument("--steps", type=int, default=10, help="training steps per memory run")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="torch process counts")
    p.add_argument("--backends", nargs="+", default=["torch", "keras"], choices=["torch", "keras"])
    p.add_argument("--workers", type=int, default=1, help="loader workers of each training process")
    p.add_argument("--batches", type=int, default=200, help="batches of 32 timed per crop measurement")
    p.add_argument("--wave-utterances", type=int, default=2000)
    p.add_argument("--gpu-crops-s", type=float, default=2000.0,
                   help="assumed 3 s crops/s one large GPU trains (an assumption, not measured here)")
    p.add_argument("--workers-per-gpu", type=int, default=8)
    p.add_argument("--skip", nargs="*", default=[], choices=["memory", "crops"])
    args = p.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="spkid-scale-data-"))
    root.mkdir(parents=True, exist_ok=True)
    stores, build_rows = {}, []
    for n in args.sizes:
        path, secs = build(root, n)
        stores[n] = path
        build_rows.append([n, f"{_du(path):.2f}", "kept" if secs != secs else f"{secs:.0f}"])
    wave_store = None if "crops" in args.skip else build(root, args.wave_utterances, "waves")[0]
    _table(f"feature stores under {root}", ["utterances", "GiB", "build s"], build_rows)
    mem_rows = [] if "memory" in args.skip else memory(stores, args)
    if mem_rows:
        _table(f"peak memory per training process, {args.steps} steps (default vgg_attention, batch 32, 3 s crops)",
               ["backend", "ranks", "utterances", "peak RSS GiB", "peak anon GiB", "processes", "s"], mem_rows)
        for backend in args.backends:
            for ranks in args.ranks if backend == "torch" else [1]:
                got = [r for r in mem_rows if r[0] == backend and r[1] == ranks]
                if len(got) > 1:
                    print(f"  {backend} x{ranks}: largest/smallest corpus peak RSS "
                          f"{got[-1][3] / got[0][3]:.3f}x, anon {got[-1][4] / got[0][4]:.3f}x")
    crop_rows = [] if "crops" in args.skip else crops(stores, wave_store, args)
    if crop_rows:
        _table("random 3 s crops per second, one worker (page cache warm)", ["source", "utterances", "crops/s"],
               crop_rows)
    if mem_rows and crop_rows:
        _table(f"projection, 8 GPUs, {args.workers_per_gpu} workers each, {args.gpu_crops_s:.0f} crops/s a GPU "
               "(assumed)", ["corpus", "features / waves GiB", "RAM GiB (8 ranks + page cache)",
                             "crops/s needed", "feature crops/s", "wave+aug crops/s"], projection(mem_rows, crop_rows, args))
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
