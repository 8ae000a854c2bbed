"""Verification trial lists and score files (the VoxCeleb conventions).

A trial list has one trial per line, ``label path1 path2`` -- the format of VoxCeleb1-O/E/H
(``veri_test.txt``, ``list_test_all.txt``, ``list_test_hard.txt``) and of their cleaned versions
(``*_cleaned.txt`` / ``-clean``), Nagrani et al. 2017 and Chung et al., "VoxCeleb2", Interspeech 2018.
Label ``1`` is a target trial (same speaker), ``0`` a non-target one. Dialects read alike:

- any run of spaces / tabs between fields, CRLF line ends, a UTF-8 byte-order mark, blank lines and
  ``#`` comment lines;
- the Kaldi / NIST order ``path1 path2 label`` with the words ``target`` / ``nontarget``
  (also ``true`` / ``false``; a label is recognised in the first or the last column);
- ``path1 path2`` alone: an unlabelled list (scores can be written, no EER).

A score file has one line ``score path1 path2`` per trial, in the order of the list
(:func:`write_scores`, atomic; :func:`read_scores`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from spkid.errors import TrialsError
from spkid.fileio import atomic_write_text, read_file_bytes

__all__ = ["TrialList", "parse_trials", "read_trials", "write_scores", "read_scores"]

_LABELS = {"1": 1, "0": 0, "target": 1, "nontarget": 0, "non-target": 0, "true": 1, "false": 0,
           "tgt": 1, "imp": 0, "impostor": 0}


@dataclasses.dataclass(frozen=True)
class TrialList:
    """Trials ``left[i]`` vs ``right[i]`` (paths as written in the list) with ``labels`` (n,) int8:
    1 target, 0 non-target, -1 unlabelled. ``path``: the list's file (or None)."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    labels: np.ndarray
    path: str | None = None

    def __len__(self) -> int:
        return len(self.left)

    @property
    def labelled(self) -> bool:
        """Whether every trial has a label (EER and minDCF can be computed)."""
        return bool(len(self)) and bool((self.labels >= 0).all())

    def files(self) -> list[str]:
        """The distinct paths of the list, in order of first appearance."""
        return list(dict.fromkeys(p for pair in zip(self.left, self.right) for p in pair))

    def resolve(self, root: str | os.PathLike | None) -> dict[str, Path]:
        """Each distinct path -> the file it names: ``root / path`` (absolute paths are kept)."""
        base = Path(root) if root is not None else Path()
        return {p: (Path(p) if os.path.isabs(p) else base / p) for p in self.files()}

    def subset(self, keep) -> "TrialList":
        """The trials where the boolean mask ``keep`` (n,) is true."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        return TrialList(tuple(self.left[i] for i in idx), tuple(self.right[i] for i in idx), self.labels[keep],
                         self.path)


def _label(word: str) -> int | None:
    return _LABELS.get(word.lower())


def parse_trials(text: str, path: str | os.PathLike | None = None) -> TrialList:
    """Parse the text of a trial list (see the module docstring); a malformed line raises TrialsError
    naming the file and the line number."""
    left, right, labels = [], [], []
    kinds = set()
    for no, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 3 and _label(fields[0]) is not None:
            lab, a, b = _label(fields[0]), fields[1], fields[2]
            kinds.add("first")
        elif len(fields) == 3 and _label(fields[2]) is not None:
            a, b, lab = fields[0], fields[1], _label(fields[2])
            kinds.add("last")
        elif len(fields) == 2 and not {"0", "1"} & set(fields):  # "1 a.wav": a label with one path
            (a, b), lab = fields, -1
            kinds.add("none")
        else:
            raise TrialsError(f"line {no}: expected 'label path1 path2' (label 1/0 or target/nontarget), got "
                              f"{line.strip()[:120]!r}", path=path)
        left.append(a)
        right.append(b)
        labels.append(lab)
    if not left:
        raise TrialsError("no trials in the list", path=path)
    if len(kinds) > 1:
        raise TrialsError(f"mixed line formats ({', '.join(sorted(kinds))} label columns) in one list", path=path)
    return TrialList(tuple(left), tuple(right), np.asarray(labels, dtype=np.int8),
                     None if path is None else os.fspath(path))


def read_trials(path: str | os.PathLike) -> TrialList:
    """Read a trial list file (see :func:`parse_trials`)."""
    raw = read_file_bytes(path, "trial list", TrialsError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrialsError(f"trial list is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    return parse_trials(text, path)


def write_scores(path: str | os.PathLike, scores: Sequence[float], left: Sequence[str], right: Sequence[str]) -> Path:
    """Write ``score path1 path2`` lines atomically (scores with 6 decimals); returns the path."""
    s = np.asarray(scores, dtype=np.float64)
    if not (s.shape == (len(left),) == (len(right),)):
        raise TrialsError(f"{s.shape[0] if s.ndim else 0} scores for {len(left)} / {len(right)} trials", path=path)
    if not np.isfinite(s).all():
        raise TrialsError("refusing to write non-finite scores", path=path)
    return atomic_write_text(path, "".join(f"{v:.6f} {a} {b}\n" for v, a, b in zip(s.tolist(), left, right)))


def read_scores(path: str | os.PathLike) -> tuple[np.ndarray, list[str], list[str]]:
    """A score file as ``(scores (n,) float64, path1s, path2s)``."""
    text = read_file_bytes(path, "score file", TrialsError).decode("utf-8", errors="replace")
    scores, left, right = [], [], []
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            value = math.nan
        if len(fields) != 3 or not math.isfinite(value):
            raise TrialsError(f"line {no}: expected 'score path1 path2', got {line.strip()[:120]!r}", path=path)
        scores.append(value)
        left.append(fields[1])
        right.append(fields[2])
    return np.asarray(scores, dtype=np.float64), left, right
