"""spkid.inference.embeddings: the embeddings file of ``spkid embed`` written, read back and checked."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from spkid.errors import SpkidError
from spkid.errors import EmbeddingsError
from spkid.inference.embeddings import Embeddings, load_embeddings, save_embeddings


def _example() -> Embeddings:
    rng = np.random.default_rng(0)
    return Embeddings.from_labels(rng.normal(size=(5, 4)), [f"u{i}.wav" for i in range(5)],
                                  ["bob", "amy", "bob", "cy", "amy"], model="runs/r1")


def test_from_labels_sorts_speakers_and_averages():
    e = _example()
    assert e.speakers == ("amy", "bob", "cy") and e.speaker_of.tolist() == [1, 0, 1, 2, 0]
    assert e.speaker_labels == ["bob", "amy", "bob", "cy", "amy"] and len(e) == 5 and e.dim == 4
    np.testing.assert_allclose(e.speaker_embeddings[0], e.embeddings[[1, 4]].mean(0), rtol=1e-6)
    vectors, ids = e.of_speaker("bob")
    assert ids == ["u0.wav", "u2.wav"] and vectors.shape == (2, 4)


def test_save_and_load_round_trip(tmp_path):
    e = _example()
    out = save_embeddings(tmp_path / "emb", e)  # .npz added
    assert out == tmp_path / "emb.npz"
    with np.load(out, allow_pickle=False) as z:  # the documented keys, no pickle
        assert sorted(z.files) == sorted(["embeddings", "ids", "speaker_of", "speakers", "speaker_embeddings"])
    meta = json.loads((tmp_path / "emb.json").read_text())
    assert meta == {"model": "runs/r1", "ids": list(e.ids), "speakers": ["amy", "bob", "cy"],
                    "speaker_of": [1, 0, 1, 2, 0], "dim": 4}
    back = load_embeddings(out)
    assert back.ids == e.ids and back.speakers == e.speakers and back.model == "runs/r1"
    np.testing.assert_array_equal(back.embeddings, e.embeddings)
    np.testing.assert_array_equal(back.speaker_of, e.speaker_of)
    np.testing.assert_array_equal(back.speaker_embeddings, e.speaker_embeddings)
    (tmp_path / "emb.json").unlink()  # the .npz alone is enough
    assert load_embeddings(out).model is None


def _npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def _arrays(**changes):
    e = _example()
    arrays = {"embeddings": e.embeddings, "ids": np.asarray(e.ids), "speaker_of": e.speaker_of,
              "speakers": np.asarray(e.speakers), "speaker_embeddings": e.speaker_embeddings}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("changes,words", [
    ({"speaker_of": None}, ["no speaker_of"]),
    ({"speaker_of": np.asarray([0, 1, 2, 3, 0])}, ["index the 3 speakers"]),
    ({"speaker_of": np.zeros(4, np.int64)}, ["speaker_of must be 5"]),
    ({"ids": np.asarray(["a"])}, ["ids must be 5"]),
    ({"embeddings": np.zeros(5, np.float32)}, ["(N, E)"]),
    ({"speaker_embeddings": np.zeros((3, 2), np.float32)}, ["speaker_embeddings must be (3, 4)"]),
    ({"embeddings": np.full((5, 4), np.nan, np.float32)}, ["not all finite"]),
])
def test_inconsistent_files_are_refused_naming_the_file(tmp_path, changes, words):
    path = _npz(tmp_path / "bad.npz", **_arrays(**changes))
    with pytest.raises(EmbeddingsError) as err:
        load_embeddings(path)
    assert str(path) in str(err.value) and isinstance(err.value, SpkidError)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("content,word", [(None, "not found"), (b"not a zip", "not a readable .npz")])
def test_missing_or_corrupt_files(tmp_path, content, word):
    path = tmp_path / "e.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EmbeddingsError, match=word) as err:
        load_embeddings(path)
    assert str(path) in str(err.value)


def test_pickled_arrays_are_refused(tmp_path):
    path = _npz(tmp_path / "p.npz", **_arrays(ids=np.asarray([object()] * 5, dtype=object)))
    with pytest.raises(EmbeddingsError, match="not a readable .npz"):
        load_embeddings(path)
