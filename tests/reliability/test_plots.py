"""spkid.app.plots on bad input: a SpkidError that says what is wrong, and no file written."""
from __future__ import annotations

import numpy as np
import pytest

from spkid.app import plots
from spkid.errors import SpkidError


def test_history_errors(tmp_path):
    with pytest.raises(SpkidError, match="not found"):
        plots.plot_history(tmp_path / "missing.csv", tmp_path / "x.png")
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(SpkidError, match="empty.csv"):
        plots.plot_history(tmp_path / "empty.csv", tmp_path / "x.png")
    with pytest.raises(SpkidError, match="no loss or accuracy"):
        plots.plot_history({"epoch": [1]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_confusion_errors(tmp_path):
    cm = np.eye(6, dtype=int)
    labels = [f"spk{i}" for i in range(6)]
    with pytest.raises(SpkidError, match="square"):
        plots.plot_confusion(cm[:, :5], labels, tmp_path / "bad.png")
    with pytest.raises(SpkidError, match="labels"):
        plots.plot_confusion(cm, labels[:5], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_embeddings_errors(tmp_path):
    with pytest.raises(SpkidError, match="labels"):
        plots.plot_embeddings(np.zeros((4, 3)), ["a"] * 3, tmp_path / "e.png")
    with pytest.raises(SpkidError, match="projection"):
        plots.plot_embeddings(np.zeros((4, 3)), ["a"] * 4, tmp_path / "e.png", method="umap")
    with pytest.raises(SpkidError, match="NaN"):
        plots.plot_embeddings(np.full((4, 3), np.nan), ["a"] * 4, tmp_path / "e.png")


def test_attention_errors(tmp_path):
    feats = np.zeros((300, 40), dtype=np.float32)
    with pytest.raises(SpkidError, match="attention"):
        plots.plot_attention(feats, np.zeros((2, 3, 4)), tmp_path / "bad.png")
    with pytest.raises(SpkidError, match="NaN"):
        plots.plot_attention(np.full((10, 4), np.nan), np.ones((1, 2)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
