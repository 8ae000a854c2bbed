"""spkid.app.plots: each figure is a real PNG of the expected pixel size with visible content."""
from __future__ import annotations

import numpy as np
import pytest

from spkid.app import plots


def _image(path, size):
    """Read a PNG and check its size (width, height) in pixels and that it is not blank."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert (img.shape[1], img.shape[0]) == size
    assert img[..., :3].var() > 1e-4, "blank image"
    assert not list(path.parent.glob("*.tmp"))
    return img


def test_history_from_dict_and_csv(tmp_path):
    hist = {"epoch": [1, 2, 3], "loss": [2.0, 1.5, 1.1], "val_loss": [2.1, 1.7, 1.4],
            "acc": [0.2, 0.5, 0.7], "val_acc": [0.1, 0.4, 0.6]}
    p = plots.plot_history(hist, tmp_path / "h.png")
    assert p == tmp_path / "h.png"
    a = _image(p, (1000, 400))
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,val_loss,acc,val_acc,time\n"
                   + "".join(f"{i + 1},{l},{vl},{x},{vx},t{i}\n" for i, (l, vl, x, vx) in
                             enumerate(zip(hist["loss"], hist["val_loss"], hist["acc"], hist["val_acc"]))))
    assert plots.read_history(csv)["val_acc"] == hist["val_acc"]
    b = _image(plots.plot_history(csv, tmp_path / "sub" / "h2.png"), (1000, 400))
    assert np.array_equal(a, b)  # same numbers, same picture
    c = _image(plots.plot_history({**hist, "val_acc": [0.9, 0.9, 0.95]}, tmp_path / "h3.png"), (1000, 400))
    assert not np.array_equal(a, c)


def test_confusion(tmp_path, rng):
    cm = rng.integers(0, 5, (6, 6)) + np.diag([20] * 6)
    labels = [f"spk{i}" for i in range(6)]
    _image(plots.plot_confusion(cm, labels, tmp_path / "cm.png", dpi=50), (300, 250))  # 5 x 5 in + 1 in colour bar, at 50 dpi


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embeddings(tmp_path, rng, method):
    centres = rng.normal(0, 3, (4, 16))
    labels = np.repeat(["a", "b", "c", "d"], 10)
    emb = centres[np.repeat(np.arange(4), 10)] + rng.normal(0, 0.5, (40, 16))
    img = _image(plots.plot_embeddings(emb, labels, tmp_path / f"{method}.png", method=method), (700, 600))
    assert img[..., :3].std(axis=(0, 1)).max() > 0.05  # coloured points, not a grey page


def test_attention(tmp_path, rng):
    feats = rng.normal(size=(300, 40)).astype(np.float32)
    att = rng.dirichlet(np.ones(19), size=4)
    _image(plots.plot_attention(feats, att, tmp_path / "att.png", dpi=80), (800, 480))


def test_upsample_attention_keeps_shape_and_peaks():
    att = np.zeros((2, 10))
    att[0, 2] = att[1, 7] = 1.0
    up = plots.upsample_attention(att, 100)
    assert up.shape == (2, 100)
    assert 20 <= up[0].argmax() < 30 and 70 <= up[1].argmax() < 80
