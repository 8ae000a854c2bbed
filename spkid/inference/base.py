"""The :class:`Embedder` interface: a trained model behind numpy in, numpy out.

Made by :func:`spkid.inference.embedder.load_embedder` (a checkpoint, through its backend) and
:class:`spkid.inference.onnx.OnnxEmbedder` (an exported ``.onnx``, no framework); the CLI, the gallery
and the HTTP service use either alike. The evaluation loop behind it is
:func:`spkid.training.evaluation.predict`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from spkid.data.labels import LabelMap
from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.training.evaluation import Forward, predict

__all__ = ["Embedder"]


class Embedder:
    """A trained model behind a framework-free interface.

    Attributes: ``feature_config`` (FeatureConfig the model was trained on), ``labels`` (LabelMap),
    ``backend``, ``model_name``, ``config`` (TrainConfig; decides cropping / windows at inference),
    ``model`` (the backend model object), ``metadata`` (the checkpoint's JSON).
    """

    def __init__(self, model: Any, forward: Forward, metadata: dict):
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
