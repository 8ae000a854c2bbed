"""Use a trained checkpoint without knowing which framework made it.

``load_embedder(path)`` reads the checkpoint's metadata (framework-free), imports the backend it names
via :func:`spkid.backends.get_backend` and returns an :class:`Embedder`: features in, logits /
embeddings / attention maps out, as numpy float32. The evaluation loop both backends share is
:func:`spkid.training.evaluation.predict`.
"""
from __future__ import annotations

import importlib
import os
from typing import Sequence

import numpy as np

from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.errors import SpkidError
from spkid.training.checkpoints import read_checkpoint
from spkid.training.evaluation import Forward, classification_report, predict

__all__ = ["Embedder", "load_embedder", "embed_files", "evaluate_with", "embed_with"]

def _model_and_config(module, model_or_path, config: TrainConfig | None):
    """(model, TrainConfig, checkpoint speakers or None) from a model object or a checkpoint path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        meta, _ = read_checkpoint(model_or_path)
        model = module.load_model(model_or_path)
        return model, config or TrainConfig.from_dict(meta["train_config"]), list(meta["speakers"])
    return model_or_path, config or TrainConfig(), None


def evaluate_with(module, model_or_path, dataset, config: TrainConfig | None = None) -> dict:
    """Shared body of the backends' ``evaluate``: top1, top5, per_speaker, confusion, n, loss.

    ``module`` is the backend's ``train`` module (provides ``load_model`` and ``forward_fn``).
    """
    from spkid.errors import CheckpointError

    model, config, speakers = _model_and_config(module, model_or_path, config)
    if speakers is not None and list(dataset.speakers) != speakers:
        raise CheckpointError(
            f"the data set's {len(dataset.speakers)} speakers differ from the checkpoint's {len(speakers)} "
            f"(first: {list(dataset.speakers)[:3]} vs {speakers[:3]})", path=os.fspath(model_or_path))
    logits = predict(module.forward_fn(model), dataset.features, config, keys=("logits",))["logits"]
    return classification_report(logits, dataset.labels, dataset.speakers)


def embed_with(module, model_or_path, features_list, config: TrainConfig | None = None) -> np.ndarray:
    """Shared body of the backends' ``embed``: (N, E) float32."""
    model, config, _ = _model_and_config(module, model_or_path, config)
    return predict(module.forward_fn(model), features_list, config, keys=("embedding",))["embedding"]


def _train_module(backend: str):
    from spkid.backends import get_backend

    return importlib.import_module(get_backend(backend).__name__ + ".train")


class Embedder:
    """A trained model behind a framework-free interface.

    Attributes: ``feature_config`` (FeatureConfig the model was trained on), ``labels`` (LabelMap),
    ``backend``, ``model_name``, ``config`` (TrainConfig; decides cropping / windows at inference),
    ``model`` (the backend model object), ``metadata`` (the checkpoint's JSON).
    """

    def __init__(self, model, forward: Forward, metadata: dict):
        from spkid.data.splits import LabelMap

        self.model = model
        self._forward = forward
        self.metadata = metadata
        self.backend: str = metadata["backend"]
        self.model_name: str = metadata["model"]
        self.feature_config = FeatureConfig.from_dict(metadata["feature_config"])
        self.config = TrainConfig.from_dict(metadata["train_config"])
        self.labels = LabelMap.from_speakers(list(metadata["speakers"]))
        self.speakers: tuple[str, ...] = tuple(metadata["speakers"])

    def embed(self, features_list: Sequence[np.ndarray]) -> np.ndarray:
        """(N, embedding_dim) float32, one row per (T_i, n_mels) utterance."""
        return predict(self._forward, features_list, self.config, keys=("embedding",))["embedding"]

    def logits(self, features_list: Sequence[np.ndarray]) -> np.ndarray:
        """(N, n_classes) float32 classifier logits."""
        return predict(self._forward, features_list, self.config, keys=("logits",))["logits"]

    def attention(self, features: np.ndarray) -> np.ndarray:
        """(hops, T') attention weights over the trunk's output frames for one utterance."""
        x = np.asarray(features, dtype=np.float32)[None]
        return np.asarray(self._forward(x, np.asarray([x.shape[1]]))["attention"][0], dtype=np.float32)

    def identify(self, features_list: Sequence[np.ndarray], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` closed-set speakers of each utterance with softmax probabilities."""
        z = self.logits(features_list).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        top = np.argsort(-p, axis=1)[:, :top_k]
        return [[(self.speakers[j], float(p[i, j])) for j in row] for i, row in enumerate(top)]


def load_embedder(path: str | os.PathLike, *, prefer: str = "best") -> Embedder:
    """Load a checkpoint (run dir, metadata ``.json`` or state file) with the backend that made it, or an
    exported ``.onnx`` (an :class:`spkid.inference.export.OnnxEmbedder`, no framework needed)."""
    if os.fspath(path).endswith(".onnx"):
        from spkid.inference.export import OnnxEmbedder  # lazy: spkid.inference.export imports this module

        return OnnxEmbedder(path)
    meta, state = read_checkpoint(path, prefer=prefer)
    module = _train_module(meta["backend"])
    model = module.load_model(path, prefer=prefer)
    return Embedder(model, module.forward_fn(model), meta)


def embed_files(paths: Sequence[str | os.PathLike], embedder: Embedder, *, progress: bool = False
                ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Load audio -> features -> embeddings; unreadable files are reported and skipped.

    Returns ``(embeddings (N_ok, E) float32, ok_paths, failures [(path, reason)])``.
    """
    from tqdm.auto import tqdm

    from spkid.features.api import extract_features

    feats, ok, bad = [], [], []
    for p in tqdm(paths, disable=not progress, desc="features"):
        try:
            feats.append(extract_features(p, embedder.feature_config))
            ok.append(os.fspath(p))
        except SpkidError as exc:
            bad.append((os.fspath(p), exc.problem))
    dim = int(embedder.metadata["spec"]["embedding_dim"])
    emb = embedder.embed(feats) if feats else np.zeros((0, dim), dtype=np.float32)
    return emb, ok, bad
