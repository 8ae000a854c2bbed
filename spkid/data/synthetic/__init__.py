"""A synthetic speech corpus for the demo, the examples and the tests (never for accuracy claims).

Public names are imported lazily: ``import spkid.data.synthetic`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "SpeakerProfile": "voices",
    "make_speakers": "voices",
    "synthesize_utterance": "voices",
    "make_corpus": "corpus",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
