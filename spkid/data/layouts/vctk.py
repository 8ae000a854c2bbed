"""The ``"vctk"`` layout: the CSTR VCTK corpus, releases 0.80 and 0.92 (Yamagishi et al., 2019).

- 0.80: ``wav48/p225/p225_001.wav``;
- 0.92: ``wav48_silence_trimmed/p225/p225_001_mic1.flac`` (two microphones; one is used, ``mic``).

``speaker-info.txt`` (``ID AGE GENDER ACCENTS REGION``) becomes ``Manifest.speaker_info``. VCTK has no
official split: the seeded per-file rule decides. Chosen by ``layout="auto"`` when ``ROOT/wav48/`` or
``ROOT/wav48_silence_trimmed/`` exists.
"""
from __future__ import annotations

import os
from pathlib import Path

from spkid.errors import SplitError
from spkid.data.manifest import Manifest, Utterance, read_lines
from spkid.data.layouts.base import Layout, Scan, ScanOptions, register_layout, walk_audio

__all__ = ["read_speaker_info", "scan_vctk"]


def read_speaker_info(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """VCTK ``speaker-info.txt`` -> {speaker: {age, gender, accent, region}}.

    Handles 0.80 ids (``225``) and 0.92 ids (``p225``); rows that do not parse are skipped.
    """
    info: dict[str, dict[str, str]] = {}
    for _, line in read_lines(Path(path), "speaker info"):
        fields = line.split()
        if len(fields) < 3 or fields[0].upper() == "ID" or not fields[1].isdigit():
            continue
        sid = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
        info[sid] = {
            "age": fields[1],
            "gender": fields[2],
            "accent": fields[3] if len(fields) > 3 else "",
            "region": " ".join(fields[4:]),
        }
    return info


def scan_vctk(root: str | os.PathLike, *, mic: str = "mic1") -> Manifest:
    """VCTK 0.80 (``wav48/``) or 0.92 (``wav48_silence_trimmed/``, one ``mic``); split = all train.

    Speakers that have no file for ``mic`` are listed in ``Manifest.notes`` (e.g. p280 has no mic2).
    """
    root = Path(root)
    if mic not in ("mic1", "mic2"):
        raise SplitError(f"VCTK microphone must be 'mic1' or 'mic2', got {mic!r}")
    notes: list[str] = []
    if (root / "wav48_silence_trimmed").is_dir():
        base, suffix = root / "wav48_silence_trimmed", f"_{mic}.flac"
    elif (root / "wav48").is_dir():
        base, suffix = root / "wav48", ".wav"
    else:
        raise SplitError("not a VCTK folder: no wav48/ or wav48_silence_trimmed/ inside", path=root)
    utts, speakers_seen = [], set()
    for rel in walk_audio(base):
        parts = rel.split("/")
        if len(parts) != 2:
            continue
        speakers_seen.add(parts[0])
        if parts[1].endswith(suffix):
            utts.append(Utterance(rel, parts[0]))
    without = sorted(speakers_seen - {u.speaker for u in utts})
    if without:
        notes.append(f"{len(without)} speaker(s) have no {suffix!r} files and are left out: {', '.join(without)}")
    info_path = root / "speaker-info.txt"
    info = read_speaker_info(info_path) if info_path.is_file() else {}
    return Manifest(base, tuple(utts), notes=tuple(notes), speaker_info=info)


def _load(root: Path, options: ScanOptions) -> Scan:
    scanned = scan_vctk(root, mic=options.mic)
    return Scan(scanned.root, list(scanned.utterances), list(scanned.notes), scanned.speaker_info)


def _detect(root: Path) -> dict | None:
    return {} if (root / "wav48_silence_trimmed").is_dir() or (root / "wav48").is_dir() else None


register_layout(Layout("vctk", _load, _detect, rank=20, hint="wav48/ or wav48_silence_trimmed/"))
