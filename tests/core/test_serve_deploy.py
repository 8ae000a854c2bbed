"""The deployable service (issue 17): token auth on the routes that change the gallery, refusing to listen
beyond loopback without one, DELETE erasing from storage (checked in the database bytes), batch
identification, request counts and latency in /health, and a real gunicorn server with two workers
sharing one gallery, one of them killed with SIGKILL; DELETE and gunicorn also with a LanceDB gallery (G.lance)."""
from __future__ import annotations

import concurrent.futures
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")

from spkid.app.serve import check_exposure, create_app, serve  # noqa: E402
from spkid.errors import ConfigError  # noqa: E402
from spkid.search.gallery import Gallery  # noqa: E402
from tests.core.test_serve import SPEAKERS, MeanStdEmbedder  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def clips(fsdd_dir) -> dict[str, list[Path]]:
    return {s: sorted(fsdd_dir.glob(f"*_{s}_*.wav"))[:4] for s in SPEAKERS}


def _form(paths, **fields):
    return {**fields, "audio": [(io.BytesIO(Path(p).read_bytes()), Path(p).name) for p in paths]}


def _db_bytes(path: Path) -> bytes:
    if path.is_dir():  # G.lance
        return b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def _gallery_name(request) -> str:
    name = getattr(request, "param", "g.db")
    if name.endswith(".lance"):
        pytest.importorskip("lancedb")
        pytest.importorskip("lance")
    return name


@pytest.fixture
def app_db(tmp_path, request):
    path = tmp_path / _gallery_name(request)
    app = create_app(MeanStdEmbedder(), path, token=TOKEN)
    app.testing = True
    return app, path


def test_changing_the_gallery_needs_the_token(app_db, clips):
    app, _ = app_db
    c = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = c.post("/enroll", data=_form(clips["theo"][:2], name="theo"), headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer" and "Bearer" in r.get_json()["message"]
        assert c.delete("/speakers/theo", headers=headers).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.post("/enroll", data=_form(clips["theo"][:2], name="theo"), headers=auth).status_code == 200
    assert c.post("/identify", data=_form(clips["theo"][2:3])).get_json()["speaker"] == "theo"  # reading is open
    assert c.delete("/speakers/theo").status_code == 401


def test_non_loopback_needs_a_token_or_insecure(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0"):
        check_exposure("0.0.0.0", None, False)
    check_exposure("0.0.0.0", "t", False)
    check_exposure("0.0.0.0", None, True)
    check_exposure("127.0.0.1", None, False)
    monkeypatch.delenv("SPKID_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="without a token"):
        serve("stub", tmp_path / "g.db", host="0.0.0.0")
    with pytest.raises(ConfigError, match="needs a SQLite gallery"):
        serve("stub", tmp_path / "g", workers=2)


@pytest.mark.parametrize("app_db", ["g.db", "g.lance"], indirect=True)
def test_delete_erases_the_speaker_from_storage(app_db, clips):
    app, db = app_db
    c, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    for s in ("theo", "nicolas"):
        assert c.post("/enroll", data=_form(clips[s][:2], name=s), headers=auth).status_code == 200
    stored = [r.astype("<f4").tobytes() for r in Gallery.open(db).embeddings("nicolas")]
    assert all(r in _db_bytes(db) for r in stored)
    r = c.delete("/speakers/nicolas", headers=auth)
    assert r.status_code == 200 and r.get_json() == {"removed": "nicolas", "count": 1}
    data = _db_bytes(db)
    assert not any(r[:8] in data for r in stored) and b"nicolas" not in data
    assert c.delete("/speakers/nicolas", headers=auth).status_code == 404
    assert [s["name"] for s in c.get("/speakers").get_json()["speakers"]] == ["theo"]


def test_batch_identification_and_health_counters(app_db, clips):
    app, _ = app_db
    c, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    for s in SPEAKERS:
        assert c.post("/enroll", data=_form(clips[s][:3], name=s), headers=auth).status_code == 200
    queries = [clips[s][3] for s in SPEAKERS]
    r = c.post("/identify", data=_form(queries)).get_json()
    assert r["count"] == 3 and [x["clip"] for x in r["results"]] == [q.name for q in queries]
    singles = [c.post("/identify", data=_form([q])).get_json() for q in queries]
    for one, batch in zip(singles, r["results"]):
        assert one["speaker"] == batch["speaker"] and one["score"] == pytest.approx(batch["score"], abs=1e-5)
    h = c.get("/health").get_json()
    assert h["requests"] == {"POST /enroll": 3, "POST /identify": 4} and h["latency_ms"]["n"] == 7
    assert 0 < h["latency_ms"]["p50"] <= h["latency_ms"]["p95"] <= h["latency_ms"]["max"]
    assert h["worker"] == os.getpid() and h["index"] == "exact"


LAUNCHER = """
import sys
import spkid.inference.export as export
from tests.core.test_serve import MeanStdEmbedder
export.open_embedder = lambda path, **kw: MeanStdEmbedder()
from spkid.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("gallery", ["g.db", "g.lance"])
def test_gunicorn_workers_share_the_gallery_and_survive_kill_9(tmp_path, clips, gallery):
    pytest.importorskip("gunicorn")
    if gallery.endswith(".lance"):
        pytest.importorskip("lancedb")
    from spkid.app.serve.client import Client

    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SPKID_TOKEN", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "serve", "--model", "stub", "--gallery",
                                 str(tmp_path / gallery), "--port", "0", "--workers", "2", "--threads", "2"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            url = next((ln.split()[2].rstrip("/") for ln in log.read_text().splitlines()
                        if ln.startswith("spkid serve: http://")), None)
            time.sleep(0.2)
        assert url, log.read_text()
        client = Client(url, timeout=60)

        def workers_seen(rounds: int = 20) -> dict[int, int]:
            """worker pid -> speakers it reports, from bursts of concurrent /health calls."""
            seen: dict[int, int] = {}
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                for _ in range(rounds):
                    for h in pool.map(lambda _: client.health(), range(16)):
                        seen[h["worker"]] = h["speakers"]
                    if len(seen) >= 2:
                        break
                    time.sleep(0.1)
            return seen

        before = workers_seen(300)  # a worker may still be booting (importing LanceDB on a busy machine)
        assert len(before) == 2 and set(before.values()) == {0}  # both workers up, gallery loaded (empty)
        assert client.enroll("jackson", clips["jackson"][:3])["http_status"] == 200
        after = workers_seen(40)
        assert set(before) <= set(after) and set(after.values()) == {1}  # the other worker caught up
        os.kill(next(iter(before)), signal.SIGKILL)  # one worker dies mid-service
        answers = [client.identify(clips["jackson"][3]) for _ in range(6)]
        assert all(a["http_status"] == 200 and a["speaker"] == "jackson" for a in answers)
        assert client.speakers()["speakers"] == [{"name": "jackson", "utterances": 3}]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert Gallery.open(tmp_path / gallery).n_utterances("jackson") == 3
