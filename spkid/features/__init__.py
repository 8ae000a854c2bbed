"""Log-mel filterbanks and MFCCs (H. Fayek's recipe) and their :class:`FeatureConfig`.

``api`` holds the public functions, ``mel`` the recipe's grids (mel scale, filterbank, frame counts),
``config`` the settings; ``_kernel`` is the private fast path. Public names are imported lazily:
``import spkid.features`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "FeatureConfig": "config",
    "EPS": "mel",
    "mel_filterbank": "mel",
    "n_frames": "mel",
    "frame_params": "mel",
    "fbank": "api",
    "fbank_batch": "api",
    "fbank_from_config": "api",
    "mfcc": "api",
    "extract_features": "api",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
