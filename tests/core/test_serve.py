"""The HTTP service (spkid.app.serve) through Flask's test client and one real loopback server, with a
framework-free stand-in embedder (mean and std of the log-mel bands) on real FSDD clips."""
from __future__ import annotations

import io
import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")

from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.errors import GalleryError  # noqa: E402
from spkid.features.api import extract_features  # noqa: E402
from spkid.search.gallery import Gallery  # noqa: E402
from spkid.app.serve import create_app, serve  # noqa: E402

SPEAKERS = ("jackson", "nicolas", "theo")


class MeanStdEmbedder:
    """Per-band mean and standard deviation of the log-mel features: (N, 2 * n_mels)."""

    feature_config = FeatureConfig(sr=8000, n_mels=20, normalize=None)
    model_name, backend = "mean-std", "numpy"
    metadata = {"spec": {"embedding_dim": 40}}
    fail = False

    def embed(self, features_list):
        if self.fail:
            raise RuntimeError("secret internal detail")
        return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in features_list]).astype(np.float32)


@pytest.fixture(scope="module")
def clips(fsdd_dir) -> dict[str, list[Path]]:
    return {s: sorted(fsdd_dir.glob(f"*_{s}_*.wav"))[:4] for s in SPEAKERS}


@pytest.fixture
def uploads(tmp_path, monkeypatch) -> Path:
    """Uploaded audio goes to temporary files here (so the test can check they are deleted)."""
    d = tmp_path / "uploads"
    d.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(d))
    return d


@pytest.fixture
def client(tmp_path, uploads):
    app = create_app(MeanStdEmbedder(), tmp_path / "g.npz", max_upload_mb=0.5)
    app.testing = True
    return app.test_client()


def _files(paths):
    return [(open(p, "rb"), p.name) for p in paths]


def _enroll_all(client, clips, n=3):
    for s in SPEAKERS:
        r = client.post("/enroll", data={"name": s, "audio": _files(clips[s][:n])})
        assert r.status_code == 200, r.json
        assert r.json["added"] == n and r.json["utterances"] == n


def test_empty_gallery(client, clips, uploads):
    assert client.get("/health").json["speakers"] == 0
    assert client.get("/speakers").json == {"speakers": [], "count": 0}
    r = client.post("/identify", data={"audio": _files(clips["theo"][:1])})
    assert r.status_code == 409 and r.json["error"] == "GalleryError"
    assert list(uploads.iterdir()) == []


def test_enroll_identify_and_persist(client, clips, tmp_path, uploads):
    _enroll_all(client, clips)
    assert client.get("/speakers").json["count"] == 3
    assert client.get("/health").json["utterances"] == 9
    saved = Gallery.load(tmp_path / "g.npz")  # saved after each enrolment, loads cleanly
    assert saved.speakers == sorted(SPEAKERS) and saved.n_utterances() == 9
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    query = clips["nicolas"][3]  # not enrolled
    r = client.post("/identify", data={"audio": _files([query]), "top_k": "2"})
    assert r.status_code == 200
    emb = MeanStdEmbedder().embed([extract_features(query, MeanStdEmbedder.feature_config)])
    want = saved.identify(emb, top_k=2)[0]
    assert r.json["speaker"] == want.label and r.json["unknown"] is False
    assert [c["speaker"] for c in r.json["candidates"]] == [m.speaker for m in want.candidates]
    assert r.json["score"] == pytest.approx(want.score, abs=1e-5)
    assert r.json["duration"] > 0.1
    assert list(uploads.iterdir()) == []  # temporary uploads deleted


def test_threshold_answers_unknown(tmp_path, clips, uploads):
    app = create_app(MeanStdEmbedder(), tmp_path / "g", threshold=1.01)
    c = app.test_client()
    _enroll_all(c, clips, n=1)
    r = c.post("/identify", data={"audio": _files(clips["jackson"][:1])})
    assert r.json["speaker"] == "unknown" and r.json["unknown"] is True and r.json["threshold"] == 1.01
    assert r.json["candidates"][0]["speaker"] in SPEAKERS


@pytest.mark.parametrize("payload, match", [
    (b"RIFF\x00\x00not a wav at all", "bad.wav"),
    (b"", "empty upload"),
])
def test_bad_audio_is_a_400_naming_the_upload(client, clips, payload, match, uploads):
    _enroll_all(client, clips, n=1)
    for route, extra in (("/identify", {}), ("/enroll", {"name": "eve"})):
        r = client.post(route, data={**extra, "audio": (io.BytesIO(payload), "bad.wav")})
        assert r.status_code == 400 and r.json["error"] == "AudioError"
        assert match in r.json["message"] and "Traceback" not in r.get_data(as_text=True)
    assert "eve" not in [s["name"] for s in client.get("/speakers").json["speakers"]]
    assert list(uploads.iterdir()) == []


def test_silent_and_tiny_wavs(client, clips, tmp_path):
    import soundfile as sf

    _enroll_all(client, clips, n=1)
    for name, n in (("silent.wav", 8000), ("tiny.wav", 10)):
        buf = io.BytesIO()
        sf.write(buf, np.zeros(n, np.float32) if n > 100 else np.full(n, 0.1, np.float32), 8000, format="WAV")
        buf.seek(0)
        r = client.post("/identify", data={"audio": (buf, name)})
        assert r.status_code == 400 and name in r.json["message"], r.json


@pytest.mark.parametrize("data, field", [
    ({"name": "zoe"}, "audio"),
    ({"name": "  "}, "name"),
    ({"name": "unknown"}, "name"),
])
def test_enroll_bad_form(client, clips, data, field):
    data = dict(data)
    if field != "audio":
        data["audio"] = _files(clips["theo"][:1])
    r = client.post("/enroll", data=data)
    assert r.status_code == 400 and field in r.json["message"]


def test_bad_top_k_and_routes(client, clips):
    _enroll_all(client, clips, n=1)
    for k in ("zero", "0", "1000"):
        r = client.post("/identify", data={"audio": _files(clips["theo"][:1]), "top_k": k})
        assert r.status_code == 400 and "top_k" in r.json["message"]
    assert client.get("/nowhere").status_code == 404 and client.get("/nowhere").json["error"] == "Not Found"
    assert client.get("/identify").status_code == 405


def test_request_size_limit(client):
    r = client.post("/identify", data={"audio": (io.BytesIO(b"\x00" * 600_000), "big.wav")})
    assert r.status_code == 413 and "0.5 MB" in r.json["message"]


def test_internal_errors_hide_the_traceback(tmp_path, clips):
    emb = MeanStdEmbedder()
    c = create_app(emb, tmp_path / "g").test_client()
    emb.fail = True
    r = c.post("/enroll", data={"name": "x", "audio": _files(clips["theo"][:1])})
    body = r.get_data(as_text=True)
    assert r.status_code == 500 and r.json["error"] == "InternalError"
    assert "secret internal detail" not in body and "Traceback" not in body


def test_concurrent_enrolment_keeps_every_clip(tmp_path, clips):
    app = create_app(MeanStdEmbedder(), tmp_path / "g")
    errors = []

    def worker(i):
        c = app.test_client()
        for s in SPEAKERS:
            r = c.post("/enroll", data={"name": f"{s}-{i % 2}", "audio": _files(clips[s][i:i + 1])})
            if r.status_code != 200:
                errors.append(r.json)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    saved = Gallery.load(tmp_path / "g")
    assert saved.n_utterances() == 12 and len(saved) == 6


def test_gallery_of_another_dimension_is_refused(tmp_path):
    g = Gallery().enroll("a", np.ones((1, 8), np.float32))
    g.save(tmp_path / "g")
    with pytest.raises(GalleryError, match="8-d"):
        create_app(MeanStdEmbedder(), tmp_path / "g.npz")


def test_gallery_of_another_feature_config_is_refused(tmp_path):
    """The service applies the same gallery/model check as `spkid enroll` and `spkid identify`."""
    other = FeatureConfig(sr=16000, n_mels=40).to_dict()
    Gallery(metadata={"feature_config": other}).enroll("a", np.ones((1, 40), np.float32)).save(tmp_path / "g")
    with pytest.raises(GalleryError, match="another feature_config"):
        create_app(MeanStdEmbedder(), tmp_path / "g")


def test_real_server_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setattr("spkid.inference.export.open_embedder", lambda path, **kw: MeanStdEmbedder())
    box = {}
    ready = threading.Event()

    def on_ready(server):
        box["server"] = server
        ready.set()

    t = threading.Thread(target=serve, args=("stub", tmp_path / "g"), kwargs={"port": 0, "ready": on_ready, "server": "werkzeug"},
                         daemon=True)
    t.start()
    assert ready.wait(30)
    server = box["server"]
    try:
        assert server.server_address[0] == "127.0.0.1"  # loopback by default
        url = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
            assert json.load(r)["status"] == "ok"
        with urllib.request.urlopen(f"{url}/", timeout=10) as r:
            page = r.read().decode()
        assert "<script>" in page and "/identify" in page and "http" not in page.split("<script>")[1]
    finally:
        server.shutdown()
        t.join(10)
