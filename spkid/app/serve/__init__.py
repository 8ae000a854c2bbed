"""``spkid serve``: an HTTP identification service with a one-page web UI (Flask app, gunicorn server).

:func:`create_app` builds the WSGI app (see :mod:`spkid.app.serve.app` for the routes); :func:`serve` loads a
checkpoint or an exported ``.onnx`` and runs it, bound to 127.0.0.1 unless told otherwise.

The server is gunicorn (``server="gunicorn"``, the default): pre-forked worker processes, each with a few
threads, restarted by the arbiter when one dies. Processes, because a request spends most of its time in
feature extraction and the model, which hold the GIL; waitress, the other production WSGI server that
installs everywhere, is one multi-threaded process, so ``--workers N`` would mean nothing there (gunicorn is
POSIX-only: on Windows use ``server="werkzeug"``, the development server, one process). Every worker opens
the gallery itself after the fork (a SQLite connection must not cross one); with ``workers > 1`` the gallery
must be a ``.db``, which they all share. ``server="werkzeug"`` runs in the calling thread (tests, embedding).

Exposure: with a ``token`` (or ``SPKID_TOKEN``) enrolling and deleting need ``Authorization: Bearer``; binding
an address other than loopback without a token is refused unless ``insecure``. Needs the ``serve`` extra:
``pip install 'spkid[serve]'``.
"""
from __future__ import annotations

import ipaddress
import os
import sys

from spkid.errors import BackendError, ConfigError
from spkid.app.serve.app import create_app

__all__ = ["create_app", "serve", "SERVERS"]

SERVERS = ("gunicorn", "werkzeug")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse (ConfigError) to listen beyond loopback without a token, unless ``insecure``."""
    if not _is_loopback(host) and not token and not insecure:
        raise ConfigError(f"refusing to listen on {host} (reachable from other machines) without a token: pass "
                          "--token or set SPKID_TOKEN, or --insecure to let anyone who reaches it enrol and delete")


def serve(model: str | os.PathLike, gallery: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          threshold: float | None = None, top_k: int = 5, max_upload_mb: float = 10.0, workers: int = 1,
          threads: int = 4, token: str | None = None, insecure: bool = False, index: str = "auto",
          server: str = "gunicorn", ready=None) -> None:
    """Run the service until interrupted. ``token`` defaults to ``$SPKID_TOKEN``. With ``server="werkzeug"``,
    ``ready(server)`` (optional) is called once it listens."""
    from spkid.inference.export import open_embedder
    from spkid.search.stored import is_database_path

    token = token or os.environ.get("SPKID_TOKEN") or None
    check_exposure(host, token, insecure)
    if server not in SERVERS:
        raise ConfigError(f"server must be one of {SERVERS}, got {server!r}")
    if workers < 1 or threads < 1:
        raise ConfigError(f"--workers and --threads must be at least 1, got {workers} and {threads}")
    if workers > 1 and not is_database_path(gallery):
        raise ConfigError(f"--workers {workers} needs a SQLite gallery that every worker shares (G.db); convert "
                          f"this one with: spkid gallery convert {gallery} NEW.db")
    options = dict(threshold=threshold, top_k=top_k, max_upload_mb=max_upload_mb, model_source=model, token=token,
                   index=index)
    auth = "token required to enrol and delete" if token else "no token: anyone who reaches it may enrol and delete"
    if server == "werkzeug":
        try:
            from werkzeug.serving import make_server
        except ImportError:
            raise BackendError("spkid serve needs Flask: pip install 'spkid[serve]'") from None
        httpd = make_server(host, port, create_app(open_embedder(model, serving=True), gallery, **options), threaded=True)
        print(f"spkid serve: http://{host}:{httpd.server_port}/ (model {model}, gallery {gallery}; {auth})", flush=True)
        if ready is not None:
            ready(httpd)
        try:
            httpd.serve_forever()
        finally:
            httpd.server_close()
        return
    _gunicorn(model, gallery, options, host=host, port=port, workers=workers, threads=threads, auth=auth)


def _check_lance(model, gallery) -> None:
    """The checks of :func:`~spkid.search.binding.open_gallery` on a LanceDB gallery without starting LanceDB."""
    from spkid.inference.export import open_embedder
    from spkid.search.binding import check_gallery, gallery_metadata
    from spkid.search.gallery import Gallery
    from spkid.search.lance_store import read_header

    if os.path.exists(gallery):
        check_gallery(Gallery(read_header(gallery)["metadata"]), gallery_metadata(open_embedder(model), model), gallery)


def _gunicorn(model, gallery, options: dict, *, host: str, port: int, workers: int, threads: int, auth: str) -> None:
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        raise BackendError("spkid serve needs gunicorn: pip install 'spkid[serve]' (or server='werkzeug')") from None
    from spkid.inference.export import open_embedder
    from spkid.search.stored import is_lance_path

    # check the model and the gallery once, here, so that a mismatch is one line and exit 2, not a worker
    # that fails to boot; the gallery is closed again before the fork (each worker opens its own)
    if is_lance_path(gallery):  # lance is not fork-safe (workers forked after it ran crashed): its json only
        _check_lance(model, gallery)
    else:
        probe = create_app(open_embedder(model, serving=True), gallery, **options).extensions["spkid"]["gallery"]
        probe.close()

    def on_ready(arbiter):
        bound = arbiter.LISTENERS[0].sock.getsockname()
        print(f"spkid serve: http://{bound[0]}:{bound[1]}/ (model {model}, gallery {gallery}; {workers} worker(s) "
              f"x {threads} threads; {auth})", flush=True)

    class App(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread", "timeout": 120, "graceful_timeout": 3,  # in-flight requests at shutdown
                               "when_ready": on_ready, "accesslog": None, "errorlog": "-", "loglevel": "warning",
                               "preload_app": False}.items():
                self.cfg.set(key, value)

        def load(self):  # in each worker, after the fork
            return create_app(open_embedder(model, serving=True), gallery, **options)

    App().run()
    sys.exit(0)
