"""A tiny standard-library client of the spkid service (used by the tests and benchmarks/serve_load.py).

    >>> c = Client("http://127.0.0.1:8000", token="...")     # token: for enrol / delete when the service has one
    >>> c.enroll("alice", ["a1.wav", "a2.wav"]); c.identify("query.wav")["speaker"]
    >>> c.identify_batch(["q1.wav", "q2.wav"])["results"]; c.delete("alice")
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Sequence

__all__ = ["Client", "encode_multipart"]


def encode_multipart(fields: dict[str, str], files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request; ``files``: (field, filename, data)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """JSON calls to a running service; every answer (errors too) is its JSON body plus ``"http_status"``."""

    def __init__(self, base_url: str, timeout: float = 60.0, token: str | None = None):
        self.base_url, self.timeout, self.token = base_url.rstrip("/"), timeout, token

    def _call(self, path: str, body: bytes | None = None, content_type: str | None = None,
              method: str | None = None) -> dict:
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return {**json.load(r), "http_status": r.status}
        except urllib.error.HTTPError as exc:
            return {**json.load(exc), "http_status": exc.code}

    def health(self) -> dict:
        return self._call("/health")

    def speakers(self) -> dict:
        return self._call("/speakers")

    def enroll(self, name: str, paths: Sequence[str | os.PathLike]) -> dict:
        files = [("audio", Path(p).name, Path(p).read_bytes()) for p in paths]
        return self._call("/enroll", *encode_multipart({"name": name}, files))

    def delete(self, name: str) -> dict:
        return self._call("/speakers/" + urllib.parse.quote(name, safe=""), method="DELETE")

    def identify_batch(self, paths: Sequence[str | os.PathLike], top_k: int = 5) -> dict:
        files = [("audio", Path(p).name, Path(p).read_bytes()) for p in paths]
        return self._call("/identify", *encode_multipart({"top_k": str(top_k), "batch": "1"}, files))

    def identify(self, path: str | os.PathLike, top_k: int = 5) -> dict:
        return self._call("/identify", *encode_multipart({"top_k": str(top_k)}, [("audio", Path(path).name,
                                                                                 Path(path).read_bytes())]))
