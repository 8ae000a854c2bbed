"""The ``"pattern"`` layout: the speaker is read from each file name by a regex with a ``speaker`` group.

The regex must match the whole file name (or the whole relative path, if it contains ``/``). Presets
(:data:`PATTERN_PRESETS`): ``"fsdd"``, the Free Spoken Digit Dataset ``{digit}_{speaker}_{index}.wav``
(Jackson et al., github.com/Jakobovski/free-spoken-digit-dataset), which keeps its standard split
(index 0-4 test, :func:`~spkid.data.splitting.fsdd_split`); ``"librispeech"``,
``{speaker}-{chapter}-{utterance}.flac`` (Panayotov et al., ICASSP 2015). ``layout="auto"`` picks a
preset when every audio file directly in ``ROOT`` matches it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from spkid.errors import SplitError
from spkid.data.manifest import AUDIO_EXTENSIONS, Utterance
from spkid.data.splitting import FSDD_PATTERN, fsdd_split
from spkid.data.layouts.base import Layout, Scan, ScanOptions, register_layout, visible_children, walk_audio

__all__ = ["PATTERN_PRESETS", "scan_pattern"]

PATTERN_PRESETS = {
    # Free Spoken Digit Dataset: {digit}_{speaker}_{index}.wav; standard split: index 0-4 test.
    "fsdd": FSDD_PATTERN,
    # LibriSpeech: {speaker}-{chapter}-{utterance}.flac
    "librispeech": r"(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<utt>\d+)\.flac",
}
_OFFICIAL_SPLITS = {"fsdd": fsdd_split}


def _compile_pattern(pattern: str) -> re.Pattern:
    pattern = PATTERN_PRESETS.get(pattern, pattern)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise SplitError(f"invalid file-name pattern {pattern!r}: {exc}") from None
    if "speaker" not in rx.groupindex:
        raise SplitError(f"file-name pattern {pattern!r} needs a named group (?P<speaker>...)")
    return rx


def scan_pattern(root: str | os.PathLike, pattern: str) -> tuple[list[Utterance], int]:
    """Files whose name (or relative path, if ``pattern`` contains ``/``) fully matches ``pattern``.

    ``pattern`` is a regex with a ``speaker`` named group, or a preset name from
    :data:`PATTERN_PRESETS`. Returns (utterances, number of audio files that did not match).
    """
    rx = _compile_pattern(pattern)
    on_path = "/" in rx.pattern
    utts, unmatched = [], 0
    for rel in walk_audio(Path(root)):
        m = rx.fullmatch(rel if on_path else rel.rsplit("/", 1)[-1])
        if m and m.group("speaker"):
            utts.append(Utterance(rel, m.group("speaker")))
        else:
            unmatched += 1
    return utts, unmatched


def _load(root: Path, options: ScanOptions) -> Scan:
    if not options.pattern:
        raise SplitError("layout 'pattern' needs pattern=<regex with (?P<speaker>...)> or a preset name")
    utts, unmatched = scan_pattern(root, options.pattern)
    notes = [f"{unmatched} audio file(s) do not match the file-name pattern (skipped)"] if unmatched else []
    return Scan(root, utts, notes, official=_OFFICIAL_SPLITS.get(options.pattern))


def _detect(root: Path) -> dict | None:
    names = [p.name for p in visible_children(root) if p.is_file() and p.name.lower().endswith(AUDIO_EXTENSIONS)]
    for preset, pattern in PATTERN_PRESETS.items():
        if names and all(re.fullmatch(pattern, n) for n in names):
            return {"pattern": preset}
    return None


register_layout(Layout("pattern", _load, _detect, rank=40,
                       hint=f"flat files named like {' or '.join(PATTERN_PRESETS)}"))
