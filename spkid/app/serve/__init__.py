"""``spkid serve``: a small HTTP identification service with a one-page web UI (Flask).

:func:`create_app` builds the WSGI app (see :mod:`spkid.app.serve.app` for the routes); :func:`serve` loads a
checkpoint or an exported ``.onnx`` and runs it on a threaded local server, bound to 127.0.0.1 unless told
otherwise. Needs the ``serve`` extra: ``pip install 'spkid[serve]'``.
"""
from __future__ import annotations

import ipaddress
import os
import sys

from spkid.errors import BackendError
from spkid.app.serve.app import create_app

__all__ = ["create_app", "serve"]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(model: str | os.PathLike, gallery: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          threshold: float | None = None, top_k: int = 5, max_upload_mb: float = 10.0,
          ready=None) -> None:
    """Run the service until interrupted. ``ready(server)`` (optional) is called once it listens."""
    try:
        from werkzeug.serving import make_server
    except ImportError:
        raise BackendError("spkid serve needs Flask: pip install 'spkid[serve]'") from None
    from spkid.inference.export import open_embedder

    app = create_app(open_embedder(model), gallery, threshold=threshold, top_k=top_k, max_upload_mb=max_upload_mb,
                     model_source=model)
    server = make_server(host, port, app, threaded=True)
    if not _is_loopback(host):
        print(f"spkid serve: warning: listening on {host}, reachable from other machines; there is no "
              "authentication", file=sys.stderr)
    print(f"spkid serve: http://{host}:{server.server_port}/ (model {model}, gallery {gallery})", flush=True)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()
