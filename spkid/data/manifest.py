"""Utterance records, the :class:`Manifest` of a dataset, and the spkid manifest text format.

A manifest file (``spkid manifest v1``) is UTF-8 text, one utterance per line::

    # spkid manifest v1: split speaker relpath (the path is the rest of the line)
    # root: /data/vctk/wav48
    train p225 p225/p225_001.wav

``split`` is ``train``, ``val`` or ``test``; ``speaker`` has no whitespace and does not start with ``#``;
``relpath`` is a clean POSIX path relative to the dataset root (:func:`check_relpath`) and may contain
spaces. ``#`` lines are comments; the first ``# root:`` line names the dataset root. A file is listed
once, in one split. :func:`write_manifest` writes only what :func:`read_manifest` reads back identically.

The line readers here (:func:`read_lines`, :func:`check_unique`) are shared with the split-file parsers
of :mod:`spkid.data.layouts`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from spkid.errors import SplitError
from spkid.fileio import atomic_write_text, read_file_bytes

__all__ = [
    "SPLITS",
    "AUDIO_EXTENSIONS",
    "MANIFEST_HEADER",
    "Utterance",
    "Manifest",
    "read_manifest",
    "write_manifest",
    "check_relpath",
]

SPLITS = ("train", "val", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".aac", ".aiff", ".aif", ".sph")
MANIFEST_HEADER = "# spkid manifest v1: split speaker relpath (the path is the rest of the line)"
FIELD_SEP = re.compile(r"[ \t]+")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


# --------------------------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class Utterance:
    """One audio file: ``path`` is POSIX and relative to the dataset root."""

    path: str
    speaker: str
    split: str = "train"

    def with_split(self, split: str) -> "Utterance":
        return dataclasses.replace(self, split=split)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Every utterance of a dataset with its speaker and split; ``root`` is the folder paths start from.

    ``notes`` are human-readable remarks from the scan (skipped files, speakers missing a microphone);
    ``speaker_info`` is optional per-speaker metadata (e.g. VCTK's age, gender, accent).
    """

    root: Path
    utterances: tuple[Utterance, ...]
    notes: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    speaker_info: Mapping[str, Mapping[str, str]] = dataclasses.field(
        default_factory=dict, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "utterances", tuple(self.utterances))

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def split(self, name: str) -> list[Utterance]:
        """Utterances of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise SplitError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        return [u for u in self.utterances if u.split == name]

    @property
    def speakers(self) -> list[str]:
        """Sorted ids of every speaker in any split."""
        return sorted({u.speaker for u in self.utterances})

    def counts(self) -> dict[str, int]:
        """Number of utterances per split (all three keys present)."""
        c = Counter(u.split for u in self.utterances)
        return {s: c.get(s, 0) for s in SPLITS}

    def path_of(self, utt: Utterance | str) -> Path:
        """Absolute path of an utterance (or of a relpath)."""
        return self.root / (utt.path if isinstance(utt, Utterance) else utt)

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{len(self)} utterances from {len(self.speakers)} speakers "
            f"(train {c['train']}, val {c['val']}, test {c['test']}) under {self.root}"
        )


# ---------------------------------------------------------------------------------- line-level checks
def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; BOM and CR stripped; SplitError names file + line."""
    data = read_file_bytes(path, what, SplitError)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SplitError(f"line {n}: not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
        out.append((n, line[:-1] if line.endswith("\r") else line))
    return out


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it is a clean relative POSIX path; raise ValueError saying why not."""
    if not relpath:
        raise ValueError("empty path")
    if _BAD_CHARS.search(relpath):
        raise ValueError(f"path {relpath!r} contains a backslash or control character")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise ValueError(f"absolute path {relpath!r}; paths must be relative to the dataset root")
    parts = relpath.split("/")
    if ".." in parts:
        raise ValueError(f"path {relpath!r} escapes the dataset root ('..')")
    if any(p in ("", ".") for p in parts):
        raise ValueError(f"path {relpath!r} has an empty or '.' component")
    if relpath != relpath.strip():
        raise ValueError(f"path {relpath!r} starts or ends with whitespace")
    return relpath


def check_speaker(speaker: str) -> str:
    """Return ``speaker`` if it can go in a manifest line; raise ValueError saying why not."""
    if not speaker or re.search(r"\s", speaker) or _BAD_CHARS.search(speaker) or speaker.startswith("#"):
        raise ValueError(f"speaker id {speaker!r} must be non-empty, without whitespace, not start with '#'")
    return speaker


def check_unique(utterances: Iterable[tuple[int, Utterance]], path: Path) -> list[Utterance]:
    """Reject duplicate entries and files listed in two splits (line numbers in the message)."""
    seen: dict[str, tuple[int, str]] = {}
    out = []
    for n, u in utterances:
        if u.path in seen:
            first, split = seen[u.path]
            if split == u.split:
                raise SplitError(f"line {n}: duplicate entry {u.path!r} (first on line {first})", path=path)
            raise SplitError(
                f"line {n}: {u.path!r} is in {u.split!r} but line {first} puts it in {split!r}; "
                "a file must be in one split only",
                path=path,
            )
        seen[u.path] = (n, u.split)
        out.append(u)
    return out


# ------------------------------------------------------------------------------------------- manifests
def write_manifest(path: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``split speaker relpath`` lines (atomically); :func:`read_manifest` reads it back identically."""
    lines = [MANIFEST_HEADER, f"# root: {Path(manifest.root).resolve()}"]
    for u in manifest.utterances:
        try:
            check_relpath(u.path)
            check_speaker(u.speaker)
        except ValueError as exc:
            raise SplitError(f"cannot write manifest entry: {exc}", path=path) from None
        if u.split not in SPLITS:
            raise SplitError(f"cannot write manifest entry {u.path!r}: unknown split {u.split!r}", path=path)
        lines.append(f"{u.split} {u.speaker} {u.path}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    default_root: str | os.PathLike | None = None,
) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (or by hand), validating every line.

    The dataset root is ``root`` if given, else the ``# root:`` header line, else ``default_root``,
    else the manifest's folder.
    """
    path = Path(path)
    header_root, parsed = None, []
    for n, line in read_lines(path, "manifest"):
        text = line.lstrip(" \t")
        if text.startswith("#"):
            if text.startswith("# root:") and header_root is None:
                header_root = text[len("# root:"):].strip()
            continue
        text = text.rstrip(" \t")
        if not text:
            continue
        fields = FIELD_SEP.split(text, maxsplit=2)
        if len(fields) != 3:
            raise SplitError(f"line {n}: expected 'split speaker relpath', got {text[:80]!r}", path=path)
        split, speaker, rel = fields
        if split not in SPLITS:
            raise SplitError(f"line {n}: unknown split {split[:20]!r}; valid splits: {', '.join(SPLITS)}", path=path)
        try:
            check_relpath(rel)
            check_speaker(speaker)
        except ValueError as exc:
            raise SplitError(f"line {n}: {exc}", path=path) from None
        parsed.append((n, Utterance(rel, speaker, split)))
    utts = check_unique(parsed, path)
    if not utts:
        raise SplitError("manifest lists no utterances (empty file?)", path=path)
    base = root if root is not None else header_root or default_root or path.parent
    return Manifest(base, tuple(utts))
