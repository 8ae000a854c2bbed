"""Use a trained checkpoint without knowing which framework made it.

``load_embedder(path)`` reads the checkpoint's metadata (framework-free), gets the backend it names
from :func:`spkid.backends.get_backend` and returns an :class:`~spkid.inference.base.Embedder`:
features in, logits / embeddings / attention maps out, as numpy float32. An exported ``.onnx`` gives
an :class:`~spkid.inference.onnx.OnnxEmbedder` (onnxruntime, no framework).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from spkid.backends import get_backend
from spkid.errors import SpkidError
from spkid.inference.base import Embedder
from spkid.training.checkpoints import read_checkpoint

__all__ = ["load_embedder", "embed_files"]


def load_embedder(path: str | os.PathLike, *, prefer: str = "best") -> Embedder:
    """Load a checkpoint (run dir, metadata ``.json`` or state file) with the backend that made it, or an
    exported ``.onnx`` (an :class:`spkid.inference.onnx.OnnxEmbedder`, no framework needed)."""
    if os.fspath(path).endswith(".onnx"):
        from spkid.inference.onnx import OnnxEmbedder

        return OnnxEmbedder(path)
    meta, _ = read_checkpoint(path, prefer=prefer)
    backend = get_backend(meta["backend"])
    model = backend.load_model(path, prefer=prefer)
    return Embedder(model, backend.forward_fn(model), meta)


def embed_files(paths: Sequence[str | os.PathLike], embedder: Embedder, *, progress: bool = False,
                batch_files: int | None = None) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Load audio -> features -> embeddings; unreadable files are reported and skipped.

    ``batch_files``: featurise and embed that many files at a time (memory holds one batch of features;
    default all at once). Returns ``(embeddings (N_ok, E) float32, ok_paths, failures [(path, reason)])``.
    """
    from tqdm.auto import tqdm

    from spkid.features.api import extract_features

    dim = int(embedder.metadata["spec"]["embedding_dim"])
    paths = list(paths)
    step = len(paths) if not batch_files else int(batch_files)
    parts, ok, bad = [np.zeros((0, dim), dtype=np.float32)], [], []
    with tqdm(total=len(paths), disable=not progress, desc="embedding") as bar:
        for i in range(0, len(paths), max(step, 1)):
            feats = []
            for p in paths[i:i + step]:
                try:
                    feats.append(extract_features(p, embedder.feature_config))
                    ok.append(os.fspath(p))
                except SpkidError as exc:
                    bad.append((os.fspath(p), exc.problem))
                bar.update(1)
            if feats:
                parts.append(np.asarray(embedder.embed(feats), dtype=np.float32))
    return np.concatenate(parts), ok, bad
