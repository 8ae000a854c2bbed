"""``POST /identify?timeline=1``: who speaks when in an uploaded recording (FSDD clips of enrolled speakers
joined with pauses), the same segments as :func:`spkid.search.timeline.timeline_of_file`, the upload deleted."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("flask")

from spkid.app.serve import create_app  # noqa: E402
from spkid.audio.io import load_audio  # noqa: E402
from spkid.features.api import fbank_from_config  # noqa: E402
from spkid.search.gallery import Gallery  # noqa: E402
from spkid.search.timeline import segments_to_json, timeline_of_file  # noqa: E402
from tests.core.test_serve import SPEAKERS, MeanStdEmbedder, _enroll_all, _files, clips, uploads  # noqa: E402,F401


def test_timeline_route(tmp_path, clips, uploads):  # noqa: F811
    app = create_app(MeanStdEmbedder(), tmp_path / "g.npz", threshold=0.2)
    app.testing = True
    client = app.test_client()
    r = client.post("/identify?timeline=1", data={"audio": _files(clips["theo"][:1])})
    assert r.status_code == 409  # nothing enrolled yet
    _enroll_all(client, clips)
    sr = 8000
    pause = np.zeros(sr, np.float32)
    y = np.concatenate([pause] + [p for s in SPEAKERS for p in (load_audio(clips[s][3], sr=sr), pause)])
    path = tmp_path / "meeting.wav"
    sf.write(path, y, sr, subtype="PCM_16")
    r = client.post("/identify?timeline=1", data={"audio": (io.BytesIO(path.read_bytes()), "meeting.wav")})
    assert r.status_code == 200, r.json
    body = r.json
    assert list(body) == ["file", "segments", "duration"] and body["file"] == "meeting.wav"
    assert body["duration"] == pytest.approx(len(y) / sr, abs=1e-3)
    assert body["segments"] and all(list(s) == ["start", "end", "speaker", "score"] for s in body["segments"])
    assert all(0 <= s["start"] < s["end"] <= body["duration"] + 0.01 for s in body["segments"])
    embedder = MeanStdEmbedder()
    gallery = Gallery.load(tmp_path / "g.npz")
    fc = embedder.feature_config
    want = timeline_of_file(path, sr, lambda w: embedder.embed([fbank_from_config(x, fc) for x in w]), gallery, 0.2)
    assert body["segments"] == segments_to_json(path, want)["segments"]
    assert list(uploads.iterdir()) == []  # the temporary copy is gone
    r = client.post("/identify?timeline=1", data={"audio": (io.BytesIO(b"not audio"), "junk.wav")})
    assert r.status_code == 400 and "junk.wav" in r.json["message"]
