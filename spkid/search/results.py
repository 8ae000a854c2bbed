"""The answers of :meth:`Gallery.identify <spkid.search.gallery.Gallery.identify>`: a :class:`Match` (a speaker
and its centroid score), a :class:`Neighbour` (an enrolment utterance and its score) and an
:class:`Identification` per query (open-set: ``unknown`` below the threshold), each JSON-ready.
"""
from __future__ import annotations

import dataclasses

__all__ = ["Identification", "Match", "Neighbour", "UNKNOWN"]

UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Match:
    """A speaker and its cosine similarity to the query (to the speaker's centroid)."""

    speaker: str
    score: float

    def to_dict(self) -> dict:
        """``{"speaker", "score"}``, JSON-ready."""
        return {"speaker": self.speaker, "score": self.score}


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """An enrolment utterance close to the query: its speaker, id and cosine similarity."""

    speaker: str
    utterance: str
    score: float

    def to_dict(self) -> dict:
        """``{"speaker", "utterance", "score"}``, JSON-ready."""
        return {"speaker": self.speaker, "utterance": self.utterance, "score": self.score}


@dataclasses.dataclass(frozen=True)
class Identification:
    """The answer for one query.

    ``speaker`` is the best-scoring enrolled speaker, or ``None`` when ``score`` (its similarity) is
    below the threshold; ``candidates`` are the top-k speakers and ``neighbours`` the top-k
    enrolment utterances, best first.
    """

    speaker: str | None
    score: float
    candidates: tuple[Match, ...]
    neighbours: tuple[Neighbour, ...]
    threshold: float | None = None

    @property
    def is_unknown(self) -> bool:
        return self.speaker is None

    @property
    def label(self) -> str:
        """The speaker's name, or ``"unknown"``."""
        return UNKNOWN if self.speaker is None else self.speaker

    def to_dict(self) -> dict:
        """The JSON form of ``spkid identify --json`` results and of the service's ``/identify``:
        ``{"speaker": name or "unknown", "score", "unknown", "threshold", "candidates": [{"speaker",
        "score"}], "neighbours": [{"speaker", "utterance", "score"}]}``."""
        return {"speaker": self.label, "score": self.score, "unknown": self.is_unknown,
                "threshold": self.threshold, "candidates": [m.to_dict() for m in self.candidates],
                "neighbours": [n.to_dict() for n in self.neighbours]}
