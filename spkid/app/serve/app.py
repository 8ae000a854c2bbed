"""The identification service: a Flask app over an embedder and a :class:`~spkid.search.gallery.Gallery`.

Routes (JSON in error cases too, never an HTML traceback):

- ``GET /``            the single-page UI (``index.html`` beside this module: record / upload, bar chart, enrol)
- ``GET /health``      ``{"status": "ok", "model", "backend", "speakers", "utterances", "threshold", "index",
  "worker" (this process's id), "requests": {route: count}, "latency_ms": {"n", "p50", "p95", "max"}}``;
  counts and latencies are this worker's (each of ``--workers N`` processes keeps its own)
- ``GET /speakers``    ``{"speakers": [{"name", "utterances"}], "count"}``
- ``POST /enroll``     multipart ``name`` + one or more ``audio`` files -> ``{"speaker", "added", "utterances",
  "count"}``; durable before the response (a ``.db`` gallery commits a transaction, the npz pair is saved
  atomically with :meth:`Gallery.save`)
- ``DELETE /speakers/<name>`` -> ``{"removed", "count"}``: erases the speaker's embeddings from storage
  (:meth:`Gallery.remove`); 404 when not enrolled
- ``POST /identify``   multipart ``audio`` (+ optional ``top_k``) -> ``{"speaker" (name or "unknown"), "score",
  "unknown", "threshold", "candidates": [{"speaker", "score"}], "neighbours": [{"speaker", "utterance",
  "score"}], "duration"}`` (:meth:`~spkid.search.gallery.Identification.to_dict` + ``duration``); candidate
  scores are cosine similarities to the speakers' centroids, neighbour scores to enrolled utterances.
  Several ``audio`` files (or ``batch=1``): ``{"results": [{"clip", **one answer}], "count"}``, embedded and
  searched as one batch
- ``POST /identify?timeline=1``  the same upload, any length -> who speaks when:
  ``{"file", "segments": [{"start", "end", "speaker" (null: unknown), "score"}], "duration"}``
  (:func:`spkid.search.timeline.timeline_of_file`, as ``spkid identify --timeline --json``)

With a ``token`` (``spkid serve --token`` / ``SPKID_TOKEN``) the routes that change the gallery (``POST /enroll``,
``DELETE /speakers/<name>``) need ``Authorization: Bearer <token>`` and answer 401 without it.

Bad input (unreadable / silent / too short audio, missing fields, empty gallery) answers 400 (409 for an
empty gallery) with the :class:`~spkid.errors.SpkidError` message, naming the uploaded file; bodies over
``max_upload_mb`` answer 413. Uploads are written to a temporary file, read, and deleted. One lock
guards the gallery (enrolment and the lazily-built search index); embedding runs outside it, so
requests are served concurrently by a threaded server. A ``.db`` gallery is shared by every worker process:
each catches up with the others' commits before it answers (:meth:`Gallery.refresh`).
"""
from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import os
import tempfile
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import numpy as np

from spkid.errors import AudioError, GalleryError, SpkidError

__all__ = ["create_app"]

log = logging.getLogger("spkid.app.serve")
_INDEX = Path(__file__).with_name("index.html")


class RequestError(SpkidError):
    """A request lacks a field or has a malformed one (HTTP 400)."""


class _Stats:
    """Request counts per route and the latencies of the last ``keep`` requests of this process."""

    def __init__(self, keep: int = 2048):
        self.lock, self.counts, self.ms = threading.Lock(), collections.Counter(), collections.deque(maxlen=keep)

    def add(self, route: str, ms: float) -> None:
        with self.lock:
            self.counts[route] += 1
            self.ms.append(ms)

    def to_dict(self) -> dict:
        with self.lock:
            ms = np.asarray(self.ms)
            counts = dict(self.counts)
        lat = {"n": int(ms.size)}
        if ms.size:
            lat.update(p50=round(float(np.percentile(ms, 50)), 2), p95=round(float(np.percentile(ms, 95)), 2),
                       max=round(float(ms.max()), 2))
        return {"requests": counts, "latency_ms": lat}


def create_app(embedder, gallery_path: str | os.PathLike, *, threshold: float | None = None, top_k: int = 5,
               max_upload_mb: float = 10.0, model_source: str | os.PathLike = "", token: str | None = None,
               index: str = "auto"):
    """The Flask app. ``embedder``: an :class:`~spkid.inference.Embedder` (or :class:`~spkid.inference.onnx.OnnxEmbedder`);
    ``gallery_path``: where the gallery lives (``G.db``: SQLite, shared by processes; other: the npz pair,
    created on first enrolment); ``threshold``: open-set threshold on the best cosine score (default: the
    gallery's own, None = always answer a name); ``token``: needed to enrol and delete (None: open);
    ``index``: the gallery search (:mod:`spkid.search.live_index`)."""
    from flask import Flask, g as flask_g, jsonify, request
    from werkzeug.exceptions import HTTPException, Unauthorized

    from spkid.features.api import extract_features

    from spkid.search.binding import open_gallery
    from spkid.search.storage import gallery_paths

    # the same model check as `spkid enroll` / `identify`: a gallery of another model is refused
    gallery, _, notes = open_gallery(gallery_path, embedder, model_source, create=True, index=index)
    for note in notes:
        print(f"spkid serve: note: {note}", file=sys.stderr)
    if threshold is None:
        threshold = gallery.threshold
    lock = threading.Lock()
    stats = _Stats()
    app = Flask("spkid.app.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.json.sort_keys = False

    @contextlib.contextmanager
    def saved_upload(storage):
        """The path of a temporary copy of an uploaded file (deleted afterwards); errors name the client's file."""
        name = os.path.basename(storage.filename or "upload")
        fd, tmp = tempfile.mkstemp(prefix="spkid-upload-", suffix=Path(name).suffix[:8])
        try:
            with os.fdopen(fd, "wb") as fh:
                storage.save(fh)
            if os.path.getsize(tmp) == 0:
                raise AudioError("empty upload (0 bytes)", path=name)
            yield tmp
        except SpkidError as exc:  # name the client's file, not our temporary one
            raise type(exc)(exc.problem, path=name) from None
        finally:
            os.unlink(tmp)

    def embed_upload(storage, embed: bool = True) -> tuple[np.ndarray, float]:
        """(embedding (E,), duration in seconds) of one uploaded file (its features (T, n_mels) instead of the
        embedding when not ``embed``)."""
        with saved_upload(storage) as tmp:
            feats = extract_features(tmp, embedder.feature_config)
        duration = feats.shape[0] * embedder.feature_config.frame_shift
        return (embedder.embed([feats])[0] if embed else feats), duration

    def timeline_upload(storage) -> dict:
        """Who speaks when in one uploaded file, against a snapshot of the gallery taken under the lock."""
        from spkid.audio.io import info
        from spkid.features.api import fbank_from_config
        from spkid.search.timeline import segments_to_json, timeline_of_file

        fc = embedder.feature_config
        with lock:
            gallery.refresh()
            centroids, names = gallery.centroids(), gallery.speakers
        voices = types.SimpleNamespace(speakers=names, threshold=threshold, centroids=lambda: centroids)
        with saved_upload(storage) as tmp:
            try:
                duration = round(info(tmp).duration, 3)
            except SpkidError:  # not a libsndfile format: decoded whole by the timeline
                duration = None
            segments = timeline_of_file(tmp, fc.sr, lambda waves: embedder.embed([fbank_from_config(w, fc) for w in waves]),
                                        voices, threshold)
        return {**segments_to_json(os.path.basename(storage.filename or "upload"), segments),
                "duration": duration}

    def audio_files(required: str = "audio") -> list:
        files = [f for f in request.files.getlist(required) if f and f.filename]
        if not files:
            raise RequestError(f"no '{required}' file in the multipart form")
        return files

    @app.before_request
    def start_clock():
        flask_g.t0 = time.perf_counter()

    @app.after_request
    def count_request(response):
        if request.url_rule is not None and request.url_rule.rule != "/health":
            t0 = getattr(flask_g, "t0", None)
            if t0 is not None:
                stats.add(f"{request.method} {request.url_rule.rule}", (time.perf_counter() - t0) * 1000)
        return response

    def require_token() -> None:
        if token is None:
            return
        given = request.headers.get("Authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
            raise Unauthorized()

    def save_npz() -> None:
        if gallery.storage_path is None:  # the npz pair is written whole; a .db has committed already
            if len(gallery):
                gallery.save(gallery_path)
            else:
                for p in gallery_paths(gallery_path):
                    p.unlink(missing_ok=True)

    @app.get("/")
    def page():
        return app.response_class(_INDEX.read_bytes(), mimetype="text/html")

    @app.get("/health")
    def health():
        with lock:
            gallery.refresh()
            n, utts, mode = len(gallery), gallery.n_utterances(), gallery.search_mode()
        return jsonify(status="ok", model=embedder.model_name, backend=embedder.backend, speakers=n,
                       utterances=utts, threshold=threshold, index=mode, worker=os.getpid(), **stats.to_dict())

    @app.get("/speakers")
    def speakers():
        with lock:
            gallery.refresh()
            rows = [{"name": s, "utterances": gallery.n_utterances(s)} for s in gallery.speakers]
        return jsonify(speakers=rows, count=len(rows))

    @app.delete("/speakers/<path:name>")
    def delete_speaker(name: str):
        require_token()
        with lock:
            gallery.refresh()
            if name not in gallery:
                return jsonify(error="NotFound", message=f"speaker {name!r} is not enrolled"), 404
            gallery.remove(name)
            save_npz()
            count = len(gallery)
        log.info("removed %r", name)
        return jsonify(removed=name, count=count)

    @app.post("/enroll")
    def enroll():
        require_token()
        name = (request.form.get("name") or "").strip()
        if not name or len(name) > 100 or name.lower() == "unknown":
            raise RequestError("form field 'name' must be 1-100 characters and not 'unknown'")
        files = audio_files()
        emb = np.stack([embed_upload(f)[0] for f in files])
        ids = [f"{os.path.basename(f.filename)}@{uuid.uuid4().hex[:8]}" for f in files]
        with lock:
            gallery.enroll(name, emb, ids=ids)
            save_npz()
            count, n = len(gallery), gallery.n_utterances(name)
        log.info("enrolled %d clip(s) of %r", len(files), name)
        return jsonify(speaker=name, added=len(files), utterances=n, count=count)

    @app.post("/identify")
    def identify():
        if request.args.get("timeline", "0").lower() in ("1", "true", "yes"):
            return jsonify(timeline_upload(audio_files()[0]))
        try:
            k = int(request.values.get("top_k", top_k))
        except ValueError:
            raise RequestError(f"top_k must be an integer, got {request.values.get('top_k')!r}") from None
        if not 1 <= k <= 100:
            raise RequestError(f"top_k must be in 1..100, got {k}")
        files = audio_files()
        if len(files) > 1 or request.values.get("batch") in ("1", "true"):
            feats = [embed_upload(f, embed=False) for f in files]
            emb = embedder.embed([f for f, _ in feats])
            with lock:
                res = gallery.identify(emb, top_k=k, threshold=threshold)
            results = [{"clip": os.path.basename(f.filename), **r.to_dict(), "duration": round(d, 3)}
                       for f, r, (_, d) in zip(files, res, feats)]
            return jsonify(results=results, count=len(results))
        emb, duration = embed_upload(files[0])
        with lock:
            res = gallery.identify(emb, top_k=k, threshold=threshold)[0]
        return jsonify(**res.to_dict(), duration=round(duration, 3))

    @app.errorhandler(SpkidError)
    def spkid_error(exc: SpkidError):
        empty = isinstance(exc, GalleryError) and "empty" in exc.problem
        return jsonify(error=type(exc).__name__, message=str(exc)), (409 if empty else 400)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description
        headers = {}
        if exc.code == 413:
            message = f"request body larger than the {max_upload_mb:g} MB limit"
        elif exc.code == 401:
            message, headers = "this route needs 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        return jsonify(error=exc.name, message=message), exc.code, headers

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("unhandled error")  # the traceback goes to the server log, not to the client
        return jsonify(error="InternalError", message=f"{type(exc).__name__} (see the server log)"), 500

    app.extensions["spkid"] = {"gallery": gallery, "lock": lock, "embedder": embedder}
    return app
