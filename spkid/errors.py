"""Errors raised at the public boundary of spkid.

Every error a user can provoke with bad input derives from :class:`SpkidError` and, where a file is
involved, names the file and the problem, e.g. ``AudioError: /data/a.wav: empty file (0 samples)``.
"""
from __future__ import annotations

import os

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
    "TrialsError",
]


class SpkidError(Exception):
    """Base class of every error spkid raises on bad input.

    ``path`` (optional) is the file the problem is about; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class AudioError(SpkidError):
    """An audio file is missing, unreadable, corrupt, empty, silent, non-finite or too short."""


class FeatureError(SpkidError):
    """Feature extraction was asked something impossible (e.g. a signal shorter than one frame)."""


class SplitError(SpkidError):
    """A split file, manifest or dataset tree is malformed or inconsistent."""


class CacheError(SpkidError):
    """A feature-cache entry is truncated, tampered with, or was built with another config."""


class ConfigError(SpkidError):
    """A configuration has unknown keys, wrong types or impossible values."""


class CheckpointError(SpkidError):
    """A checkpoint is missing, corrupt, or belongs to another architecture/config."""


class GalleryError(SpkidError):
    """A speaker gallery file is missing, corrupt or inconsistent."""


class BackendError(SpkidError):
    """A deep-learning backend (torch / keras) was asked for but is not installed or unknown."""


class EmbeddingsError(SpkidError):
    """An embeddings file (``spkid embed`` output) is missing, unreadable, or its arrays do not fit together."""


class TrialsError(SpkidError):
    """A verification trial list or score file is missing or has a malformed line."""
