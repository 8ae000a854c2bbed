"""The ``"folders"`` layout: one sub-folder per speaker, ``ROOT/<speaker>/**/<file>.<audio extension>``.

The speaker is the first path component; audio may sit at any depth below it, files directly in ``ROOT``
are ignored. No official split: the seeded per-file rule decides. The most generic layout, so
``layout="auto"`` tries it last: when some sub-folder of ``ROOT`` holds audio.
"""
from __future__ import annotations

import os
from pathlib import Path

from spkid.data.manifest import AUDIO_EXTENSIONS, Utterance
from spkid.data.layouts.base import Layout, Scan, ScanOptions, register_layout, visible_children, walk_audio

__all__ = ["scan_folders"]


def scan_folders(root: str | os.PathLike) -> list[Utterance]:
    """One sub-folder per speaker (audio at any depth below it); files directly in ``root`` are ignored."""
    return [Utterance(rel, rel.split("/", 1)[0]) for rel in walk_audio(Path(root)) if "/" in rel]


def _load(root: Path, options: ScanOptions) -> Scan:
    return Scan(root, scan_folders(root))


def _detect(root: Path) -> dict | None:
    return {} if any(p.is_dir() and walk_audio(p) for p in visible_children(root)) else None


register_layout(Layout("folders", _load, _detect, rank=50,
                       hint=f"sub-folders holding audio ({', '.join(AUDIO_EXTENSIONS)})"))
