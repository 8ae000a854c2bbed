"""Dataset layouts on disk: one module per layout, each registering how to detect and scan it.

:mod:`~spkid.data.layouts.registry` holds :data:`LAYOUTS`, :func:`detect_layout` and :func:`load_dataset`;
:mod:`~spkid.data.layouts.base` the :class:`Layout` record a layout module registers. Adding a layout means
adding one module here. Public names are imported lazily.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "LAYOUTS": "registry",
    "detect_layout": "registry",
    "load_dataset": "registry",
    "Layout": "base",
    "Scan": "base",
    "ScanOptions": "base",
    "register_layout": "base",
    "registered_layouts": "base",
    "IDEN_SPLIT_CODES": "voxceleb",
    "parse_iden_split": "voxceleb",
    "scan_voxceleb": "voxceleb",
    "read_speaker_info": "vctk",
    "scan_vctk": "vctk",
    "scan_folders": "folders",
    "PATTERN_PRESETS": "pattern",
    "scan_pattern": "pattern",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
