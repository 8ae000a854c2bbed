"""What the demo's and the examples' outputs must contain: real, non-blank figures and manifest rows
(read by hand here, independently of the library's own manifest reader)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A real PNG (of ``size`` (width, height) pixels, when given) with drawn content: at least 1 % of
    the pixels differ from the background colour and there are at least 8 distinct colours (axes, text,
    data). Returns the RGB pixels."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    img = imread(path)[..., :3]
    if size:
        assert (img.shape[1], img.shape[0]) == size, f"{path}: {img.shape[1]}x{img.shape[0]}, expected {size}"
    flat = np.round(img.reshape(-1, 3) * 255).astype(np.uint8)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    assert len(colours) >= 8, f"{path}: only {len(colours)} colours"
    assert 1 - counts.max() / counts.sum() >= 0.01, f"{path} is (nearly) blank"
    return img


def manifest_rows(path: Path) -> list[tuple[str, str, str]]:
    """(split, speaker, relpath) of every utterance line of a ``split speaker relpath`` manifest."""
    rows = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            split, speaker, rel = line.split(" ", 2)
            rows.append((split, speaker, rel))
    return rows
