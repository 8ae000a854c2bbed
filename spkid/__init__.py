"""spkid: speaker identification with deep CNNs and structured self-attention.

The core package is framework-free (numpy, scipy, soundfile, librosa, scikit-learn): it never imports
tensorflow, keras or torch. The two backends, ``spkid_torch`` and ``spkid_keras``, build the same
architectures from the specs in :mod:`spkid.models.specs`.

Public names are imported lazily so that ``import spkid`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports
from spkid.errors import (
    AudioError,
    BackendError,
    CacheError,
    CheckpointError,
    ConfigError,
    EmbeddingsError,
    FeatureError,
    GalleryError,
    SpkidError,
    SplitError,
)

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "FeatureConfig": "features.config",
    "StrictConfig": "_strict",
    "ModelSpec": "models.specs",
    "model_spec": "models.specs",
    "MODEL_NAMES": "models.specs",
    "load_audio": "audio.io",
    "fbank": "features.api",
    "mfcc": "features.api",
    "fbank_batch": "features.api",
    "extract_features": "features.api",
    "fbank_from_config": "features.api",
    "load_audio_with_rate": "audio.io",
    "Utterance": "data.manifest",
    "Manifest": "data.manifest",
    "LabelMap": "data.labels",
    "load_dataset": "data.layouts.registry",
    "read_manifest": "data.manifest",
    "write_manifest": "data.manifest",
    "FeatureCache": "data.cache",
    "build_cache": "data.cache",
    "load_entry": "data.entries",
    "SpeakerIndex": "search.index",
    "Gallery": "search.gallery",
    "compute_eer": "metrics",
    "compute_min_dcf": "metrics",
    "topk_accuracy": "metrics",
    "export_model": "inference.export",
    "OnnxEmbedder": "inference.onnx",
    "open_embedder": "inference.export",
    "TrainConfig": "training.config",
    "FeatureSet": "data.featuresets",
    "load_embedder": "inference.embedder",
    "embed_files": "inference.embedder",
}

__all__ = [
    "SpkidError",
    "AudioError",
    "FeatureError",
    "SplitError",
    "CacheError",
    "ConfigError",
    "CheckpointError",
    "GalleryError",
    "BackendError",
    "EmbeddingsError",
    "__version__",
    *_LAZY,
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
