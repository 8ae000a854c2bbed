"""Datasets on disk -> :class:`~spkid.data.manifest.Manifest`: layout detection and :func:`load_dataset`.

Every module of :mod:`spkid.data.layouts` registers its layouts (:func:`~spkid.data.layouts.base.register_layout`);
this module imports them all, so :data:`LAYOUTS` lists ``"auto"`` and then every layout in detection order:

- ``"manifest"``: a manifest text file written by :func:`~spkid.data.manifest.write_manifest`;
- ``"voxceleb1-split"``: VoxCeleb1 with its official ``iden_split.txt``;
- ``"vctk"``: VCTK 0.80 / 0.92;
- ``"voxceleb"``: VoxCeleb1/2 ``idNNNNN/<video>/NNNNN.wav|.m4a`` trees;
- ``"pattern"``: speaker taken from file names by a regex (presets ``"fsdd"``, ``"librispeech"``);
- ``"folders"``: one sub-folder per speaker.

Splits: ``"train"``, ``"val"``, ``"test"``. Official splits are kept (``iden_split.txt``, FSDD's, a
manifest's own); otherwise file-name patterns or the seeded per-file hash split
(:func:`~spkid.data.splitting.assign_splits`) decide.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

from spkid.errors import SplitError
from spkid.data.manifest import Manifest
from spkid.data.splitting import assign_splits, split_by, split_by_regex
from spkid.data.layouts.base import Layout, ScanOptions, registered_layouts, usable_utterances

__all__ = ["LAYOUTS", "detect_layout", "load_dataset"]

_NOT_LAYOUTS = {"base", "registry"}


def _import_layouts() -> dict[str, Layout]:
    """Import every layout module of this package (each registers its layouts) -> {name: layout}."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_LAYOUTS and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    return {layout.name: layout for layout in registered_layouts()}


_BY_NAME = _import_layouts()
LAYOUTS = ("auto", *_BY_NAME)


def detect_layout(root: str | os.PathLike) -> tuple[str, dict]:
    """Guess the layout of ``root`` -> (layout, extra keyword arguments for :func:`load_dataset`)."""
    root = Path(root)
    source = "file" if root.is_file() else "dir" if root.is_dir() else None
    if source is None:
        raise SplitError("dataset folder not found", path=root)
    candidates = [lay for lay in _BY_NAME.values() if lay.source == source and lay.detect is not None]
    for layout in candidates:
        extra = layout.detect(root)
        if extra is not None:
            return layout.name, dict(extra)
    hints = [f"{lay.hint} ({lay.name})" for lay in candidates if lay.hint]
    looked = ", ".join(hints[:-1]) + ", and " + hints[-1] if len(hints) > 1 else "".join(hints) or "nothing"
    tip = "; pass layout='pattern' with a regex for other names" if "pattern" in _BY_NAME else ""
    raise SplitError(f"no known dataset layout found: looked for {looked}{tip}", path=root)


def load_dataset(
    root: str | os.PathLike,
    layout: str = "auto",
    *,
    pattern: str | None = None,
    mic: str = "mic1",
    split_file: str | os.PathLike | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    test_pattern: str | None = None,
    val_pattern: str | None = None,
) -> Manifest:
    """Scan a dataset into a :class:`Manifest` (``layout``: one of :data:`LAYOUTS`, see the module docstring).

    Official splits are kept (VoxCeleb1 ``iden_split.txt``, FSDD index 0-4 test, a manifest's own);
    otherwise files matching ``test_pattern`` / ``val_pattern`` go to test / val when given, else the
    seeded :func:`assign_splits` (``val``, ``test`` fractions, ``seed``) decides.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise SplitError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    options = ScanOptions(pattern=pattern, mic=mic, split_file=split_file)
    if layout == "auto":
        layout, extra = detect_layout(root)
        options = options.filled(extra)
    spec = _BY_NAME[layout]
    if spec.source == "dir" and not root.is_dir():
        raise SplitError("dataset folder not found", path=root)
    found = spec.load(root, options)
    if isinstance(found, Manifest):  # the layout carries its own split
        return found
    notes = list(found.notes)
    utts = usable_utterances(found.utterances, notes)
    if not utts:
        raise SplitError(f"no audio files found for layout {layout!r}", path=found.base)
    if test_pattern or val_pattern:
        utts = split_by_regex(utts, test=test_pattern, val=val_pattern)
    elif found.official is not None:
        utts = split_by(utts, found.official)
    else:
        utts = assign_splits(utts, val=val, test=test, seed=seed)
    return Manifest(found.base, tuple(sorted(utts, key=lambda u: u.path)), notes=tuple(notes),
                    speaker_info=found.speaker_info)
