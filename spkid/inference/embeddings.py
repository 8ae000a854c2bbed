"""The embeddings file of ``spkid embed`` (and ``examples/extract_embeds.py``): one ``.npz`` and a
``.json`` of its labels beside it.

The ``.npz`` (no pickle) holds ``embeddings`` (N, E) float32, one per utterance; ``ids`` (N,) their
utterance ids; ``speaker_of`` (N,) int64, each utterance's index into ``speakers`` (S,), the sorted
speaker names; ``speaker_embeddings`` (S, E) float32, the mean embedding of each speaker. The ``.json``
repeats ``ids``, ``speakers`` and ``speaker_of`` with the embedding size (``dim``) and the ``model`` that
made them. :func:`load_embeddings` checks all of it and raises :class:`EmbeddingsError` naming the file.
"""
from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from spkid.errors import EmbeddingsError

__all__ = ["Embeddings", "save_embeddings", "load_embeddings", "embeddings_path", "KEYS"]

KEYS = ("embeddings", "ids", "speaker_of", "speakers", "speaker_embeddings")


@dataclasses.dataclass(frozen=True, eq=False)
class Embeddings:
    """Per-utterance embeddings with their speakers (the content of an embeddings file)."""

    embeddings: np.ndarray  # (N, E) float32
    ids: tuple[str, ...]  # (N,)
    speaker_of: np.ndarray  # (N,) int64 index into speakers
    speakers: tuple[str, ...]  # (S,) sorted
    speaker_embeddings: np.ndarray  # (S, E) float32: mean of each speaker's utterances
    model: str | None = None

    @classmethod
    def from_labels(cls, embeddings, ids: Sequence[str], speaker_labels: Sequence[str], *,
                    model: str | None = None) -> "Embeddings":
        """From one embedding, id and speaker name per utterance (speakers sorted, means computed)."""
        vectors = np.asarray(embeddings, dtype=np.float32)
        labels = [str(s) for s in speaker_labels]
        if vectors.ndim != 2 or not len(vectors) == len(ids) == len(labels):
            raise EmbeddingsError(f"need (N, E) embeddings with N ids and N speakers, got {vectors.shape}, "
                                  f"{len(ids)} ids, {len(labels)} speakers")
        names = sorted(set(labels))
        index = {s: k for k, s in enumerate(names)}
        speaker_of = np.asarray([index[s] for s in labels], dtype=np.int64)
        means = np.zeros((len(names), vectors.shape[1]), dtype=np.float32)
        for k in range(len(names)):
            means[k] = vectors[speaker_of == k].mean(axis=0)
        return cls(vectors, tuple(map(str, ids)), speaker_of, tuple(names), means, model)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def speaker_labels(self) -> list[str]:
        """The speaker name of each utterance."""
        return [self.speakers[k] for k in self.speaker_of]

    def of_speaker(self, name: str) -> tuple[np.ndarray, list[str]]:
        """(embeddings, ids) of one speaker's utterances."""
        k = self.speakers.index(name)
        rows = np.flatnonzero(self.speaker_of == k)
        return self.embeddings[rows], [self.ids[i] for i in rows]


def embeddings_path(path: str | os.PathLike) -> Path:
    """The ``.npz`` path of an embeddings file (``.npz`` replaces any other suffix)."""
    p = Path(path)
    return p if p.suffix == ".npz" else p.with_suffix(".npz")


def save_embeddings(path: str | os.PathLike, embeddings: Embeddings) -> Path:
    """Write ``embeddings`` to ``path`` (``.npz``) and its labels to the ``.json`` beside it, both
    atomically; returns the ``.npz`` path."""
    from spkid.fileio import atomic_write, atomic_write_json

    out = embeddings_path(path)
    e = embeddings

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, embeddings=e.embeddings, ids=np.asarray(e.ids, dtype=str), speaker_of=e.speaker_of,
                     speakers=np.asarray(e.speakers, dtype=str), speaker_embeddings=e.speaker_embeddings)

    atomic_write(out, write)
    atomic_write_json(out.with_suffix(".json"), {"model": e.model, "ids": list(e.ids), "speakers": list(e.speakers),
                                                 "speaker_of": e.speaker_of.tolist(), "dim": e.dim})
    return out


def _check(ok: bool, message: str, path: Path) -> None:
    if not ok:
        raise EmbeddingsError(message, path=path)


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    """Read an embeddings file written by :func:`save_embeddings`; a missing file, a missing array or
    arrays that do not fit together raise :class:`EmbeddingsError` naming the file."""
    from spkid.fileio import read_file_bytes, read_json_file

    p = embeddings_path(path)
    data = read_file_bytes(p, "embeddings file", EmbeddingsError)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            _check(not missing, f"not an embeddings file: no {', '.join(missing)} array(s) "
                                f"(has {', '.join(z.files) or 'nothing'})", p)
            arrays = {k: z[k] for k in KEYS}
    except EmbeddingsError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled or corrupt arrays), OSError, ...
        raise EmbeddingsError(f"not a readable .npz: {exc}", path=p) from None
    vectors, ids, speaker_of = arrays["embeddings"], arrays["ids"], arrays["speaker_of"]
    speakers, means = arrays["speakers"], arrays["speaker_embeddings"]
    _check(vectors.ndim == 2 and vectors.dtype.kind == "f", f"embeddings must be an (N, E) float array, "
           f"got {vectors.dtype} {vectors.shape}", p)
    n, dim = vectors.shape
    _check(ids.shape == (n,) and ids.dtype.kind == "U", f"ids must be {n} strings, got {ids.dtype} {ids.shape}", p)
    _check(speakers.ndim == 1 and speakers.dtype.kind == "U", f"speakers must be strings, got {speakers.dtype}", p)
    _check(speaker_of.shape == (n,) and speaker_of.dtype.kind in "iu", f"speaker_of must be {n} integers, "
           f"got {speaker_of.dtype} {speaker_of.shape}", p)
    _check(n == 0 or (speaker_of.min() >= 0 and speaker_of.max() < len(speakers)),
           f"speaker_of must index the {len(speakers)} speakers", p)
    _check(means.shape == (len(speakers), dim), f"speaker_embeddings must be ({len(speakers)}, {dim}), "
           f"got {means.shape}", p)
    _check(bool(np.isfinite(vectors).all() and np.isfinite(means).all()), "embeddings are not all finite", p)
    meta_path = p.with_suffix(".json")
    meta = read_json_file(meta_path, "embeddings labels", EmbeddingsError) if meta_path.is_file() else {}
    model = meta.get("model") if isinstance(meta, dict) else None
    return Embeddings(vectors.astype(np.float32, copy=False), tuple(ids.tolist()), speaker_of.astype(np.int64),
                      tuple(speakers.tolist()), means.astype(np.float32, copy=False),
                      None if model is None else str(model))
