"""spkid.search.gallery.Gallery: enrolment, centroids, open-set identification, EER threshold, save/load,
its JSON form, and its binding to a model (spkid.search.binding)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spkid.errors import GalleryError
from spkid.features.config import FeatureConfig
from spkid.metrics import compute_eer
from spkid.search.binding import CHECKED_KEYS, gallery_metadata, open_gallery
from spkid.search.gallery import Gallery
from spkid.search.index import l2_normalize

D = 24


def _speaker_set(rng, n_speakers=6, per=8, noise=0.6):
    """Embeddings of n_speakers "voices": a direction each, plus per-utterance noise."""
    centres = rng.normal(size=(n_speakers, D))
    names = [f"spk{i}" for i in range(n_speakers)]
    make = lambda i, n: (centres[i] + noise * rng.normal(size=(n, D))).astype(np.float32)  # noqa: E731
    return names, centres, make


@pytest.fixture
def enrolled(rng):
    names, centres, make = _speaker_set(rng)
    g = Gallery(metadata={"model": "vgg", "n_mels": 40})
    for i, n in enumerate(names):
        g.enroll(n, make(i, 8))
    return g, names, make


def test_enroll_centroid_is_mean_of_normalised_and_updates(rng):
    a, b = rng.normal(size=(3, D)), rng.normal(size=(2, D))
    g = Gallery().enroll("ann", 5.0 * a)
    np.testing.assert_allclose(g.centroids()[0], l2_normalize(a).mean(0), atol=1e-6)
    g.enroll("ann", b, ids=["x", "y"])  # more utterances later update the centroid
    np.testing.assert_allclose(g.centroids()[0], l2_normalize(np.r_[a, b]).mean(0), atol=1e-6)
    assert g.utterance_ids("ann") == ["ann#0", "ann#1", "ann#2", "x", "y"]
    assert g.n_utterances() == 5 and g.dim == D and "ann" in g
    g.enroll("bob", b[0])  # a single (D,) vector
    assert g.speakers == ["ann", "bob"]
    g.remove("ann")
    assert g.speakers == ["bob"] and g.n_utterances() == 1


def test_enroll_rejects_bad_input(rng):
    g = Gallery().enroll("ann", rng.normal(size=(2, D)))
    with pytest.raises(GalleryError, match=f"dimension 8, expected {D}"):
        g.enroll("bob", rng.normal(size=(2, 8)))
    with pytest.raises(GalleryError, match="NaN"):
        g.enroll("bob", np.full((1, D), np.nan))
    with pytest.raises(GalleryError, match="all-zero"):
        g.enroll("bob", np.zeros((1, D)))
    with pytest.raises(GalleryError, match="already enrolled"):
        g.enroll("ann", rng.normal(size=(1, D)), ids=["ann#0"])
    with pytest.raises(GalleryError, match="non-empty"):
        g.enroll("", rng.normal(size=(1, D)))
    with pytest.raises(GalleryError, match="not enrolled"):
        g.remove("zed")
    with pytest.raises(GalleryError, match="empty"):
        Gallery().identify(rng.normal(size=D))


def test_identify_ranks_speakers_and_utterances(enrolled):
    g, names, make = enrolled
    queries = np.concatenate([make(i, 3) for i in range(len(names))])
    truth = np.repeat(names, 3)
    results = g.identify(queries, top_k=3)
    assert len(results) == len(queries)
    assert np.mean([r.speaker == t for r, t in zip(results, truth)]) >= 0.9
    cent = l2_normalize(g.centroids())
    for r, q in zip(results, queries):
        assert len(r.candidates) == 3 and len(r.neighbours) == 3
        scores = [c.score for c in r.candidates]
        assert scores == sorted(scores, reverse=True)
        assert r.score == scores[0] and r.speaker == r.candidates[0].speaker
        expected = l2_normalize(q[None])[0] @ cent[g.speakers.index(r.speaker)]
        assert r.score == pytest.approx(expected, abs=1e-5)
        assert [n.score for n in r.neighbours] == sorted((n.score for n in r.neighbours), reverse=True)
        for n in r.neighbours:  # each neighbour is a real enrolment utterance of that speaker
            emb = g.embeddings(n.speaker)[g.utterance_ids(n.speaker).index(n.utterance)]
            assert n.score == pytest.approx(float(emb @ l2_normalize(q[None])[0]), abs=1e-5)
    assert len(g.identify(queries[0], top_k=50)[0].candidates) == len(names)


def test_open_set_threshold(enrolled, rng):
    g, names, make = enrolled
    q = make(0, 1)
    best = g.identify(q)[0]
    assert best.speaker == "spk0" and not best.is_unknown
    rejected = g.identify(q, threshold=best.score + 1e-3)[0]
    assert rejected.is_unknown and rejected.label == "unknown" and rejected.speaker is None
    assert rejected.candidates == best.candidates  # the ranking is still reported
    g.threshold = best.score - 1e-3
    assert g.identify(q)[0].speaker == "spk0"


def test_pick_threshold_at_eer_rejects_impostors(rng):
    names, centres, make = _speaker_set(rng, n_speakers=10)
    g = Gallery()
    for i, n in enumerate(names[:6]):  # 4 speakers stay impostors
        g.enroll(n, make(i, 8))
    held = np.concatenate([make(i, 5) for i in range(10)])
    who = np.repeat(names, 5)
    thr, eer = g.pick_threshold(held, who)
    scores, is_target = g.trial_scores(held, who)
    assert (eer, thr) == pytest.approx(compute_eer(scores, is_target))
    assert g.threshold == thr and 0.0 <= eer < 0.1
    fresh_impostors = np.concatenate([make(i, 5) for i in range(6, 10)])
    assert np.mean([r.is_unknown for r in g.identify(fresh_impostors)]) >= 0.8
    fresh_known = np.concatenate([make(i, 5) for i in range(6)])
    assert np.mean([r.speaker == t for r, t in zip(g.identify(fresh_known), np.repeat(names[:6], 5))]) >= 0.8


def test_save_load_round_trip(enrolled, tmp_path, rng):
    g, names, make = enrolled
    g.threshold = 0.25
    jpath = g.save(tmp_path / "gal")
    assert jpath == tmp_path / "gal.json" and (tmp_path / "gal.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    h = Gallery.load(tmp_path / "gal.npz", expected_metadata={"model": "vgg"})
    assert h.speakers == g.speakers and h.metadata == g.metadata and h.threshold == 0.25
    for n in names:
        np.testing.assert_array_equal(h.embeddings(n), g.embeddings(n))
        assert h.utterance_ids(n) == g.utterance_ids(n)
    q = rng.normal(size=(4, D))
    assert h.identify(q) == g.identify(q)


def test_load_checks_expected_metadata(enrolled, tmp_path):
    g = enrolled[0]
    g.save(tmp_path / "gal.json")
    with pytest.raises(GalleryError, match=r"'n_mels' mismatch: gallery has 40, expected 80") as exc:
        Gallery.load(tmp_path / "gal", expected_metadata={"model": "vgg", "n_mels": 80})
    assert str(tmp_path / "gal.json") in str(exc.value)
    with pytest.raises(GalleryError, match="'checkpoint' mismatch: gallery has '<missing>'"):
        Gallery.load(tmp_path / "gal", expected_metadata={"checkpoint": "a.pt"})


def test_save_rejects_unserialisable_metadata(tmp_path, rng):
    g = Gallery(metadata={"cfg": object()}).enroll("a", rng.normal(size=(1, D)))
    with pytest.raises(GalleryError, match="JSON"):
        g.save(tmp_path / "g")
    assert not list(tmp_path.iterdir())


def test_gallery_reachable_under_its_public_names():
    import importlib

    import spkid
    import spkid.search

    assert spkid.search.Gallery is Gallery and spkid.Gallery is Gallery
    for name, module in spkid.search._LAZY.items():  # each public name is defined where _LAZY says
        defined = getattr(importlib.import_module(f"spkid.search.{module}"), name)
        assert getattr(spkid.search, name) is defined and defined.__module__ == f"spkid.search.{module}"


def test_identification_to_dict_is_the_json_shape(enrolled):
    """One serialisation for `spkid identify --json` and the service's /identify."""
    g, names, make = enrolled
    q = make(2, 1)
    r = g.identify(q, top_k=2)[0]
    d = r.to_dict()
    assert list(d) == ["speaker", "score", "unknown", "threshold", "candidates", "neighbours"]
    assert d["speaker"] == "spk2" and d["unknown"] is False and d["threshold"] is None
    assert d["score"] == r.score and isinstance(d["score"], float)
    assert d["candidates"] == [{"speaker": m.speaker, "score": m.score} for m in r.candidates]
    assert d["neighbours"] == [{"speaker": n.speaker, "utterance": n.utterance, "score": n.score}
                               for n in r.neighbours]
    assert len(d["candidates"]) == len(d["neighbours"]) == 2
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # JSON-ready: plain str / float / bool / None
    rejected = g.identify(q, top_k=2, threshold=r.score + 1e-3)[0].to_dict()
    assert rejected["speaker"] == "unknown" and rejected["unknown"] is True
    assert rejected["threshold"] == pytest.approx(r.score + 1e-3) and rejected["candidates"] == d["candidates"]


class _Embedder:
    """A stand-in embedder: a fixed random projection of the mean frame (what binding reads of one)."""

    def __init__(self, seed=0, n_mels=40, model="vgg_attention"):
        self.feature_config = FeatureConfig(n_mels=n_mels)
        self.model_name, self.backend = model, "torch"
        self.metadata = {"model": model, "spec": {"embedding_dim": D}}
        self._w = np.random.default_rng(seed).normal(size=(n_mels, D))

    def embed(self, features_list):
        return np.stack([np.asarray(f).mean(axis=0) @ self._w for f in features_list]).astype(np.float32)


def test_demo_style_gallery_is_bound_to_its_model(tmp_path, rng):
    """`spkid demo` makes its gallery as ``Gallery(metadata=gallery_metadata(embedder, run_dir))``: the
    gallery `spkid enroll` would create, so `spkid identify` checks it fully (no missing-record notes)."""
    embedder, run_dir = _Embedder(), tmp_path / "run"
    g = Gallery(metadata=gallery_metadata(embedder, run_dir))
    g.enroll("ann", rng.normal(size=(3, D))).enroll("bob", rng.normal(size=(2, D)))
    jpath = g.save(tmp_path / "gallery")
    assert set(CHECKED_KEYS) | {"fingerprint"} <= set(Gallery.load(jpath).metadata)
    assert g.metadata == open_gallery(tmp_path / "new", embedder, run_dir, create=True)[0].metadata
    loaded, path, notes = open_gallery(tmp_path / "gallery", embedder, run_dir, create=False)
    assert notes == [] and path == jpath and loaded.speakers == ["ann", "bob"]
    with pytest.raises(GalleryError, match="feature_config"):  # another feature config is refused
        open_gallery(jpath, _Embedder(n_mels=64), run_dir, create=False)
    with pytest.raises(GalleryError, match="other trained weights"):  # so are other weights
        open_gallery(jpath, _Embedder(seed=1), run_dir, create=False)
    # the demo's former metadata left the gallery unbound: identify could only note what it lacked
    Gallery(metadata={"model": "vgg_attention", "backend": "torch"}).enroll("ann", rng.normal(size=(1, D))).save(
        tmp_path / "unbound")
    notes = open_gallery(tmp_path / "unbound", embedder, run_dir, create=False)[2]
    assert "gallery has no 'feature_config' record: cannot check it matches the model" in notes
