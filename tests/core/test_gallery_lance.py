"""Galleries stored in LanceDB (spkid.search.lance_store, ``G.lance``) against the real embedded engine: the same
answers as in memory and as SQLite, a write killed before its commit point (a real subprocess), erasure checked
in the directory's bytes, checksums, ``spkid gallery convert`` both ways, and a clear error without LanceDB
installed. Other processes and concurrent writers: tests/core/test_gallery_store.py, run on both backends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spkid.app.cli import main
from spkid.errors import BackendError, GalleryError
from spkid.search.gallery import Gallery
from spkid.search.index import l2_normalize

D = 16
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lance():
    pytest.importorskip("lancedb")
    pytest.importorskip("lance")


def _child(code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=180, check=check)


def _answers(g: Gallery, q):
    return [(r.speaker, [(m.speaker, round(m.score, 5)) for m in r.candidates],
             [(n.utterance, round(n.score, 5)) for n in r.neighbours]) for r in g.identify(q, top_k=3)]


def _dir_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())


def _unit(rng, n):
    return l2_normalize(rng.normal(size=(n, D)).astype(np.float32))


def test_a_lance_gallery_answers_as_in_memory_and_persists(tmp_path, rng):
    _lance()
    x = _unit(rng, 12)
    names = [f"s{i % 4}" for i in range(12)]
    g = Gallery.open(tmp_path / "g.lance", metadata={"model": "m"}, threshold=0.2)
    g.enroll_many(names, x).enroll("late", x[:2] * 0.5 + 0.1, ids=["a", "b"]).enroll("s1", _unit(rng, 1), ids=["c"])
    mem = Gallery(threshold=0.2, index="exact")
    for s in g.speakers:
        mem.enroll(s, g.embeddings(s), ids=g.utterance_ids(s))
    again = Gallery.open(tmp_path / "g.lance", create=False)
    assert again.speakers == mem.speakers and again.metadata == {"model": "m"} and again.threshold == 0.2
    assert again.utterance_ids("s1")[-1] == "c" and again.n_utterances() == 15
    np.testing.assert_allclose(again.centroids(), mem.centroids(), atol=1e-6)
    q = rng.normal(size=(6, D))
    assert _answers(again, q) == _answers(mem, q)
    with pytest.raises(GalleryError, match="already enrolled"):
        again.enroll("late", x[:1], ids=["a"])
    assert Gallery.open(tmp_path / "g.lance").n_utterances() == 15 and again.verify() == 15
    with pytest.raises(GalleryError, match="no such LanceDB gallery"):
        Gallery.open(tmp_path / "missing.lance", create=False)


def test_a_write_killed_before_its_commit_point_leaves_the_previous_state(tmp_path, rng):
    _lance()
    path = tmp_path / "g.lance"
    Gallery.open(path).enroll("alice", _unit(rng, 3))
    before = Gallery.open(path)
    r = _child("""
        import os, signal, sys, numpy as np
        from spkid.search import lance_store
        from spkid.search.gallery import Gallery
        g = Gallery.open(sys.argv[1])
        # die (SIGKILL, as kill -9) when the json is about to name the new table version: rows appended, not committed
        lance_store.LanceStore._write_meta = lambda self, meta: os.kill(os.getpid(), signal.SIGKILL)
        g.enroll_many(["bob"] * 5 + ["alice"] * 2, np.random.default_rng(0).normal(size=(7, 16)))
    """, str(path), check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr
    after = Gallery.open(path)
    assert after.speakers == ["alice"] and after.n_utterances() == 3
    np.testing.assert_array_equal(after.embeddings("alice"), before.embeddings("alice"))
    after.enroll("carol", _unit(rng, 1))  # the next writer restores the table first
    assert Gallery.open(path).speakers == ["alice", "carol"] and Gallery.open(path).n_utterances() == 4


def test_remove_erases_the_speaker_from_the_directory(tmp_path, rng):
    _lance()
    path = tmp_path / "g.lance"
    g = Gallery.open(path)
    secret = _unit(rng, 3)
    # one write: eve's rows share a data file with keep's, which a plain delete would only mark deleted
    g.enroll_many(["keep"] * 4 + ["eve-the-speaker"] * 3, np.concatenate([_unit(rng, 4), secret]),
                  ids=[f"k{i}" for i in range(4)] + ["eve-utterance-0", "eve-utterance-1", "eve-utterance-2"])
    g.enroll("eve-the-speaker", _unit(rng, 1), ids=["eve-utterance-3"])  # a second chunk, another fragment
    rows = [r.astype("<f4").tobytes() for r in secret]
    data = _dir_bytes(path)
    assert all(r in data for r in rows) and b"eve-utterance" in data and b"eve-the-speaker" in data
    g.remove("eve-the-speaker")
    data = _dir_bytes(path)
    assert not any(r[:8] in data for r in rows)  # not even a fragment of a row
    assert b"eve-utterance" not in data and b"eve-the-speaker" not in data
    assert Gallery.open(path).speakers == ["keep"] and Gallery.open(path).n_utterances() == 4
    g.remove("keep")  # the last one: the table goes
    assert Gallery.open(path).speakers == [] and b"k0" not in _dir_bytes(path)


def test_checksums_catch_a_modified_row(tmp_path, rng):
    _lance()
    import lancedb

    path = tmp_path / "g.lance"
    Gallery.open(path).enroll("alice", _unit(rng, 3)).close()
    table = lancedb.connect(str(path)).open_table("utterances")
    table.update(where="utt = 'alice#1'", values={"vector": [0.5] * D})  # behind spkid's back
    meta = json.loads((path / "spkid-gallery.json").read_text())
    meta["table_version"] = table.version
    from spkid.search.storage import header_digest

    meta["header_sha256"] = header_digest(meta)
    (path / "spkid-gallery.json").write_text(json.dumps(meta))
    with pytest.raises(GalleryError, match="checksum mismatch in the rows of speaker 'alice'"):
        Gallery.open(path)
    meta["threshold"] = 0.9  # an edit of the json itself
    (path / "spkid-gallery.json").write_text(json.dumps(meta))
    with pytest.raises(GalleryError, match="spkid-gallery.json checksum mismatch"):
        Gallery.open(path)


def test_gallery_command_converts_between_sqlite_and_lance(tmp_path, rng, capsys):
    _lance()
    old = Gallery.open(tmp_path / "g.db", metadata={"model": "m"}, threshold=0.4)
    old.enroll("alice", _unit(rng, 3)).enroll("bob", _unit(rng, 2))
    assert main(["gallery", "convert", str(tmp_path / "g.db"), str(tmp_path / "g.lance")]) == 0
    new = Gallery.load(tmp_path / "g.lance")
    assert new.speakers == ["alice", "bob"] and new.threshold == 0.4 and new.metadata == {"model": "m"}
    np.testing.assert_array_equal(new.embeddings("alice"), old.embeddings("alice"))
    assert main(["gallery", "remove", "--gallery", str(tmp_path / "g.lance"), "bob"]) == 0
    assert main(["gallery", "verify", "--gallery", str(tmp_path / "g.lance")]) == 0
    assert main(["gallery", "list", "--gallery", str(tmp_path / "g.lance")]) == 0
    assert "alice\t3" in capsys.readouterr().out
    assert main(["gallery", "convert", str(tmp_path / "g.lance"), str(tmp_path / "back.db")]) == 0
    back = Gallery.load(tmp_path / "back.db")
    assert back.speakers == ["alice"]
    np.testing.assert_array_equal(back.embeddings("alice"), old.embeddings("alice"))


def test_without_lancedb_a_lance_path_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lancedb", None)  # import lancedb raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'spkid\[lancedb\]'"):
        Gallery.open(tmp_path / "g.lance")


def test_emptied_and_refilled_with_another_dimension(tmp_path, rng):
    _lance()
    path = tmp_path / "g.lance"
    g = Gallery.open(path, threshold=0.5)
    g.threshold = 0.3  # before any enrolment: the json alone
    g.enroll("a", _unit(rng, 2)).remove("a")
    assert Gallery.open(path).dim is None and Gallery.open(path).threshold == 0.3
    g.enroll("b", rng.normal(size=(2, 8)))  # the emptied table is made again for 8-d rows
    again = Gallery.open(path)
    assert again.speakers == ["b"] and again.dim == 8 and again.verify() == 2
