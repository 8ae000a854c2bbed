"""spkid.search.SpeakerIndex: exact search against a numpy oracle, FAISS backends, vote and scores."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone

from spkid.errors import BackendError
from spkid.search.index import SpeakerIndex, l2_normalize


def _oracle(gallery, queries, k, metric):
    """Brute force in float64: full argsort, ties by gallery index."""
    g, q = np.asarray(gallery, np.float64), np.asarray(queries, np.float64)
    if metric == "cosine":
        g, q = l2_normalize(g).astype(np.float64), l2_normalize(q).astype(np.float64)
        s = q @ g.T
        idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
        idx = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def _recall(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)])


@pytest.fixture
def data(rng):
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = rng.integers(0, 12, size=400)
    q = rng.normal(size=(57, 16)).astype(np.float32)
    return x, y, q


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k,batch_size", [(1, 1024), (7, 10), (400, 13)])
def test_exact_matches_oracle(data, metric, k, batch_size):
    x, y, q = data
    index = SpeakerIndex(metric=metric, batch_size=batch_size).fit(x, y)
    s, i = index.kneighbors(q, k)
    ref_s, ref_i = _oracle(x, q, k, metric)
    assert s.shape == i.shape == (57, k) and s.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(s, ref_s, atol=2e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9])
def test_exact_ties_broken_by_gallery_index(rng, k):
    # small integers: float32 squared distances are exact, so ties are genuine ties
    base = rng.integers(-2, 3, size=(4, 3))
    x = np.concatenate([base, base, base[:2], base])  # many duplicates
    q = np.concatenate([base, rng.integers(-2, 3, size=(5, 3))])
    index = SpeakerIndex(metric="euclidean", batch_size=4).fit(x, np.arange(len(x)))
    s, i = index.kneighbors(q, k)
    ref_s, ref_i = _oracle(x, q, k, "euclidean")
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(s, ref_s, rtol=1e-6)


def test_kneighbors_errors(data):
    x, y, q = data
    with pytest.raises(ValueError, match="not fitted"):
        SpeakerIndex().kneighbors(q)
    index = SpeakerIndex().fit(x, y)
    for k in (0, 401, 2.5):
        with pytest.raises(ValueError, match="k must be in 1..400"):
            index.kneighbors(q, k)
    with pytest.raises(ValueError, match="dimension 8, expected 16"):
        index.kneighbors(q[:, :8])
    bad = q.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        index.kneighbors(bad)


def test_fit_validation(data):
    x, y, _ = data
    with pytest.raises(ValueError, match="labels must have shape"):
        SpeakerIndex().fit(x, y[:-1])
    with pytest.raises(ValueError, match="ids must have shape"):
        SpeakerIndex().fit(x, y, ids=np.arange(3))
    with pytest.raises(ValueError, match=r"shape \(n, D\)"):
        SpeakerIndex().fit(x[None], y)
    with pytest.raises(ValueError, match="inf"):
        SpeakerIndex().fit(np.where(x > 2.5, np.inf, x), y)
    with pytest.raises(ValueError, match="metric must be one of"):
        SpeakerIndex(metric="manhattan").fit(x, y)
    with pytest.raises(ValueError, match="n_neighbors must be a positive int"):
        SpeakerIndex(n_neighbors=0).fit(x, y)


def test_sklearn_estimator_conventions():
    index = SpeakerIndex(n_neighbors=3, backend="faiss", faiss_index="hnsw", ef_search=99)
    params = index.get_params()
    assert params["n_neighbors"] == 3 and params["ef_search"] == 99 and params["metric"] == "cosine"
    twin = clone(index)
    assert twin.get_params() == params and twin is not index
    assert not hasattr(index, "classes_")  # __init__ stores parameters only


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_flat_identical_to_exact(data, metric):
    x, y, q = data
    exact = SpeakerIndex(metric=metric).fit(x, y)
    flat = SpeakerIndex(metric=metric, backend="faiss", faiss_index="flat", batch_size=16).fit(x, y)
    for k in (1, 10, 400):
        s1, i1 = exact.kneighbors(q, k)
        s2, i2 = flat.kneighbors(q, k)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, atol=1e-4)
    np.testing.assert_array_equal(exact.predict(q), flat.predict(q))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("kind,params,floor", [
    ("ivf", dict(nlist=16, nprobe=16), 1.0),  # probing every cell is exhaustive
    ("ivf", dict(nlist=16, nprobe=4), 0.85),
    ("hnsw", dict(hnsw_m=16, ef_search=64), 0.95),
])
def test_approximate_recall_floor(rng, metric, kind, params, floor):
    # gallery of 3000 items around 150 "speakers"; queries are new noisy recordings of enrolled speakers
    centres = rng.normal(size=(150, 32)).astype(np.float32)
    y = rng.integers(0, 150, size=3000)
    x = centres[y] + 0.5 * rng.normal(size=(3000, 32)).astype(np.float32)
    q = x[rng.choice(3000, 200, replace=False)] + 0.3 * rng.normal(size=(200, 32)).astype(np.float32)
    _, truth = SpeakerIndex(metric=metric).fit(x, y).kneighbors(q, 10)
    ann = SpeakerIndex(metric=metric, backend="faiss", faiss_index=kind, n_jobs=1, **params).fit(x, y)
    _, found = ann.kneighbors(q, 10)
    assert (found >= 0).all() and (found < 3000).all()
    assert _recall(found, truth) >= floor


def test_ivf_missing_slots_are_marked_and_ignored(rng):
    x = rng.normal(size=(120, 8)).astype(np.float32)
    y = np.arange(120) % 3
    index = SpeakerIndex(backend="faiss", faiss_index="ivf", nlist=12, nprobe=1, n_neighbors=60)
    s, i = index.fit(x, y).kneighbors(x[:20])
    missing = i < 0
    assert missing.any(), "with 1 of 12 cells probed, 60 neighbours cannot all be found"
    assert np.isneginf(s[missing]).all() and np.isfinite(s[~missing]).all()
    assert (np.diff(np.where(missing, -2.0, s), axis=1) <= 0).all()  # sorted, missing last
    assert set(index.predict(x[:20])) <= {0, 1, 2}


def test_faiss_missing_gives_backend_error(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(BackendError, match=r"spkid\[faiss\]"):
        SpeakerIndex(backend="faiss").fit(*data[:2])


def test_predict_weighted_vote_and_tie_break():
    # query along +x; gallery: A at sim 0.9; B at sims 0.6 and 0.5 (two votes, more total weight)
    def at(cos):
        return [cos, np.sqrt(1 - cos * cos)]

    x = np.array([at(0.9), at(0.6), at(0.5), at(-0.5)])
    index = SpeakerIndex(n_neighbors=3).fit(x, np.array(["A", "B", "B", "C"]))
    assert index.predict([1.0, 0.0]).tolist() == ["B"]
    index.set_params(n_neighbors=2)  # A 0.9 vs B 0.6
    assert index.predict([1.0, 0.0]).tolist() == ["A"]
    # equal total weight: the speaker with the nearer item wins, whatever the label order
    x = np.array([at(0.8), at(0.5), at(0.3)])
    for labels, winner in ((["Z", "A", "A"], "Z"), (["A", "Z", "Z"], "A")):
        index = SpeakerIndex(n_neighbors=3).fit(x, np.array(labels))
        assert index.predict([1.0, 0.0]).tolist() == [winner]
    # all neighbours with negative similarity: nearest item decides
    index = SpeakerIndex(n_neighbors=2).fit(np.array([at(-0.2), at(-0.1)]), np.array([7, 9]))
    assert index.predict([1.0, 0.0]).tolist() == [9]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_scores_max_and_centroid(data, metric):
    x, y, q = data
    index = SpeakerIndex(metric=metric, n_neighbors=1, batch_size=20).fit(x, y)
    sc = index.scores(q)
    if metric == "cosine":
        full = l2_normalize(q) @ l2_normalize(x).T
    else:
        full = -np.linalg.norm(q[:, None] - x[None], axis=-1)
    expected = np.stack([full[:, y == c].max(1) for c in index.classes_], 1)
    np.testing.assert_allclose(sc, expected, atol=2e-5)
    np.testing.assert_array_equal(index.classes_[sc.argmax(1)], index.predict(q))
    cent = index.set_params(score_mode="centroid").scores(q)
    g = l2_normalize(x) if metric == "cosine" else x
    means = np.stack([g[y == c].mean(0) for c in index.classes_])
    if metric == "cosine":
        ref = l2_normalize(q) @ l2_normalize(means).T
    else:
        ref = -np.linalg.norm(q[:, None] - means[None], axis=-1)
    np.testing.assert_allclose(cent, ref, atol=2e-5)


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 6)),
             elements=st.floats(-10, 10, width=32)),
    k=st.integers(1, 30),
    metric=st.sampled_from(["cosine", "euclidean"]),
)
def test_property_sorted_valid_self_first(x, k, metric):
    n = x.shape[0]
    k = min(k, n)
    index = SpeakerIndex(metric=metric, batch_size=7).fit(x, np.zeros(n, int))
    s, i = index.kneighbors(x, k)
    assert ((i >= 0) & (i < n)).all()
    assert all(len(set(row)) == k for row in i)
    step = np.diff(s, axis=1)
    assert (step <= 0).all() if metric == "cosine" else (step >= 0).all()
    if metric == "cosine":
        g = l2_normalize(x)
        nonzero = np.linalg.norm(x, axis=1) > 0
        first = i[:, 0]
        # each query finds itself first, or an item pointing the same way (a tie up to rounding)
        same_dir = (g[first] * g).sum(1) >= 1 - 1e-5
        assert ((first == np.arange(n)) | same_dir)[nonzero].all()


# ---------------------------------------------------------------- faiss_index="speakers"
needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")


def _speaker_gallery(rng, noise=0.8, n_spk=150, per_speaker=20, dim=32, n_queries=200):
    """Items around speaker centres (exactly ``per_speaker`` each); queries: noisy re-recordings."""
    centres = rng.normal(size=(n_spk, dim)).astype(np.float32)
    y = np.arange(n_spk * per_speaker) % n_spk
    x = centres[y] + noise * rng.normal(size=(y.size, dim)).astype(np.float32)
    pick = rng.choice(y.size, n_queries, replace=False)
    q = x[pick] + 0.5 * noise * rng.normal(size=(n_queries, dim)).astype(np.float32)
    return x, y, q


def _speakers(**params):
    return SpeakerIndex(backend="faiss", faiss_index="speakers", n_jobs=1, **params)


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_speakers_probing_every_speaker_is_exact(data, metric):
    x, y, q = data  # 12 speakers
    exact = SpeakerIndex(metric=metric).fit(x, y)
    for n_probe in (12, 50):
        index = _speakers(metric=metric, n_probe_speakers=n_probe, batch_size=16).fit(x, y)
        for k in (1, 10, 400):
            s1, i1 = exact.kneighbors(q, k)
            s2, i2 = index.kneighbors(q, k)
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_allclose(s1, s2, atol=1e-6)  # batch sizes differ: GEMM rounding
        np.testing.assert_array_equal(exact.predict(q), index.predict(q))


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_speakers_recall_on_clustered_gallery(rng, metric):
    x, y, q = _speaker_gallery(rng)
    full_s, full_i = SpeakerIndex(metric=metric).fit(x, y).kneighbors(q, len(x))
    truth = full_i[:, :10]
    exact_of = np.empty_like(full_s)  # exact score of every (query, gallery item)
    np.put_along_axis(exact_of, full_i, full_s, 1)
    recalls = {}
    for n_probe in (1, 8):
        index = _speakers(metric=metric, n_probe_speakers=n_probe, hnsw_m=8, ef_search=16).fit(x, y)
        s, found = index.kneighbors(q, 10)
        assert ((found >= 0) & (found < len(x))).all()
        recalls[n_probe] = _recall(found, truth)
        # the probed items are scored exactly: each returned score is the exact backend's
        np.testing.assert_allclose(s, np.take_along_axis(exact_of, found, 1), rtol=2e-5, atol=1e-5)
    # 8 of 150 speakers are enough on this gallery; one is not (the floor is not met trivially)
    assert recalls[8] >= 0.95
    assert recalls[1] < recalls[8]


@needs_faiss
def test_speakers_shapes_missing_slots_predict_scores(rng):
    x, y, q = _speaker_gallery(rng, n_spk=30, per_speaker=20, n_queries=25)
    index = _speakers(n_probe_speakers=2, n_neighbors=50, batch_size=7).fit(x, y)
    s, i = index.kneighbors(q)
    assert s.shape == i.shape == (25, 50) and s.dtype == np.float32 and i.dtype == np.int64
    missing = i < 0
    assert (missing.sum(1) == 10).all(), "2 speakers x 20 items leave 10 of 50 slots empty"
    assert np.isneginf(s[missing]).all() and np.isfinite(s[~missing]).all()
    assert (np.diff(np.where(missing, -2.0, s), axis=1) <= 0).all()  # best first, missing last
    found = i[~missing].reshape(25, 40)
    assert all(len(set(row)) == 40 for row in found)
    assert all(np.unique(y[row]).size == 2 for row in found)  # two whole speakers
    pred = index.predict(q)
    assert pred.shape == (25,) and set(pred) <= set(y)
    sc = index.scores(q)  # always exact
    assert sc.shape == (25, 30)
    np.testing.assert_allclose(sc, SpeakerIndex().fit(x, y).scores(q), atol=1e-6)
    # euclidean: missing slots are +inf, distances ascending
    s, i = index.set_params(metric="euclidean").fit(x, y).kneighbors(q)
    assert np.isposinf(s[i < 0]).all() and (np.diff(np.where(i < 0, 1e9, s), axis=1) >= 0).all()


@needs_faiss
def test_speakers_one_item_per_label_is_hnsw_over_items(rng):
    x = rng.normal(size=(600, 16)).astype(np.float32)
    index = _speakers(n_probe_speakers=16, hnsw_m=16, ef_search=64).fit(x, np.arange(600))
    s, i = index.kneighbors(x[:50], 10)
    _, truth = SpeakerIndex().fit(x, np.arange(600)).kneighbors(x[:50], 10)
    assert (i[:, 0] == np.arange(50)).all()  # each item finds itself first
    assert _recall(i, truth) >= 0.9
    _, i = index.kneighbors(x[:5], 20)  # at most n_probe_speakers items can be found
    assert ((i >= 0).sum(1) == 16).all()


@needs_faiss
@pytest.mark.parametrize("copies", [3, 1100])  # 2 probed speakers x 1100 > 2048: the argpartition path
def test_speakers_ties_go_to_lower_gallery_index(rng, copies):
    dirs = rng.normal(size=(6, 8)).astype(np.float32)
    y = np.tile(np.arange(6), copies)  # speaker j: identical items at rows j, j + 6, j + 12, ...
    q = dirs + 0.01 * rng.normal(size=dirs.shape).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        index = _speakers(metric=metric, n_probe_speakers=2, hnsw_m=4).fit(dirs[y], y)
        s, i = index.kneighbors(q, 3)  # `copies` tied candidates for three slots: the lowest rows
        np.testing.assert_array_equal(i, np.arange(6)[:, None] + [0, 6, 12])
        assert (s == s[:, :1]).all()


@needs_faiss
def test_speakers_params(data):
    x, y, _ = data
    for bad in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match="n_probe_speakers must be a positive int"):
            _speakers(n_probe_speakers=bad).fit(x, y)
    with pytest.raises(ValueError, match="'speakers'"):
        SpeakerIndex(backend="faiss", faiss_index="speaker").fit(x, y)
    index = _speakers(n_probe_speakers=3, ef_search=20)
    params = index.get_params()
    assert params["n_probe_speakers"] == 3 and params["faiss_index"] == "speakers"
    assert SpeakerIndex().get_params()["n_probe_speakers"] == 16
    twin = clone(index)
    assert twin.get_params() == params and not hasattr(twin, "classes_")
    a, b = index.fit(x, y).kneighbors(x[:9], 5), twin.fit(x, y).kneighbors(x[:9], 5)
    np.testing.assert_array_equal(a[1], b[1])


def test_centroids_in_chunks(data, monkeypatch):
    x, y, _ = data
    index = SpeakerIndex(metric="euclidean").fit(x, y)
    ref = np.stack([x[y == c].mean(0) for c in index.classes_])
    for chunk in (1, 7, 50, 10**6):  # chunks of whole speakers; one speaker may exceed the chunk
        monkeypatch.setattr("spkid.search.index._CENTROID_CHUNK", chunk)
        np.testing.assert_allclose(index.centroids(), ref, atol=1e-5)


# ---------------------------------------------------------------- faiss_index="pq"
def _pq(**params):
    return SpeakerIndex(backend="faiss", faiss_index="pq", n_jobs=1, **params)


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pq_exhaustive_cases_are_exact(data, metric):
    x, y, q = data  # 400 items: codebooks are trained, but refine_factor x k may cover the gallery
    exact = SpeakerIndex(metric=metric).fit(x, y)
    for n, refine, k in ((400, 40, 10), (400, 1, 400), (200, 1, 5)):  # (200: too few items to train)
        index = _pq(metric=metric, refine_factor=refine, batch_size=16).fit(x[:n], y[:n])
        assert (index._faiss.pq is None) == (n < 256)
        ref = exact if n == 400 else SpeakerIndex(metric=metric).fit(x[:n], y[:n])
        s1, i1 = ref.kneighbors(q, k)
        s2, i2 = index.kneighbors(q, k)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, atol=1e-5)


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pq_recall_on_unstructured_gallery(rng, metric):
    # i.i.d. random gallery (no speaker structure for IVF/HNSW to exploit); queries: noisy items
    x = rng.normal(size=(6000, 64)).astype(np.float32)
    pick = rng.choice(6000, 150, replace=False)
    q = x[pick] + 0.4 * rng.normal(size=(150, 64)).astype(np.float32)
    full_s, full_i = SpeakerIndex(metric=metric).fit(x, np.arange(6000)).kneighbors(q, 6000)
    exact_of = np.empty_like(full_s)  # exact score of every (query, gallery item)
    np.put_along_axis(exact_of, full_i, full_s, 1)
    recalls = {}
    for refine in (1, 100):
        index = _pq(metric=metric, refine_factor=refine).fit(x, np.arange(6000))
        assert index._faiss.pq.pq.M == 16  # default: the largest divisor of 64 up to 64 / 4
        s, found = index.kneighbors(q, 10)
        assert ((found >= 0) & (found < 6000)).all()
        recalls[refine] = _recall(found, full_i[:, :10])
        # the candidates are re-scored exactly: every returned score is the exact backend's
        np.testing.assert_allclose(s, np.take_along_axis(exact_of, found, 1), rtol=2e-5, atol=1e-4)
        assert (found[:, 0] == pick).all()
    assert recalls[100] >= 0.95  # 1000 of 6000 candidates re-scored; measured 0.994 / 0.989
    assert recalls[1] < recalls[100]  # the PQ order alone is approximate (the floor is not met trivially)


@needs_faiss
def test_pq_params(data):
    x, y, _ = data
    for n in (400, 100):  # checked for small galleries too, which are searched exhaustively
        with pytest.raises(ValueError, match="pq_m must divide the embedding dimension 16, got 5"):
            _pq(pq_m=5).fit(x[:n], y[:n])
    for name, bad in (("refine_factor", 0), ("refine_factor", None), ("pq_m", 0), ("pq_m", 2.0)):
        with pytest.raises(ValueError, match=name):
            _pq(**{name: bad}).fit(x, y)
    index = _pq(pq_m=8, refine_factor=3).fit(x, y)
    assert index._faiss.pq.pq.M == 8
    assert SpeakerIndex().get_params()["refine_factor"] == 500
