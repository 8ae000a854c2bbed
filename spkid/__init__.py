"""spkid: speaker identification with deep CNNs and structured self-attention.

The core package is framework-free (numpy, scipy, soundfile, librosa, scikit-learn): it never imports
tensorflow, keras or torch. The two backends, ``spkid_torch`` and ``spkid_keras``, build the same
architectures from the specs in :mod:`spkid.specs`.

Public names are imported lazily so that ``import spkid`` stays cheap.
"""
from __future__ import annotations

from ._lazy import lazy_exports
from .errors import (
    AudioError,
    BackendError,
    CacheError,
    CheckpointError,
    ConfigError,
    FeatureError,
    GalleryError,
    SpkidError,
    SplitError,
)

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "FeatureConfig": "config",
    "StrictConfig": "config",
    "ModelSpec": "specs",
    "model_spec": "specs",
    "MODEL_NAMES": "specs",
    "load_audio": "audio",
    "fbank": "features",
    "mfcc": "features",
    "fbank_batch": "features",
    "extract_features": "features",
    "fbank_from_config": "features",
    "load_audio_with_rate": "audio",
    "Utterance": "splits",
    "Manifest": "splits",
    "LabelMap": "splits",
    "load_dataset": "splits",
    "read_manifest": "splits",
    "write_manifest": "splits",
    "FeatureCache": "cache",
    "build_cache": "cache",
    "load_entry": "cache",
    "SpeakerIndex": "search",
    "Gallery": "gallery",
    "compute_eer": "metrics",
    "topk_accuracy": "metrics",
    "export_model": "export",
    "OnnxEmbedder": "export",
    "open_embedder": "export",
    "TrainConfig": "config",
    "FeatureSet": "sampling",
    "load_embedder": "inference",
    "embed_files": "inference",
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
    "__version__",
    *_LAZY,
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
