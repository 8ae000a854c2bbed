"""Speaker id <-> class index (:class:`LabelMap`), saved as ``labels.json`` with caches and models.

The file format (``spkid-labels`` version 1) is a JSON object
``{"format": "spkid-labels", "version": 1, "speakers": ["id10001", ...]}``: class ``i`` is
``speakers[i]``, the training speakers in sorted order for a map made by :meth:`LabelMap.from_manifest`.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Mapping, Sequence

from spkid.errors import SplitError
from spkid.fileio import atomic_write_text, check_format, read_json_file
from spkid.data.manifest import Manifest

__all__ = ["LabelMap"]


class LabelMap:
    """Speaker id <-> class index, over the sorted training speakers; saved as JSON with caches and models."""

    FORMAT = "spkid-labels"
    VERSION = 1

    def __init__(self, speakers: Sequence[str]):
        speakers = list(speakers)
        if len(set(speakers)) != len(speakers):
            dup = sorted(s for s, c in Counter(speakers).items() if c > 1)
            raise SplitError(f"duplicate speaker id(s) in label map: {', '.join(dup[:10])}")
        if not all(isinstance(s, str) and s for s in speakers):
            raise SplitError("speaker ids in a label map must be non-empty strings")
        self._speakers = tuple(speakers)
        self._index = {s: i for i, s in enumerate(self._speakers)}

    @classmethod
    def from_speakers(cls, speakers: Iterable[str]) -> "LabelMap":
        """Label map over the sorted unique ``speakers``."""
        return cls(sorted(set(speakers)))

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "LabelMap":
        """Label map over the manifest's training speakers."""
        return cls.from_speakers(u.speaker for u in manifest.split("train"))

    @property
    def speakers(self) -> list[str]:
        return list(self._speakers)

    def index(self, speaker: str) -> int:
        try:
            return self._index[speaker]
        except KeyError:
            raise SplitError(f"speaker {speaker!r} is not in the label map ({len(self)} training speakers)") from None

    def speaker(self, i: int) -> str:
        if not 0 <= int(i) < len(self._speakers):
            raise SplitError(f"class index {i} out of range 0..{len(self._speakers) - 1}")
        return self._speakers[int(i)]

    def __len__(self) -> int:
        return len(self._speakers)

    def __contains__(self, speaker: object) -> bool:
        return speaker in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other._speakers == self._speakers

    def __hash__(self) -> int:
        return hash(self._speakers)

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} speakers)"

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "version": self.VERSION, "speakers": list(self._speakers)}

    @classmethod
    def from_dict(cls, data: Mapping, path: str | os.PathLike | None = None) -> "LabelMap":
        check_format(data, cls.FORMAT, cls.VERSION, "label map", error=SplitError, path=path)
        speakers = data.get("speakers")
        if not isinstance(speakers, list):
            raise SplitError("label map has no 'speakers' list", path=path)
        try:
            return cls(speakers)
        except SplitError as exc:
            raise SplitError(exc.problem, path=path) from None

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        return cls.from_dict(read_json_file(path, "label map", SplitError), path=path)
