"""VoxCeleb layouts: VoxCeleb1 with its official identification split, and VoxCeleb1/2 trees.

- ``"voxceleb1-split"``: VoxCeleb1 identification with its official ``iden_split.txt``
  (Nagrani et al., *VoxCeleb: a large-scale speaker identification dataset*, Interspeech 2017);
  lines ``1 id10001/1zcIwhmdeo4/00001.wav`` (1 train, 2 val, 3 test), paths relative to ``wav/``.
  Chosen by ``layout="auto"`` when ``ROOT/iden_split.txt`` exists.
- ``"voxceleb"``: VoxCeleb1/2 trees ``[wav|aac/]idNNNNN/<video>/NNNNN.wav|.m4a`` (Chung et al.,
  *VoxCeleb2: deep speaker recognition*, Interspeech 2018), split by the seeded per-file rule.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from spkid.errors import SplitError
from spkid.data.manifest import FIELD_SEP, Manifest, Utterance, check_relpath, check_unique, read_lines
from spkid.data.layouts.base import Layout, Scan, ScanOptions, register_layout, visible_children, walk_audio

__all__ = ["IDEN_SPLIT_CODES", "parse_iden_split", "scan_voxceleb"]

IDEN_SPLIT_CODES = {"1": "train", "2": "val", "3": "test"}


# ------------------------------------------------------------------------------------------- VoxCeleb1
def parse_iden_split(path: str | os.PathLike) -> list[Utterance]:
    """Parse VoxCeleb1's ``iden_split.txt``: ``<1|2|3> <speaker>/<video>/<file>`` per line.

    Tolerates runs of spaces/tabs, CRLF, blank lines and a UTF-8 BOM; anything else raises
    :class:`SplitError` naming the file and line. The speaker is the first path component.
    """
    path = Path(path)
    parsed = []
    for n, line in read_lines(path, "split file"):
        text = line.strip(" \t")
        if not text:
            continue
        fields = FIELD_SEP.split(text)
        if len(fields) != 2:
            raise SplitError(
                f"line {n}: expected '<1|2|3> <relative path>', got {len(fields)} column(s): {text[:80]!r}",
                path=path,
            )
        code, rel = fields
        if code not in IDEN_SPLIT_CODES:
            raise SplitError(f"line {n}: unknown split code {code[:20]!r} (expected 1, 2 or 3)", path=path)
        try:
            check_relpath(rel)
        except ValueError as exc:
            raise SplitError(f"line {n}: {exc}", path=path) from None
        if "/" not in rel:
            raise SplitError(f"line {n}: {rel!r} has no speaker folder (expected id/video/file)", path=path)
        parsed.append((n, Utterance(rel, rel.split("/", 1)[0], IDEN_SPLIT_CODES[code])))
    out = check_unique(parsed, path)
    if not out:
        raise SplitError("split file lists no utterances", path=path)
    return out


def _load_voxceleb1_split(root: Path, options: ScanOptions) -> Manifest:
    split_path = Path(options.split_file) if options.split_file is not None else root / "iden_split.txt"
    utts = parse_iden_split(split_path)
    base = root / "wav" if (root / "wav").is_dir() else root
    present = [u for u in utts if (base / u.path).is_file()]
    notes = []
    if len(present) < len(utts):
        missing = [u.path for u in utts if not (base / u.path).is_file()]
        notes.append(
            f"{len(missing)} of {len(utts)} files listed in {split_path.name} are missing under {base} "
            f"(skipped), e.g. {', '.join(missing[:3])}"
        )
    if not present:
        raise SplitError(f"none of the {len(utts)} files it lists exists under {base}", path=split_path)
    return Manifest(base, tuple(present), notes=tuple(notes))


def _detect_voxceleb1_split(root: Path) -> dict | None:
    return {} if (root / "iden_split.txt").is_file() else None


# ----------------------------------------------------------------------------------- VoxCeleb1/2 trees
def scan_voxceleb(root: str | os.PathLike) -> tuple[Path, list[Utterance]]:
    """VoxCeleb1/2 tree: ``[wav|aac/]idNNNNN/<video>/NNNNN.wav|.m4a`` -> (base folder, utterances)."""
    root = Path(root)
    base = next((root / d for d in ("wav", "aac") if (root / d).is_dir()), root)
    utts = []
    for rel in walk_audio(base, (".wav", ".m4a")):
        parts = rel.split("/")
        if len(parts) == 3 and re.fullmatch(r"id\d+", parts[0]):
            utts.append(Utterance(rel, parts[0]))
    return base, utts


def _load_voxceleb(root: Path, options: ScanOptions) -> Scan:
    base, utts = scan_voxceleb(root)
    return Scan(base, utts)


def _detect_voxceleb(root: Path) -> dict | None:
    found = any(p.is_dir() and (p.name in ("wav", "aac") or re.fullmatch(r"id\d+", p.name))
                for p in visible_children(root))
    return {} if found else None


register_layout(Layout("voxceleb1-split", _load_voxceleb1_split, _detect_voxceleb1_split, rank=10,
                       hint="iden_split.txt"))
register_layout(Layout("voxceleb", _load_voxceleb, _detect_voxceleb, rank=30,
                       hint="wav/, aac/ or idNNNNN/ folders"))
