"""Split rules: which of ``train`` / ``val`` / ``test`` each utterance belongs to.

- :func:`assign_splits`: a seeded per-file hash split for datasets without an official one; a file's
  split depends only on ``sha1(seed, path)``, so adding files moves no existing one.
- :func:`split_by` / :func:`split_by_regex`: a rule per utterance, e.g. file names matching a pattern.
- :func:`fsdd_split`: the Free Spoken Digit Dataset's standard split (recording index 0-4 test).
- :func:`check_closed_set`: closed-set identification needs every val/test speaker in train.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Callable, Iterable

from spkid.errors import SplitError
from spkid.data.manifest import SPLITS, Manifest, Utterance

__all__ = ["FSDD_PATTERN", "assign_splits", "split_by", "split_by_regex", "fsdd_split", "check_closed_set"]

# Free Spoken Digit Dataset file names: {digit}_{speaker}_{index}.wav
FSDD_PATTERN = r"(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)\.wav"


def _unit(seed: int, path: str) -> float:
    """Stable pseudo-random number in [0, 1) from (seed, path)."""
    digest = hashlib.sha1(f"{seed}:{path}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    utterances: Iterable[Utterance], *, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> list[Utterance]:
    """Seeded per-file split for datasets without an official one.

    Each file's split depends only on ``sha1(seed, path)``, so no file lands in two parts and adding
    files moves no existing one. Every speaker keeps at least one training file, so closed-set
    identification stays possible: if the draw left a speaker none, its file with the highest hash
    goes to train (the one exception to stability: a later file drawn into train releases it).
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SplitError(f"split fractions must satisfy 0 <= val, test and val + test < 1; got val={val}, test={test}")
    by_speaker: dict[str, list[tuple[float, Utterance]]] = defaultdict(list)
    for u in utterances:
        by_speaker[u.speaker].append((_unit(seed, u.path), u))
    out = []
    for speaker in sorted(by_speaker):
        drawn = []
        for x, u in by_speaker[speaker]:
            split = "test" if x < test else "val" if x < test + val else "train"
            drawn.append((x, u.with_split(split)))
        if all(u.split != "train" for _, u in drawn):
            top = max(range(len(drawn)), key=lambda i: drawn[i][0])
            drawn[top] = (drawn[top][0], drawn[top][1].with_split("train"))
        out.extend(u for _, u in drawn)
    return sorted(out, key=lambda u: u.path)


def split_by(utterances: Iterable[Utterance], rule: Callable[[Utterance], str]) -> list[Utterance]:
    """Assign each utterance the split ``rule(utt)`` returns (``"train"``, ``"val"`` or ``"test"``)."""
    out = []
    for u in utterances:
        split = rule(u)
        if split not in SPLITS:
            raise SplitError(f"split rule returned {split!r} for {u.path!r}; valid splits: {', '.join(SPLITS)}")
        out.append(u.with_split(split))
    return out


def split_by_regex(
    utterances: Iterable[Utterance], *, test: str | None = None, val: str | None = None
) -> list[Utterance]:
    """Files whose name fully matches ``test`` go to test, ``val`` to val, the rest to train."""
    rx = {}
    for name, pattern in (("test", test), ("val", val)):
        if pattern is not None:
            try:
                rx[name] = re.compile(pattern)
            except re.error as exc:
                raise SplitError(f"invalid {name} pattern {pattern!r}: {exc}") from None

    def rule(u: Utterance) -> str:
        fname = u.path.rsplit("/", 1)[-1]
        return next((s for s, r in rx.items() if r.fullmatch(fname)), "train")

    return split_by(utterances, rule)


def fsdd_split(utt: Utterance) -> str:
    """FSDD standard split rule: take index 0-4 -> test, 5-49 -> train."""
    m = re.fullmatch(FSDD_PATTERN, utt.path.rsplit("/", 1)[-1])
    if not m:
        raise SplitError(f"{utt.path!r} is not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav)")
    return "test" if int(m.group("index")) < 5 else "train"


def check_closed_set(manifest: Manifest) -> None:
    """Closed-set identification needs every val/test speaker in train; SplitError lists the others."""
    train = {u.speaker for u in manifest.split("train")}
    if not train:
        raise SplitError(f"the manifest has no training utterances ({manifest.summary()})")
    unseen = sorted({u.speaker for u in manifest if u.split != "train"} - train)
    if unseen:
        shown = ", ".join(unseen[:20]) + (f", ... ({len(unseen)} in all)" if len(unseen) > 20 else "")
        raise SplitError(
            f"closed-set identification needs every val/test speaker in train; "
            f"{len(unseen)} speaker(s) appear only in val/test: {shown}"
        )
