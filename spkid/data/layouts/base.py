"""What a dataset layout module provides, how it registers itself, and the scan helpers layouts share.

A layout module (one per on-disk dataset layout, in this package) calls :func:`register_layout` once per
layout with a :class:`Layout`: its name, a ``detect`` function that says whether a folder (or file) looks
like it, and a ``load`` function that scans it. ``load`` returns either a finished :class:`Manifest` (the
layout carries its own split, like VoxCeleb1's ``iden_split.txt``) or a :class:`Scan` whose utterances
:func:`spkid.data.layouts.registry.load_dataset` then cleans and splits. The registry imports every
module of this package, so adding a layout means adding one module.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from spkid.data.manifest import AUDIO_EXTENSIONS, Manifest, Utterance, check_relpath

__all__ = ["Layout", "Scan", "ScanOptions", "register_layout", "registered_layouts"]


@dataclasses.dataclass(frozen=True)
class ScanOptions:
    """Layout-specific options of :func:`~spkid.data.layouts.registry.load_dataset`."""

    pattern: str | None = None  # file-name regex with (?P<speaker>...) or a preset ("pattern" layout)
    mic: str = "mic1"  # VCTK 0.92 microphone
    split_file: str | os.PathLike | None = None  # VoxCeleb1 iden_split.txt (default: ROOT/iden_split.txt)

    def filled(self, extra: Mapping[str, object]) -> "ScanOptions":
        """These options with those left unset (empty) taken from ``extra`` (what detection found)."""
        return dataclasses.replace(self, **{k: v for k, v in extra.items() if not getattr(self, k)})


@dataclasses.dataclass
class Scan:
    """A scanned dataset before splitting: utterances (paths relative to ``base``) with their speakers.

    ``official`` is the dataset's own split rule (e.g. FSDD's), used unless the caller asks for patterns.
    """

    base: Path
    utterances: list[Utterance]
    notes: list[str] = dataclasses.field(default_factory=list)
    speaker_info: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    official: Callable[[Utterance], str] | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """One dataset layout.

    ``source``: whether ``load_dataset``'s root is a ``"dir"`` or a ``"file"``. ``detect(root)`` returns
    options (a possibly empty dict, e.g. ``{"pattern": "fsdd"}``) when ``root`` looks like this layout,
    else None; layouts without ``detect`` are never chosen by ``layout="auto"``. ``rank`` orders detection
    (lower first: specific markers before generic trees) and the list of layout names. ``hint`` says what
    ``detect`` looks for, for the error when no layout matches.
    """

    name: str
    load: Callable[[Path, ScanOptions], Manifest | Scan]
    detect: Callable[[Path], dict | None] | None = None
    rank: int = 100
    hint: str = ""
    source: str = "dir"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name) or self.name == "auto":
            raise ValueError(f"bad layout name {self.name!r}")
        if self.source not in ("dir", "file"):
            raise ValueError(f"layout {self.name!r}: source must be 'dir' or 'file', got {self.source!r}")


_REGISTRY: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add ``layout`` to the registry (called by layout modules at import); returns it."""
    old = _REGISTRY.get(layout.name)
    if old is not None and old.load.__module__ != layout.load.__module__:
        raise ValueError(f"layout {layout.name!r} is registered by {old.load.__module__} already")
    _REGISTRY[layout.name] = layout
    return layout


def registered_layouts() -> list[Layout]:
    """Every registered layout, in detection order."""
    return sorted(_REGISTRY.values(), key=lambda lay: (lay.rank, lay.name))


# ---------------------------------------------------------------------------------------- scan helpers
def visible_children(root: Path) -> list[Path]:
    """Entries of ``root`` whose names do not start with a dot."""
    return [p for p in root.iterdir() if not p.name.startswith(".")]


def walk_audio(base: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Sorted relative POSIX paths of audio files under ``base`` (hidden files and folders skipped)."""
    exts = tuple(e.lower() for e in extensions)
    out = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(exts):
                out.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(out)


def usable_utterances(utts: Iterable[Utterance], notes: list[str]) -> list[Utterance]:
    """Drop files whose path cannot go in a manifest (control characters, ...) and replace whitespace in
    speaker ids by ``_``, noting both."""
    good, bad, renamed = [], [], set()
    for u in utts:
        try:
            check_relpath(u.path)
        except ValueError:
            bad.append(u.path)
            continue
        speaker = re.sub(r"\s+", "_", u.speaker.strip())
        if speaker != u.speaker:
            renamed.add(u.speaker)
        good.append(dataclasses.replace(u, speaker=speaker))
    if bad:
        notes.append(f"skipped {len(bad)} file(s) with unusable names, e.g. {bad[0]!r}")
    if renamed:
        notes.append(f"whitespace in {len(renamed)} speaker id(s) replaced by '_', e.g. {sorted(renamed)[0]!r}")
    return good
