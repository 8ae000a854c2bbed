"""Galleries stored in SQLite (spkid.search.sqlite_store) and searched through the incremental index
(spkid.search.live_index): durability, several processes (real subprocesses), kill -9 before a commit,
erasure checked in the files' bytes, checksums, ``index="auto"`` exact on small galleries, and the
``spkid gallery`` command."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spkid.app.cli import main
from spkid.errors import GalleryError
from spkid.search.gallery import Gallery
from spkid.search.index import l2_normalize
from spkid.search.live_index import AUTO_EXACT_MAX_ROWS

D = 16
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child(code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (argv[1:] = args) with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=check)


def _answers(g: Gallery, q: np.ndarray, top_k: int = 3):
    return [(r.speaker, [(m.speaker, round(m.score, 5)) for m in r.candidates],
             [(n.utterance, round(n.score, 5)) for n in r.neighbours]) for r in g.identify(q, top_k=top_k)]


def test_enrolments_are_durable_and_match_the_in_memory_gallery(tmp_path, rng):
    x = rng.normal(size=(12, D)).astype(np.float32)
    names = [f"s{i % 4}" for i in range(12)]
    db = Gallery.open(tmp_path / "g.db", metadata={"model": "m"}, threshold=0.2)
    db.enroll_many(names, x)
    db.enroll("late", x[:2] + 1, ids=["a", "b"])
    mem = Gallery(threshold=0.2, index="exact").enroll_many(names, x).enroll("late", x[:2] + 1, ids=["a", "b"])
    again = Gallery.open(tmp_path / "g.db", create=False)
    assert again.speakers == mem.speakers and again.metadata == {"model": "m"} and again.threshold == 0.2
    assert again.utterance_ids("late") == ["a", "b"]
    np.testing.assert_allclose(again.centroids(), mem.centroids(), atol=1e-6)
    q = rng.normal(size=(5, D))
    assert _answers(again, q) == _answers(mem, q)
    with pytest.raises(GalleryError, match="already enrolled"):
        again.enroll("late", x[:1], ids=["a"])
    with pytest.raises(GalleryError, match="one name"):
        again.enroll_many(["x"], x[:2])
    assert Gallery.open(tmp_path / "g.db").n_utterances() == 14  # the refused writes left nothing


def _backend(name: str) -> str:
    if name.endswith(".lance"):  # the same tests on a LanceDB gallery (spkid.search.lance_store)
        pytest.importorskip("lancedb")
        pytest.importorskip("lance")
    return name


@pytest.mark.parametrize("name", ["g.db", "g.lance"])
def test_other_processes_see_enrolments_and_removals(tmp_path, rng, name):
    path = tmp_path / _backend(name)
    g = Gallery.open(path)
    g.enroll("alice", rng.normal(size=(3, D)))
    bob = rng.normal(size=(2, D)).astype(np.float32)
    np.save(tmp_path / "bob.npy", bob)
    _child("""
        import sys, numpy as np
        from spkid.search.gallery import Gallery
        g = Gallery.open(sys.argv[1])
        g.enroll("bob", np.load(sys.argv[2]))
        g.enroll("alice", np.ones((1, 16)), ids=["extra"])
    """, str(path), str(tmp_path / "bob.npy"))
    assert g.identify(bob[0])[0].speaker == "bob"  # caught up before answering
    assert g.n_utterances("alice") == 4 and g.utterance_ids("alice")[-1] == "extra"
    _child("import sys; from spkid.search.gallery import Gallery; Gallery.open(sys.argv[1]).remove('bob')", str(path))
    assert g.refresh().speakers == ["alice"]


@pytest.mark.parametrize("name", ["g.db", "g.lance"])
def test_concurrent_writers_lose_nothing(tmp_path, name):
    path = tmp_path / _backend(name)
    Gallery.open(path).close()
    code = textwrap.dedent("""
        import sys, numpy as np
        from spkid.search.gallery import Gallery
        g = Gallery.open(sys.argv[1])
        for i in range(15):
            g.enroll(f"{sys.argv[2]}{i % 5}", np.random.default_rng(i).normal(size=(1, 16)), ids=[f"{sys.argv[2]}-{i}"])
    """)
    env = {**os.environ, "PYTHONPATH": REPO}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag], env=env) for tag in ("a", "b", "c")]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    g = Gallery.open(path)
    assert len(g) == 15 and g.n_utterances() == 45


def test_a_write_killed_before_its_commit_leaves_the_previous_state(tmp_path, rng):
    path = tmp_path / "g.db"
    Gallery.open(path).enroll("alice", rng.normal(size=(3, D)))
    before = Gallery.open(path)
    r = _child("""
        import os, signal, sys, numpy as np
        from spkid.search.gallery import Gallery
        g = Gallery.open(sys.argv[1])
        # die (SIGKILL, as kill -9) when the transaction is about to commit: every row is written, none committed
        g._store.conn.set_trace_callback(lambda sql: os.kill(os.getpid(), signal.SIGKILL) if sql == "COMMIT" else None)
        g.enroll_many(["bob"] * 50 + ["alice"] * 5, np.random.default_rng(0).normal(size=(55, 16)))
    """, str(path), check=False)
    assert r.returncode == -signal.SIGKILL
    after = Gallery.open(path)
    assert after.speakers == ["alice"] and after.n_utterances() == 3
    np.testing.assert_array_equal(after.embeddings("alice"), before.embeddings("alice"))


def _file_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # g.db, g.db-wal, g.db-shm


def test_remove_erases_the_embeddings_from_the_files(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    g.enroll("keep", rng.normal(size=(4, D)))
    secret = l2_normalize(rng.normal(size=(3, D)).astype(np.float32))
    g.enroll("eve", secret, ids=["eve-utterance-id-0", "eve-utterance-id-1", "eve-utterance-id-2"])
    g.enroll("eve", l2_normalize(rng.normal(size=(1, D)).astype(np.float32)))  # an older row version too
    rows = [r.astype("<f4").tobytes() for r in g.embeddings("eve")[:3]]  # as stored
    assert all(r in _file_bytes(path) for r in rows) and b"eve-utterance-id" in _file_bytes(path)
    g.remove("eve")
    data = _file_bytes(path)
    assert not any(r in data for r in rows) and b"eve-utterance-id" not in data
    assert not any(r[:8] in data for r in rows)  # not even a fragment of a row
    assert Gallery.open(path).speakers == ["keep"]


def corrupt_a_row(path, byte: int = 5) -> None:
    """Flip one byte of the first speaker row's embeddings in the database, behind spkid's back."""
    con = sqlite3.connect(path)
    blob = bytearray(con.execute("SELECT embeddings FROM speakers").fetchone()[0])
    blob[byte] ^= 0xFF
    con.execute("UPDATE speakers SET embeddings = ?", (bytes(blob),))
    con.commit()
    con.close()


def test_checksums_catch_a_modified_row(tmp_path, rng):
    path = tmp_path / "g.db"
    Gallery.open(path).enroll("alice", rng.normal(size=(3, D))).close()
    corrupt_a_row(path)
    with pytest.raises(GalleryError, match="checksum mismatch in the row of speaker 'alice'"):
        Gallery.open(path)
    with pytest.raises(GalleryError, match="no such gallery database"):
        Gallery.open(tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(GalleryError, match="junk.db"):
        Gallery.open(tmp_path / "junk.db")


def _clustered(rng, n_speakers: int, per: int, spread: float = 0.7):
    dirs = l2_normalize(rng.normal(size=(n_speakers, D)).astype(np.float32))
    spk = np.repeat(np.arange(n_speakers), per)
    noise = l2_normalize(rng.normal(size=(spk.size, D)).astype(np.float32))
    return dirs, spk, l2_normalize(spread * dirs[spk] + np.sqrt(1 - spread ** 2) * noise)


def test_auto_is_exact_on_small_galleries(rng):
    _, spk, x = _clustered(rng, 60, 5)
    auto = Gallery(index="auto").enroll_many([f"s{j}" for j in spk], x)
    exact = Gallery(index="exact").enroll_many([f"s{j}" for j in spk], x)
    assert auto.search_mode() == "exact"
    q = rng.normal(size=(20, D))
    assert _answers(auto, q, top_k=5) == _answers(exact, q, top_k=5)


def test_auto_goes_approximate_above_the_threshold_and_stays_incremental(rng):
    pytest.importorskip("faiss")
    n_spk, per = AUTO_EXACT_MAX_ROWS // 8 + 50, 8
    dirs, spk, x = _clustered(rng, n_spk, per)
    g = Gallery(index="auto").enroll_many([f"s{j}" for j in spk], x)
    assert g.search_mode() == "speakers"
    q = l2_normalize(0.7 * dirs[:200] + 0.71 * l2_normalize(rng.normal(size=(200, D)).astype(np.float32)))
    approx = [r.speaker for r in g.identify(q)]
    g.index = "exact"
    exact = [r.speaker for r in g.identify(q)]
    assert np.mean([a == e for a, e in zip(approx, exact)]) >= 0.97
    g.index = "auto"
    g.identify(q[0])
    codes = g._live._pq_cent
    g.enroll("newcomer", dirs[5] * 0 + q[7])  # a new speaker after the codes were built
    g.enroll("s3", q[3])                       # an existing one whose centroid moves
    r = g.identify(np.stack([q[7], q[3]]))
    assert r[0].speaker == "newcomer" and r[1].neighbours[0].score == pytest.approx(1.0, abs=1e-5)
    assert g._live._pq_cent is codes  # appended to, not rebuilt
    g.remove("newcomer")
    assert g.identify(q[7])[0].speaker != "newcomer"


def test_gallery_command_converts_lists_and_removes(tmp_path, rng, capsys):
    old = Gallery(metadata={"model": "m"}, threshold=0.4)
    old.enroll("alice", rng.normal(size=(3, D))).enroll("bob", rng.normal(size=(2, D))).save(tmp_path / "g")
    assert main(["gallery", "convert", str(tmp_path / "g"), str(tmp_path / "g.db")]) == 0
    new = Gallery.load(tmp_path / "g.db")
    assert new.speakers == ["alice", "bob"] and new.threshold == 0.4 and new.metadata == {"model": "m"}
    np.testing.assert_array_equal(new.embeddings("alice"), old.embeddings("alice"))
    assert main(["gallery", "list", "--gallery", str(tmp_path / "g.db")]) == 0
    assert "alice\t3" in capsys.readouterr().out
    assert main(["gallery", "remove", "--gallery", str(tmp_path / "g.db"), "bob"]) == 0
    assert b"bob" not in _file_bytes(tmp_path / "g.db")
    assert main(["gallery", "remove", "--gallery", str(tmp_path / "g.db"), "nobody"]) == 2
    assert "not enrolled: 'nobody'" in capsys.readouterr().err
    assert main(["gallery", "convert", str(tmp_path / "g.db"), str(tmp_path / "back")]) == 0
    assert Gallery.load(tmp_path / "back").speakers == ["alice"]
