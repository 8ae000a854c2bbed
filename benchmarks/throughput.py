"""Throughput and scaling of spkid on this machine (issue 8). Each section is one command:

    python benchmarks/throughput.py features   # fbank extraction x real time, 1 vs 2 build_cache workers
    python benchmarks/throughput.py cache      # cache load vs recompute; pickle-per-utterance vs np.memmap pack
    python benchmarks/throughput.py train      # samples/s, 3 models x 2 backends, batch 32, 300-frame crops
    python benchmarks/throughput.py infer      # embeddings/s for 3 s clips, each backend
    python benchmarks/throughput.py scaling    # time/memory vs number of utterances + VoxCeleb projections

Data: real speech in ../shared/data (FSDD 8 kHz digits; LibriSpeech-251 16 kHz). Training and inference
use default-size models on random 300-frame inputs (speed does not depend on the values); ``--steps``
timed steps follow ``--warmup`` untimed ones. "data wait" is the time the loop waits for the next batch
from the training data pipeline (TrainSampler crops via each backend's loader), measured separately
per step. Run it with ``nice`` on a shared machine; all figures are wall-clock on this CPU.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SPKID_SHARED_DATA", REPO.parent / "shared" / "data"))
MODELS = ("vgg_attention", "resnet18", "resnet50")


def _table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _manifest(n: int | None = None, corpus: str = "fsdd"):
    from spkid.data.manifest import Manifest
    from spkid.data.layouts.registry import load_dataset

    m = load_dataset(DATA / corpus, pattern="fsdd" if corpus == "fsdd" else "librispeech")
    utts = m.utterances if n is None else m.utterances[:n]
    return Manifest(m.root, tuple(utts))


def _audio_seconds(manifest) -> float:
    import soundfile as sf

    return sum(sf.info(str(manifest.path_of(u))).duration for u in manifest.utterances)


def _config(corpus: str):
    from spkid.features.config import FeatureConfig

    return FeatureConfig(sr=8000) if corpus == "fsdd" else FeatureConfig()


# ------------------------------------------------------------------------------------------ features
def features(args) -> None:
    from spkid.data.cache import build_cache

    rows = []
    for corpus, n in (("fsdd", args.utterances), ("librispeech-251", None)):
        man = _manifest(n, corpus)
        secs = _audio_seconds(man)
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                rep = build_cache(man, tmp, _config(corpus), workers=workers, progress=False)
                dt = time.perf_counter() - t
                size = sum(f.stat().st_size for f in Path(tmp).rglob("*.pkl"))
            rows.append([corpus, len(man.utterances), workers, secs / 60, dt, secs / dt,
                         size / 2**20 / (secs / 3600), rep.built])
    _table("Feature extraction (spkid prepare = build_cache)",
           ["corpus", "utts", "workers", "audio min", "wall s", "x real time", "cache MiB/audio h", "built"], rows)


# --------------------------------------------------------------------------------------------- cache
def pack_memmap(features: list, path: Path) -> None:
    """One float32 file of all frames + an offsets index (the evaluated alternative layout)."""
    offsets = np.cumsum([0] + [f.shape[0] for f in features])
    arr = np.lib.format.open_memmap(path / "frames.npy", "w+", np.float32, (int(offsets[-1]), features[0].shape[1]))
    for f, a in zip(features, offsets[:-1]):
        arr[a : a + f.shape[0]] = f
    arr.flush()
    np.save(path / "index.npy", offsets)


def cache(args) -> None:
    from spkid.data.cache import FeatureCache, build_cache
    from spkid.features.api import extract_features

    rows = []
    for corpus, n in (("fsdd", args.utterances), ("librispeech-251", None)):
        man = _manifest(n, corpus)
        cfg = _config(corpus)
        tmp = Path(tempfile.mkdtemp())
        try:
            build_cache(man, tmp / "pkl", cfg, progress=False)
            fc = FeatureCache(tmp / "pkl")
            t = time.perf_counter()
            feats = [fc.load(u) for u in man.utterances]
            pkl = time.perf_counter() - t
            t = time.perf_counter()
            for u in man.utterances[: max(1, len(man.utterances) // 4)]:
                extract_features(man.path_of(u), cfg)
            recompute = (time.perf_counter() - t) * len(man.utterances) / max(1, len(man.utterances) // 4)
            (tmp / "mm").mkdir()
            pack_memmap(feats, tmp / "mm")
            os.sync()
            t = time.perf_counter()
            arr = np.load(tmp / "mm" / "frames.npy", mmap_mode="r")
            off = np.load(tmp / "mm" / "index.npy")
            mm_feats = [np.array(arr[off[i] : off[i + 1]]) for i in range(len(off) - 1)]
            mm = time.perf_counter() - t
            assert all(np.array_equal(a, b) for a, b in zip(feats, mm_feats))
            rows.append([corpus, len(feats), recompute, pkl, mm, recompute / pkl, pkl / mm])
        finally:
            shutil.rmtree(tmp)
    _table("Cache load vs recompute (warm page cache; pickle = FeatureCache.load with the restricted unpickler)",
           ["corpus", "utts", "recompute s", "pickle load s", "memmap load s", "recompute/pickle", "pickle/memmap"],
           rows)


# --------------------------------------------------------------------------------------------- train
def _train_one(backend: str, model: str, steps: int, warmup: int, batch: int, frames: int) -> dict:
    """samples/s and data-wait of ``steps`` optimizer steps (after ``warmup``) through the backend adapter."""
    from spkid.backends import get_backend
    from spkid.training.config import TrainConfig
    from spkid.data.featuresets import FeatureSet
    from spkid.data.sampler import TrainSampler
    from spkid.training.loop import resolve_spec

    rng = np.random.default_rng(0)
    n_classes = 40
    data = FeatureSet([rng.normal(size=(int(rng.integers(200, 800)), 40)).astype(np.float32) for _ in range(512)],
                      rng.integers(0, n_classes, 512), tuple(f"s{i}" for i in range(n_classes)))
    cfg = TrainConfig(model=model, batch_size=batch, crop_frames=frames, devices="cpu")
    ad = get_backend(backend).adapter()
    ad.build(cfg, resolve_spec(cfg, 40), n_classes)
    it = iter(ad.batches(TrainSampler(data, cfg), 0))
    wait = run = 0.0
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        ad.train_step(x, y, cfg.lr)
        t2 = time.perf_counter()
        if k >= warmup:
            wait, run = wait + t1 - t0, run + t2 - t1
    return {"samples_s": steps * batch / (wait + run), "step_s": (wait + run) / steps, "wait_ms": 1e3 * wait / steps}


def train(args) -> None:
    import subprocess

    rows, speed = [], {}
    for model in args.models:
        for backend in ("torch", "keras"):
            steps = args.steps if model != "resnet50" else max(1, args.steps // 2)
            code = (f"import json,sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.throughput import _train_one;"
                    f"print(json.dumps(_train_one({backend!r}, {model!r}, {steps}, {args.warmup}, {args.batch}, 300)))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**os.environ, "KERAS_BACKEND": "tensorflow"})
            if out.returncode:
                print(out.stderr[-2000:])
                continue
            r = __import__("json").loads(out.stdout.strip().splitlines()[-1])
            speed[model, backend] = r["samples_s"]
            rows.append([model, backend, steps, r["step_s"], r["samples_s"], r["wait_ms"]])
    _table(f"Training on this CPU (batch {args.batch}, 300-frame crops, default model sizes, fp32)",
           ["model", "backend", "steps", "s/step", "samples/s", "data wait ms/step"], rows)
    _table("Keras / PyTorch training speed (goal >= 0.8)", ["model", "ratio"],
           [[m, speed[m, "keras"] / speed[m, "torch"]] for m in args.models if (m, "keras") in speed and (m, "torch") in speed])


# --------------------------------------------------------------------------------------------- infer
def _infer_one(backend: str, model: str, n: int) -> float:
    from spkid.backends import get_backend
    from spkid.training.config import TrainConfig
    from spkid.training.loop import resolve_spec

    spec = resolve_spec(TrainConfig(model=model), 40)
    x = [np.random.default_rng(i).normal(size=(300, 40)).astype(np.float32) for i in range(n)]
    tr = get_backend(backend)
    m = tr.create_model(model, 40, **spec.to_dict())
    tr.embed(m, x[:32])
    t = time.perf_counter()
    tr.embed(m, x)
    return n / (time.perf_counter() - t)


def infer(args) -> None:
    import json
    import subprocess

    rows = []
    for model in args.models:
        row = [model]
        for backend in ("torch", "keras"):
            code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.throughput import _infer_one;"
                    f"print(_infer_one({backend!r}, {model!r}, {args.clips}))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env={**os.environ, "KERAS_BACKEND": "tensorflow"})
            row.append(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else "failed")
        rows.append(row)
    _table(f"Inference: embeddings/s for 3 s clips (300 frames), batches of 32, {args.clips} clips",
           ["model", "torch", "keras"], rows)


# ------------------------------------------------------------------------------------------- scaling
def scaling(args) -> None:
    from spkid.data.cache import FeatureCache, build_cache
    from spkid.search.index import SpeakerIndex

    rows, fits = [], {}
    for n in args.points:
        man = _manifest(n, "fsdd")
        secs = _audio_seconds(man)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            build_cache(man, tmp, _config("fsdd"), progress=False)
            prep = time.perf_counter() - t
            disk = sum(f.stat().st_size for f in Path(tmp).rglob("*.pkl"))
            t = time.perf_counter()
            fc = FeatureCache(tmp)
            feats = [fc.load(u) for u in man.utterances]
            load = time.perf_counter() - t
        ram = sum(f.nbytes for f in feats)
        emb = np.random.default_rng(0).normal(size=(n, 512)).astype(np.float32)
        labels = np.asarray([u.speaker for u in man.utterances])
        t = time.perf_counter()
        idx = SpeakerIndex(n_neighbors=5).fit(emb, labels)
        idx.predict(emb[:200])
        search = (time.perf_counter() - t) / 200 * 1e3
        rows.append([n, secs / 60, prep, load, disk / 2**20, ram / 2**20, search])
        for k, v in (("prep", prep / n), ("load", load / n), ("disk", disk / n), ("ram", ram / n)):
            fits.setdefault(k, []).append(v)
    _table("Measured scaling on FSDD (8 kHz digits, ~0.4 s each): per-point totals",
           ["utts", "audio min", "prepare s", "cache load s", "cache MiB", "features RAM MiB", "search ms/query"], rows)
    per = {k: float(np.median(v)) for k, v in fits.items()}
    print("\nPer-utterance cost (median over points; linear in the number of utterances): "
          + ", ".join(f"{k} {v:.3g}" for k, v in per.items()))
    # Projection: prepare time and cache size grow with audio hours (measured per audio second here,
    # FSDD's short clips pay a per-file overhead, so the LibriSpeech rate from `features` is the better
    # guide for long utterances); a training epoch and embedding grow with the number of utterances.
    audio_s = rows[-1][1] * 60
    prep_h, disk_h = rows[-1][2] / audio_s * 3600, rows[-1][4] / audio_s * 3600
    print("\nProjection (fp32 fbank-40 caches; epoch = utterances / samples/s with one 3 s crop each):")
    proj = []
    for name, utts, hours in (("VoxCeleb1", 153_516, 352), ("VoxCeleb2", 1_128_246, 2_442)):
        proj.append([name, utts, hours, prep_h * hours / 3600, prep_h * hours / 3600 / args.workers,
                     disk_h * hours / 1024, utts / args.train_samples_s / 3600, utts / args.embed_per_s / 3600,
                     search_ms_at(rows, utts)])
    _table(f"Projected cost (prepare at this CPU's FSDD rate; {args.workers} workers; train at "
           f"{args.train_samples_s} samples/s, embed at {args.embed_per_s}/s -- pass the `train`/`infer` figures)",
           ["corpus", "utts", "audio h", "prepare h (1 proc)", f"prepare h ({args.workers})", "cache GiB",
            "train epoch h", "embed h", "exact search ms/query"], proj)


def search_ms_at(rows: list, n: int) -> float:
    """Exact search cost per query grows linearly with the gallery: scale the largest measured point."""
    return rows[-1][6] * n / rows[-1][0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=["features", "cache", "train", "infer", "scaling", "all"])
    p.add_argument("--utterances", type=int, default=1000, help="FSDD files for features/cache")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--steps", type=int, default=6, help="timed training steps (resnet50: half)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clips", type=int, default=128, help="3 s clips embedded per backend")
    p.add_argument("--points", type=int, nargs="+", default=[250, 500, 1000, 2000])
    p.add_argument("--workers", type=int, default=16, help="prepare processes assumed in the projection")
    p.add_argument("--train-samples-s", type=float, default=30.0, help="measured training samples/s")
    p.add_argument("--embed-per-s", type=float, default=100.0, help="measured embeddings/s")
    args = p.parse_args(argv)
    print(f"spkid throughput, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, no GPU measured")
    for name in (["features", "cache", "train", "infer", "scaling"] if args.section == "all" else [args.section]):
        globals()[name](args)


if __name__ == "__main__":
    main()
