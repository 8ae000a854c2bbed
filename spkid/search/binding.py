"""Binding a :class:`~spkid.search.gallery.Gallery` to the model that made its embeddings.

A gallery records how its embeddings were made (model name, spec, feature config and a *fingerprint*:
the model's unit embedding of a fixed pseudo-random input, which identifies the trained weights across
backends and export formats), so embeddings from different spaces never mix. ``spkid enroll``,
``spkid identify``, ``spkid serve`` and ``spkid demo`` all bind their galleries this way.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spkid.errors import GalleryError
from spkid.search.gallery import Gallery
from spkid.search.stored import is_database_path
from spkid.search.storage import canonical_json, gallery_paths

__all__ = ["CHECKED_KEYS", "fingerprint", "gallery_metadata", "check_gallery", "open_gallery"]

CHECKED_KEYS = ("feature_config", "model", "spec")  # must equal the model's when the gallery has them
FINGERPRINT_FRAMES = 200
FINGERPRINT_MIN_COSINE = 0.999  # same weights agree to ~1e-5 across torch / keras / onnx


def fingerprint(embedder) -> list[float]:
    """(E,) unit embedding of a fixed pseudo-random (200, n_mels) input, rounded to 6 decimals."""
    x = np.random.default_rng(0).standard_normal((FINGERPRINT_FRAMES, embedder.feature_config.n_mels))
    e = embedder.embed([x.astype(np.float32)])[0].astype(np.float64)
    return np.round(e / max(np.linalg.norm(e), 1e-12), 6).tolist()


def gallery_metadata(embedder, model_path) -> dict:
    """What a gallery records about the model that made its embeddings (the keys of CHECKED_KEYS,
    ``fingerprint``, and for information ``source`` / ``backend``)."""
    return {"model": embedder.model_name, "spec": embedder.metadata.get("spec"),
            "feature_config": embedder.feature_config.to_dict(), "fingerprint": fingerprint(embedder),
            "source": os.fspath(model_path), "backend": getattr(embedder, "backend", None)}


def _differences(have, want) -> str:
    if isinstance(have, dict) and isinstance(want, dict):
        keys = sorted(k for k in set(have) | set(want)
                      if canonical_json(have.get(k)) != canonical_json(want.get(k)))
        return ", ".join(f"{k}: gallery {have.get(k, '<missing>')!r} vs model {want.get(k, '<missing>')!r}"
                         for k in keys)
    return f"gallery {have!r} vs model {want!r}"


def check_gallery(gallery: Gallery, meta: dict, path) -> list[str]:
    """Raise GalleryError when ``gallery`` was made with another model than ``meta`` describes.

    Keys the gallery lacks (galleries made elsewhere) cannot be checked: returns notes naming them.
    """
    made = gallery.metadata
    origin = f" (enrolled with {made['source']})" if "source" in made else ""
    for key in CHECKED_KEYS:
        if key in made and canonical_json(made[key]) != canonical_json(meta[key]):
            raise GalleryError(f"made with another {key}{origin}: {_differences(made[key], meta[key])}", path=path)
    dim = len(meta["fingerprint"])
    if gallery.dim is not None and gallery.dim != dim:
        raise GalleryError(f"holds {gallery.dim}-d embeddings{origin}, the model makes {dim}-d ones", path=path)
    if "fingerprint" in made:
        cos = float(np.dot(made["fingerprint"], meta["fingerprint"]))
        if cos < FINGERPRINT_MIN_COSINE:
            raise GalleryError(f"made with other trained weights{origin} (same architecture and features, but the "
                               f"fingerprint embeddings agree only to cosine {cos:.4f}); enrol into a new gallery",
                               path=path)
    return [f"gallery has no {key!r} record: cannot check it matches the model"
            for key in (*CHECKED_KEYS, "fingerprint") if key not in made]


def open_gallery(path, embedder, model_path, *, create: bool, index: str = "auto"):
    """(gallery, its path, notes): the gallery at ``path`` checked against the model; a new empty one (with
    the model's metadata) when it does not exist and ``create``; GalleryError otherwise. A ``.db`` path is a
    SQLite gallery (:meth:`Gallery.open`: changes are written through), any other the npz + json pair."""
    meta = gallery_metadata(embedder, model_path)
    if is_database_path(path):
        p = Path(path)
        if not create and not p.exists():
            raise GalleryError("no such gallery database", path=p)
        gallery = Gallery.open(p, metadata=meta, create=create, index=index)
        return gallery, p, check_gallery(gallery, meta, p)
    jpath, _ = gallery_paths(path)
    if create and not jpath.exists():
        return Gallery(metadata=meta, index=index), jpath, []
    gallery = Gallery.load(jpath, index=index)
    return gallery, jpath, check_gallery(gallery, meta, jpath)
