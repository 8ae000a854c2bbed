"""Figures for training runs and models: learning curves, confusion matrices, embedding maps, attention.

Every function draws one PNG with matplotlib's Agg renderer (imported lazily, no display needed; pyplot's
global state is never touched), writes it atomically and returns its path. Figures have a fixed size in
pixels (``figsize * dpi``); nothing is cropped.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from spkid.errors import SpkidError
from spkid.fileio import atomic_write_bytes, read_file_bytes

__all__ = ["plot_history", "plot_confusion", "plot_embeddings", "plot_attention", "plot_det", "read_history",
           "upsample_attention"]


def _figure(figsize: tuple[float, float], dpi: int):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    """Render ``fig`` to PNG and write it atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


# --------------------------------------------------------------------------------------------- history
def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """A training history CSV (header row, one row per epoch) as ``{column: [values]}``; empty cells
    become NaN."""
    path = Path(path)
    try:
        text = read_file_bytes(path, "history file", SpkidError).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpkidError(f"cannot read history: not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) < 2:
        raise SpkidError("history CSV has no epochs (needs a header row and one row per epoch)", path=path)
    header, body = rows[0], rows[1:]
    out: dict[str, list[float]] = {}
    for j, name in enumerate(header):
        try:
            out[name] = [float(r[j]) if j < len(r) and r[j].strip() else math.nan for r in body]
        except ValueError:
            continue  # a non-numeric column (e.g. a timestamp) is not plotted
    return out


def _series(history: Mapping[str, Sequence], words: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in history.items()
            if any(w in k.lower() for w in words) and len(v) and k.lower() != "epoch"}


def plot_history(
    history: Mapping[str, Sequence[float]] | str | os.PathLike,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Loss and accuracy per epoch, train and validation curves side by side.

    ``history`` is a dict of per-epoch lists (e.g. ``loss``, ``val_loss``, ``acc``/``accuracy``,
    ``val_acc``/``top1``; an ``epoch`` column gives the x axis) or the path of such a CSV. Every column
    whose name contains ``loss`` goes to the left panel, ``acc``/``top`` to the right one.
    """
    if not isinstance(history, Mapping):
        history = read_history(history)
    losses = _series(history, ("loss",))
    accs = _series(history, ("acc", "top"))
    if not losses and not accs:
        raise SpkidError(f"history has no loss or accuracy columns (got {', '.join(history) or 'none'})")
    fig = _figure((10, 4), dpi)
    axes = fig.subplots(1, 2)
    for ax, series, ylabel in ((axes[0], losses, "loss"), (axes[1], accs, "accuracy")):
        for name, values in series.items():
            x = np.asarray(history.get("epoch", np.arange(1, len(values) + 1)), dtype=float)[: len(values)]
            style = "--" if name.lower().startswith("val") else "-"
            ax.plot(x, values, style, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend()
    if accs:
        axes[1].set_ylim(0, 1.02 if max(np.nanmax(v) for v in accs.values()) <= 1 else None)
    fig.suptitle(title or "training history")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------- confusion
def plot_confusion(
    cm,
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    normalize: bool = True,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """A confusion matrix ``cm`` (C, C) of counts (rows = true speaker, columns = predicted).

    ``normalize`` colours rows by recall (each row sums to 1); cells are annotated with counts when
    C <= 30.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise SpkidError(f"confusion matrix must be square (C, C), got shape {cm.shape}")
    if len(labels) != cm.shape[0]:
        raise SpkidError(f"{len(labels)} labels for a {cm.shape[0]}x{cm.shape[0]} confusion matrix")
    c = cm.shape[0]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = float(np.clip(0.35 * c + 2.5, 5, 16))
    fig = _figure((side + 1, side), dpi)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true speaker" if normalize else "count")
    if c <= 30:
        ticks = np.arange(c)
        ax.set_xticks(ticks, labels=list(labels), rotation=90, fontsize=8)
        ax.set_yticks(ticks, labels=list(labels), fontsize=8)
        top = shown.max() if shown.size else 1
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if shown[i, j] > 0.6 * top else "black")
    ax.set_xlabel("predicted speaker")
    ax.set_ylabel("true speaker")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"confusion matrix (accuracy {100 * acc:.1f}%)")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ embeddings
def _project(emb: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(N, D) -> (N, 2) by PCA or t-SNE (scikit-learn)."""
    n, d = emb.shape
    if d <= 2:
        return np.pad(emb, ((0, 0), (0, 2 - d)))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(emb)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)


def plot_embeddings(
    emb,
    labels: Sequence,
    path: str | os.PathLike,
    *,
    method: str = "pca",
    title: str | None = None,
    seed: int = 0,
    dpi: int = 100,
) -> Path:
    """A 2-D map of speaker embeddings ``emb`` (N, D), one colour per speaker in ``labels`` (N,).

    ``method="pca"`` (fast, linear) or ``"tsne"`` (van der Maaten & Hinton 2008; neighbourhoods, slower).
    """
    emb = np.asarray(emb, dtype=np.float64)
    labels = [str(x) for x in labels]
    if method not in ("pca", "tsne"):
        raise SpkidError(f"unknown projection {method!r}; valid: pca, tsne")
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise SpkidError(f"embeddings must be (N >= 2, D), got shape {emb.shape}")
    if len(labels) != emb.shape[0]:
        raise SpkidError(f"{len(labels)} labels for {emb.shape[0]} embeddings")
    if not np.isfinite(emb).all():
        raise SpkidError("embeddings contain NaN or Inf")
    xy = _project(emb, method, seed)
    speakers = sorted(set(labels))
    colors = _colors(len(speakers))
    fig = _figure((7, 6), dpi)
    ax = fig.add_subplot()
    lab = np.asarray(labels)
    for color, spk in zip(colors, speakers):
        m = lab == spk
        ax.scatter(xy[m, 0], xy[m, 1], s=18, color=color, label=spk, alpha=0.85, edgecolors="none")
    if len(speakers) <= 20:
        ax.legend(fontsize=7, markerscale=1.2, loc="best", ncol=2 if len(speakers) > 10 else 1)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    ax.set_title(title or f"speaker embeddings ({method.upper()}, {len(speakers)} speakers, {len(lab)} clips)")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------- attention
def upsample_attention(attention, n_frames: int) -> np.ndarray:
    """Attention weights (hops, T') stretched to (hops, n_frames) by linear interpolation between the
    centres of the T' trunk frames (each covers n_frames / T' input frames)."""
    a = np.asarray(attention, dtype=np.float64)
    t_out = a.shape[1]
    centres = (np.arange(t_out) + 0.5) * n_frames / t_out
    x = np.arange(n_frames) + 0.5
    return np.stack([np.interp(x, centres, row) for row in a])


def plot_attention(
    features,
    attention,
    path: str | os.PathLike,
    *,
    frame_shift: float = 0.01,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Self-attention weights over time drawn on the log-mel spectrogram they attend to.

    ``features`` (T, n_mels) log-mel frames every ``frame_shift`` seconds; ``attention`` (hops, T') the
    model's weights over its T' trunk frames (each hop sums to 1), upsampled to T. Top: spectrogram with
    the mean attention overlaid; bottom: each hop's weights.
    """
    x = np.asarray(features, dtype=np.float64)
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise SpkidError(f"features must be (T, n_mels), got shape {x.shape}")
    if a.ndim != 2 or a.shape[1] < 1:
        raise SpkidError(f"attention must be (hops, T'), got shape {a.shape}")
    if not (np.isfinite(x).all() and np.isfinite(a).all()):
        raise SpkidError("features or attention contain NaN or Inf")
    t, n_mels = x.shape
    up = upsample_attention(a, t) * a.shape[1] / t  # weights per input frame (each hop still sums to ~1)
    seconds = t * frame_shift
    fig = _figure((10, 6), dpi)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.imshow(x.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, n_mels),
               interpolation="nearest")
    top.set_ylabel("mel band")
    times = (np.arange(t) + 0.5) * frame_shift
    mean = up.mean(axis=0)
    twin = top.twinx()
    twin.plot(times, mean, color="cyan", linewidth=1.8, label="mean attention")
    twin.set_ylim(0, 1.1 * mean.max() if mean.max() > 0 else 1)
    twin.set_ylabel("attention")
    twin.legend(loc="upper right", fontsize=8)
    for h, (row, color) in enumerate(zip(up, _colors(len(up)))):
        bottom.plot(times, row, color=color, label=f"hop {h + 1}")
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("weight per frame")
    bottom.set_xlim(0, seconds)
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8, ncol=min(len(up), 8), loc="upper right")
    top.set_title(title or f"self-attention over the spectrogram ({len(up)} hops, {a.shape[1]} trunk frames)")
    return _save(fig, path)


def evaluation_figures(
    out_dir: str | os.PathLike,
    *,
    history,
    confusion,
    speakers: Sequence[str],
    embeddings,
    embedding_labels: Sequence,
    features,
    attention,
    frame_shift: float = 0.01,
    title: str = "",
    seed: int = 0,
) -> list[Path]:
    """The four figures of an evaluated model, written to ``out_dir``: ``history.png`` (training curves;
    skipped when ``history`` is None), ``confusion.png``, ``embeddings.png`` (t-SNE up to 3,000 points,
    else PCA) and ``attention.png`` (``attention`` (hops, T') of one clip's ``features`` (T, n_mels)).
    Used by ``spkid evaluate`` and ``spkid demo``; returns the paths written."""
    out = Path(out_dir)
    written = []
    if history is not None:
        written.append(plot_history(history, out / "history.png", title=title or None))
    written.append(plot_confusion(confusion, list(speakers), out / "confusion.png"))
    method = "tsne" if len(embedding_labels) <= 3000 else "pca"
    written.append(plot_embeddings(embeddings, list(embedding_labels), out / "embeddings.png", method=method,
                                   seed=seed))
    written.append(plot_attention(features, attention, out / "attention.png", frame_shift=frame_shift,
                                  title=f"attention: {title}" if title else None))
    return written


def plot_det(curves: Mapping[str, tuple], path: str | os.PathLike, *, title: str | None = None,
             figsize: tuple[float, float] = (6.0, 6.0), dpi: int = 100) -> Path:
    """A DET plot: for each name, ``(p_fa, p_miss)`` arrays (:func:`spkid.metrics.det_curve`) on normal-deviate
    axes (0.1 %% to 50 %%), with its EER point marked where the curve crosses the diagonal."""
    from scipy.special import ndtri

    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    lo, hi = ndtri(0.0005), ndtri(0.5)
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    for (name, (p_fa, p_miss)), color in zip(curves.items(), _colors(max(len(curves), 1))):
        x = ndtri(np.clip(np.asarray(p_fa, float), 1e-6, 1 - 1e-6))
        y = ndtri(np.clip(np.asarray(p_miss, float), 1e-6, 1 - 1e-6))
        ax.plot(x, y, color=color, label=name)
    ax.plot([lo, hi], [lo, hi], color="0.6", linestyle=":", linewidth=1, label="EER line")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(ndtri(ticks), labels)
    ax.set_yticks(ndtri(ticks), labels)
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right")
    ax.set_title(title or "detection error trade-off")
    return _save(fig, path)
