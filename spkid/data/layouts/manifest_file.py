"""The ``"manifest"`` layout: ``ROOT`` is a manifest text file (``spkid manifest v1``, see
:mod:`spkid.data.manifest`) that lists every utterance with its speaker and split; its splits are kept.
``layout="auto"`` picks it whenever ``ROOT`` is a file.
"""
from __future__ import annotations

from pathlib import Path

from spkid.data.manifest import Manifest, read_manifest
from spkid.data.layouts.base import Layout, ScanOptions, register_layout

__all__: list[str] = []


def _load(root: Path, options: ScanOptions) -> Manifest:
    return read_manifest(root)


def _detect(root: Path) -> dict | None:
    return {} if root.is_file() else None


register_layout(Layout("manifest", _load, _detect, rank=0, hint="a manifest file", source="file"))
