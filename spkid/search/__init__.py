"""Embeddings to names: k-nearest-neighbour speaker search and enrolment galleries.

Public names are imported lazily: ``import spkid.search`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "SpeakerIndex": "index",
    "as_embeddings": "index",
    "l2_normalize": "index",
    "Gallery": "gallery",
    "Identification": "gallery",
    "Match": "gallery",
    "Neighbour": "gallery",
    "open_gallery": "gallery",
    "check_gallery": "gallery",
    "gallery_metadata": "gallery",
    "fingerprint": "gallery",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
