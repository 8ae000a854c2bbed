"""Bad gallery files give a GalleryError naming the file, never a traceback or an unpickle."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from spkid.errors import GalleryError
from spkid.search.gallery import Gallery
from spkid.search.storage import header_digest

D = 8


@pytest.fixture
def saved(tmp_path, rng):
    g = Gallery(metadata={"model": "resnet18"})
    g.enroll("ann", rng.normal(size=(3, D))).enroll("bob", rng.normal(size=(2, D)))
    jpath = g.save(tmp_path / "gal")
    return jpath, tmp_path / "gal.npz"


def _arrays(npath):
    with np.load(npath) as z:
        return {k: z[k] for k in z.files}


def _rewrite(jpath, npath, arrays=None, raw=None, allow_pickle=False, **header_changes):
    """Replace the npz (by arrays or raw bytes) and keep the json checksum consistent with it."""
    if raw is None:
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=allow_pickle, **arrays)
        raw = buf.getvalue()
    npath.write_bytes(raw)
    header = json.loads(jpath.read_text())
    header.update(npz_sha256=hashlib.sha256(raw).hexdigest(), **header_changes)
    _reseal(jpath, header)


def _reseal(jpath, header):
    """Write ``header`` with a recomputed header checksum: an attacker who knows the format, so the
    deeper consistency checks (not the checksum) must catch the tampering."""
    header["header_sha256"] = header_digest(header)
    jpath.write_text(json.dumps(header))


def _fails(path_in_message, match, load_path):
    with pytest.raises(GalleryError, match=match) as exc:
        Gallery.load(load_path)
    assert str(path_in_message) in str(exc.value)


def test_missing_files(saved):
    jpath, npath = saved
    npath.unlink()
    _fails(npath, "not found", jpath)
    jpath.unlink()
    _fails(jpath, "not found", jpath)


@pytest.mark.parametrize("cut", [0, 10, -7])
def test_truncated_json(saved, cut):
    jpath, _ = saved
    text = jpath.read_text()
    jpath.write_text(text[:cut] if cut else "")
    _fails(jpath, "corrupt or truncated", jpath)


def test_truncated_npz_fails_checksum(saved):
    jpath, npath = saved
    npath.write_bytes(npath.read_bytes()[:-50])
    _fails(npath, "checksum mismatch", jpath)


def test_truncated_npz_with_matching_checksum_is_corrupt(saved):
    jpath, npath = saved
    _rewrite(jpath, npath, raw=npath.read_bytes()[:-50])
    _fails(npath, "corrupt gallery arrays", jpath)


def test_flipped_byte_fails_checksum(saved):
    jpath, npath = saved
    data = bytearray(npath.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npath.write_bytes(bytes(data))
    _fails(npath, "checksum mismatch", jpath)


@pytest.mark.parametrize("field,value,match", [
    ("format", "other", "not a spkid gallery"),
    ("version", 99, "unsupported gallery version 99"),
    ("speakers", ["ann", "eve"], "utterance_ids|centroid"),
    ("speakers", ["bob", "ann"], "sorted"),
    ("dim", 9, "do not match header"),
    ("n_utterances", 4, "do not match header"),
    ("utterance_ids", [["a"], ["b", "c"]], "utterance_ids"),
    ("threshold", "high", "threshold"),
    ("npz", "../elsewhere.npz", "bare file name"),
    ("metadata", [], "metadata"),
])
def test_tampered_json(saved, field, value, match):
    jpath, _ = saved
    header = json.loads(jpath.read_text())
    header[field] = value
    if field == "speakers" and value == ["ann", "eve"]:
        header["utterance_ids"] = header["utterance_ids"][:1] + [["e1"]]  # counts now disagree
    _reseal(jpath, header)
    with pytest.raises(GalleryError, match=match) as exc:
        Gallery.load(jpath)
    assert "gal." in str(exc.value)


@pytest.mark.parametrize("field,value", [("speakers", ["ann", "eve"]), ("threshold", 0.99),
                                         ("metadata", {"model": "vgg_attention"})])
def test_edited_header_fails_its_checksum(saved, field, value):
    """A hand-edited header (a renamed speaker, a changed threshold or model) is refused."""
    jpath, _ = saved
    header = json.loads(jpath.read_text())
    header[field] = value
    jpath.write_text(json.dumps(header))
    _fails(jpath, "header checksum mismatch", jpath)


def test_wrong_dims(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["embeddings"] = np.zeros((5, D + 1), np.float32)
    _rewrite(jpath, npath, a)
    _fails(npath, r"embeddings \(5, 9\).*dim 8", jpath)


def test_nan_rows(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["embeddings"][3] = np.nan
    _rewrite(jpath, npath, a)
    _fails(npath, r"NaN.*rows \[3\]", jpath)


def test_label_counts_mismatch(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["counts"] = np.array([2, 3])
    _rewrite(jpath, npath, a)
    _fails(npath, "label counts", jpath)


def test_centroid_mismatch(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["centroids"] = a["centroids"][::-1].copy()
    _rewrite(jpath, npath, a)
    _fails(npath, "centroid of 'ann'", jpath)


def test_wrong_dtype(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["labels"] = a["labels"].astype(np.float32)
    _rewrite(jpath, npath, a)
    _fails(npath, "'labels'.*int", jpath)


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_never_unpickled(saved, tmp_path):
    jpath, npath = saved
    marker = tmp_path / "PWNED"
    a = _arrays(npath)
    a["labels"] = np.array([_Payload(marker)] * 5, dtype=object)
    _rewrite(jpath, npath, a, allow_pickle=True)
    _fails(npath, "corrupt gallery arrays.*pickle", jpath)
    assert not marker.exists()


def test_extra_array_rejected(saved):
    jpath, npath = saved
    a = _arrays(npath)
    a["extra"] = np.zeros(3)
    _rewrite(jpath, npath, a)
    _fails(npath, "expected arrays", jpath)
