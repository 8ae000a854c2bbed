"""Audio input: decode, mix down, resample and validate recordings (soundfile, soxr).

Public names are imported lazily: ``import spkid.audio`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "AudioInfo": "io",
    "info": "io",
    "load_audio": "io",
    "load_audio_with_rate": "io",
    "resample": "io",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
