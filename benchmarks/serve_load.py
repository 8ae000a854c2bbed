"""Bounded loopback load test of ``spkid serve`` under gunicorn: 1 and 4 workers, C concurrent clients, a
SQLite gallery of ~100k utterances, enrolments mixed in, and a worker killed with SIGKILL mid-run.

    python benchmarks/serve_load.py                                   # 1 and 4 workers, 8 clients, 100k padding
    python benchmarks/serve_load.py --workers 4 --requests 400 --clients 8 --pad 100000
    python benchmarks/serve_load.py --model run_or.onnx --requests 200

Without ``--model`` it trains the small FSDD model of the browser test (~10 s) and exports it to ONNX. The six
FSDD speakers are enrolled through the API (takes 1-2), then the gallery is padded with ``--pad`` synthetic
utterances (``--per-speaker`` per speaker, clustered random directions, like ``benchmarks/gallery_scale.py``)
so the search works at scale. For each ``--workers`` value the server runs as a subprocess on a free
127.0.0.1 port; the clients are threads using the standard library. Every ``--enrol-every``-th request is an
enrolment of a new speaker (one clip), the others identify a real unseen FSDD clip (take 0). With more than one
worker, one worker is killed with ``kill -9`` when half the requests are done (gunicorn starts another).

Prints per run: identify p50 / p95 / max latency, enrolment p50 / p95, throughput, 5xx answers, other errors
(connections cut by the kill), top-1 accuracy on the FSDD queries, and ``intact``: the padded gallery is
unchanged and every acknowledged (HTTP 200) enrolment is in the database afterwards.
Goal (issue 17): p95 <= 50 ms at 100k utterances with 8 clients, no 5xx, no acknowledged enrolment lost.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spkid.app.serve.client import Client  # noqa: E402
from spkid.search.gallery import Gallery  # noqa: E402
from spkid.search.index import l2_normalize  # noqa: E402
from tests.export_support import FSDD_SPEAKERS, fsdd_files, fsdd_onnx_model, start_server  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "fsdd"


def snapshot(path: Path) -> tuple:
    g = Gallery.load(path, index="exact")
    return tuple(g.speakers), tuple(g.n_utterances(s) for s in g.speakers), g.centroids().tobytes()


def pad_gallery(path: Path, n: int, per: int, seed: int) -> None:
    g = Gallery.open(path, create=False)
    rng = np.random.default_rng(seed)
    n_spk = n // per
    dirs = l2_normalize(rng.standard_normal((n_spk, g.dim)).astype(np.float32))
    spk = np.repeat(np.arange(n_spk), per)
    noise = l2_normalize(rng.standard_normal((spk.size, g.dim)).astype(np.float32))
    g.enroll_many([f"pad{j:06d}" for j in spk], l2_normalize(0.7 * dirs[spk] + 0.714 * noise))
    g.close()


def worker_pids(arbiter: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()]
    except OSError:
        return []


def load_run(model: Path, gallery: Path, workers: int, args, tmp: Path) -> dict:
    proc, url = start_server(model, gallery, tmp / f"server{workers}.log", "--workers", str(workers),
                             "--threads", "4", timeout=180)
    try:
        client = Client(url, timeout=60)
        queries = [(s, p) for s in FSDD_SPEAKERS for p in fsdd_files(DATA, s, (0,))]
        for s, p in queries[:8]:  # warm-up: workers booted, index codes built
            client.identify(p)
        before = snapshot(gallery)
        lat, enrol_lat, errors, fivexx, correct, acked = [], [], [], 0, [], []
        counter, lock = iter(range(args.requests)), threading.Lock()
        deadline = time.monotonic() + args.timeout
        killed = []

        def one(i: int):
            if i % args.enrol_every == args.enrol_every - 1:
                name = f"load-w{workers}-{i}"
                return "enrol", name, client.enroll(name, [queries[i % len(queries)][1]])
            speaker, path = queries[i % len(queries)]
            return "identify", speaker, client.identify(path)

        def client_loop():
            nonlocal fivexx
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                    if workers > 1 and i == args.requests // 2 and not killed:
                        pids = worker_pids(proc.pid)
                        if pids:
                            os.kill(pids[0], signal.SIGKILL)
                            killed.append(pids[0])
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    kind, who, r = one(i)
                except Exception as exc:  # a connection cut by the kill
                    with lock:
                        errors.append(type(exc).__name__)
                    continue
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if r["http_status"] >= 500:
                        fivexx += 1
                    elif r["http_status"] != 200:
                        errors.append(r["http_status"])
                    elif kind == "enrol":
                        enrol_lat.append(dt)
                        acked.append(who)
                    else:
                        lat.append(dt)
                        correct.append(r["speaker"] == who)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    after = Gallery.load(gallery, index="exact")
    lost = [a for a in acked if a not in after]
    for a in acked:
        if a in after:
            after.remove(a)  # put the gallery back as it was for the next run
    intact = snapshot(gallery) == before and not lost
    ms = np.asarray(lat)
    return dict(workers=workers, n=len(lat) + len(enrol_lat), wall=wall, p50=np.percentile(ms, 50),
                p95=np.percentile(ms, 95), max=ms.max(), enrol_p50=np.percentile(enrol_lat, 50) if enrol_lat else 0,
                enrol_p95=np.percentile(enrol_lat, 95) if enrol_lat else 0, fivexx=fivexx, errors=len(errors),
                top1=np.mean(correct) * 100, acked=len(acked), lost=len(lost), intact=intact, killed=len(killed))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint or .onnx (default: train the quick FSDD model)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pad", type=int, default=100_000, help="synthetic utterances added to the gallery")
    ap.add_argument("--per-speaker", type=int, default=10)
    ap.add_argument("--enrol-every", type=int, default=20, help="every N-th request is an enrolment")
    ap.add_argument("--timeout", type=float, default=300.0, help="stop sending after this many seconds")
    args = ap.parse_args(argv)
    if args.requests > 10000 or args.clients > 32 or max(args.workers) > 16:
        ap.error("bounded test: at most 10000 requests, 32 clients and 16 workers")
    tmp = Path(tempfile.mkdtemp(prefix="spkid-serve-load-"))
    try:
        model = Path(args.model) if args.model else fsdd_onnx_model(DATA, tmp)
        gallery = tmp / "gallery.db"
        proc, url = start_server(model, gallery, tmp / "enrol.log")
        try:
            client = Client(url)
            for s in FSDD_SPEAKERS:
                assert client.enroll(s, fsdd_files(DATA, s, (1, 2)))["http_status"] == 200
        finally:
            proc.terminate()
            proc.wait(30)
        pad_gallery(gallery, args.pad, args.per_speaker, seed=0)
        n_utt = Gallery.load(gallery, index="exact").n_utterances()
        ok = True
        for w in args.workers:
            r = load_run(model, gallery, w, args, tmp)
            print(f"workers={w}: {r['n']} requests from {args.clients} clients in {r['wall']:.1f} s "
                  f"({r['n'] / r['wall']:.1f} req/s), gallery {n_utt} utterances; killed workers: {r['killed']}")
            print(f"  identify ms: p50={r['p50']:.1f} p95={r['p95']:.1f} max={r['max']:.1f}; enrol ms: "
                  f"p50={r['enrol_p50']:.1f} p95={r['enrol_p95']:.1f}")
            print(f"  5xx={r['fivexx']} other_errors={r['errors']} top1={r['top1']:.1f}% acked_enrolments={r['acked']} "
                  f"lost={r['lost']} gallery_intact={r['intact']}", flush=True)
            ok &= r["fivexx"] == 0 and r["intact"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
