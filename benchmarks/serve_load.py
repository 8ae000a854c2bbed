"""Bounded loopback load test of ``spkid serve``: N identify requests from C concurrent clients.

    python benchmarks/serve_load.py                       # 200 requests, 4 clients, quick FSDD model
    python benchmarks/serve_load.py --model run_or.onnx --gallery g.npz --requests 200 --clients 4

Without ``--model`` it trains the small FSDD model of the browser test (~10 s), exports it to ONNX and
enrols the six FSDD speakers (takes 1-2). The server runs as a subprocess on a free 127.0.0.1 port; the
clients are threads using the standard library; queries are real FSDD clips (take 0, unseen). Prints
p50 / p95 / max latency, throughput, the error count, top-1 accuracy of the answers and whether the
gallery on disk is unchanged afterwards (reloaded and compared with its state before the load).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spkid.search.gallery import Gallery  # noqa: E402
from spkid.app.serve.client import Client  # noqa: E402
from tests.export_support import FSDD_SPEAKERS, fsdd_files, fsdd_onnx_model, start_server  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "fsdd"


def snapshot(path: Path) -> tuple:
    g = Gallery.load(path)
    return tuple(g.speakers), tuple(g.n_utterances(s) for s in g.speakers), g.centroids().tobytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint or .onnx (default: train the quick FSDD model)")
    ap.add_argument("--gallery", help="gallery (default: enrol the FSDD speakers)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300.0, help="stop sending after this many seconds")
    args = ap.parse_args(argv)
    if args.requests > 10000 or args.clients > 32:
        ap.error("bounded test: at most 10000 requests and 32 clients")
    tmp = Path(tempfile.mkdtemp(prefix="spkid-serve-load-"))
    model = Path(args.model) if args.model else fsdd_onnx_model(DATA, tmp)
    gallery = Path(args.gallery) if args.gallery else tmp / "gallery.npz"
    proc, url = start_server(model, gallery, tmp / "server.log")
    try:
        client = Client(url)
        if not args.gallery:
            for s in FSDD_SPEAKERS:
                assert client.enroll(s, fsdd_files(DATA, s, (1, 2)))["http_status"] == 200
        before = snapshot(gallery)
        queries = [(s, p) for s in FSDD_SPEAKERS for p in fsdd_files(DATA, s, (0,))]
        latencies, errors, correct = [], [], []
        counter, lock = iter(range(args.requests)), threading.Lock()
        deadline = time.monotonic() + args.timeout

        def worker():
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                speaker, path = queries[i % len(queries)]
                t0 = time.perf_counter()
                try:
                    r = client.identify(path)
                except Exception as exc:  # connection errors count as errors
                    r = {"http_status": type(exc).__name__}
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r["http_status"] != 200:
                        errors.append(r["http_status"])
                    else:
                        correct.append(r["speaker"] == speaker)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        intact = snapshot(gallery) == before
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    ms = np.asarray(latencies) * 1000
    print(f"model {model.name}, {len(FSDD_SPEAKERS) if not args.gallery else '?'} speakers; "
          f"{len(ms)} requests from {args.clients} clients in {wall:.1f} s ({len(ms) / wall:.1f} req/s)")
    print(f"latency ms: p50={np.percentile(ms, 50):.1f} p95={np.percentile(ms, 95):.1f} max={ms.max():.1f}")
    print(f"errors={len(errors)} top1={np.mean(correct) * 100:.1f}% gallery_intact={intact}")
    return 0 if not errors and intact and len(ms) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
