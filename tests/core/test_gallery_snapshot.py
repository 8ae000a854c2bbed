"""The memory-mapped snapshot of a SQLite gallery (spkid.search.snapshot): opening through it gives the same
gallery as reading every row, changes after it are read from the database, a removal erases the speaker from
the snapshot file too, and corrupted snapshot bytes are caught by their checksums and read from the database."""
from __future__ import annotations

import numpy as np
import pytest

from spkid.errors import GalleryError
from spkid.search import stored
from spkid.search.gallery import Gallery
from spkid.search.index import l2_normalize
from spkid.search.snapshot import zero_extent
from spkid.search.sqlite_store import SQLiteStore
from tests.core.test_gallery_store import corrupt_a_row

D = 16


def _unit(rng, n):
    return l2_normalize(rng.normal(size=(n, D)).astype(np.float32))


def _answers(g: Gallery, q):
    return [(r.speaker, [(m.speaker, round(m.score, 5)) for m in r.candidates],
             [(n.utterance, round(n.score, 5)) for n in r.neighbours]) for r in g.identify(q, top_k=3)]


def _snapshots(path):
    return sorted(p.name for p in path.parent.glob(path.name + "-snap*"))


def _settled(path, **kw) -> Gallery:
    g = Gallery.open(path, create=False, **kw)
    g._settle(wait=True)
    return g


def test_opening_through_the_snapshot_equals_reading_every_row(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path, metadata={"model": "m"})
    mem = Gallery(index="exact")
    for i in range(6):
        x = _unit(rng, 3)
        g.enroll(f"s{i}", x)
        mem.enroll(f"s{i}", x)
    written = g.snapshot()
    assert written is not None and _snapshots(path) == [written.name]
    x = _unit(rng, 2)
    g.enroll("s2", x)          # an existing speaker, after the snapshot
    mem.enroll("s2", x)
    g.enroll("late", x[:1])    # a new one
    mem.enroll("late", x[:1])
    g.remove("s4")
    mem.remove("s4")
    again = _settled(path)
    assert again._covered == 15  # five speakers of three rows from the snapshot, the rest from the database
    assert again.speakers == mem.speakers and again.utterance_ids("s2") == mem.utterance_ids("s2")
    np.testing.assert_allclose(again.centroids(), mem.centroids(), atol=1e-6)
    q = rng.normal(size=(8, D))
    assert _answers(again, q) == _answers(mem, q)
    again.enroll("s0", _unit(rng, 1))  # appends into the mapped rows (copy-on-write: the file is not touched)
    assert Gallery.open(path, create=False).n_utterances("s0") == 4
    assert _answers(_settled(path), q) == _answers(again, q)


def test_a_removal_erases_the_speaker_from_the_snapshot_file(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    g.enroll("keep", _unit(rng, 4))
    secret = _unit(rng, 3)
    g.enroll("eve", secret, ids=["eve-utt-0", "eve-utt-1", "eve-utt-2"])
    snap = g.snapshot()
    rows = [r.astype("<f4").tobytes() for r in secret]
    assert all(r in snap.read_bytes() for r in rows)
    (tmp_path / ".g.db-snap99.x.tmp").write_bytes(secret.tobytes())  # a snapshot writer killed half-way
    other = Gallery.open(path, create=False)  # another process that mapped the snapshot
    g.remove("eve")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not any(r[:8] in data for r in rows) and b"eve-utt" not in data
    assert _snapshots(path) == [snap.name] and not (tmp_path / ".g.db-snap99.x.tmp").exists()
    assert other.refresh().speakers == ["keep"] and _settled(path).speakers == ["keep"]


def test_corrupted_snapshot_bytes_are_caught_and_read_from_the_database(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    for name in ("alice", "bob", "carol"):
        g.enroll(name, _unit(rng, 3))
    want = g.embeddings("bob").copy()
    snap = g.snapshot()
    info = SQLiteStore(path, create=False).snapshot_state()
    bob = next(e for e in info[1] if e[0] == "bob")
    data = bytearray(snap.read_bytes())
    data[bob[2] * D * 4 + 5] ^= 0xFF  # one byte of bob's rows
    snap.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"g\.db-snap\d+: the snapshot rows of 1 speaker\(s\) \('bob'\) fail"):
        again = Gallery.open(path, create=False)
        again.refresh()  # the check ran in the background; the next call settles it
        again._settle(wait=True)
    np.testing.assert_array_equal(again.embeddings("bob"), want)
    assert again.speakers == ["alice", "bob", "carol"]


def test_a_removal_killed_after_zeroing_the_snapshot_leaves_the_speaker(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    g.enroll("alice", _unit(rng, 2)).enroll("bob", _unit(rng, 2))
    want = g.embeddings("bob").copy()
    g.snapshot()
    store = SQLiteStore(path, create=False)
    info, entries = store.snapshot_state()
    _, slot, start, n, _, _ = next(e for e in entries if e[0] == "bob")
    zero_extent(path, info, slot, start, n)  # the removal's first step, then it died before its commit
    with pytest.warns(RuntimeWarning, match="'bob'"):
        again = _settled(path)
    np.testing.assert_array_equal(again.embeddings("bob"), want)


def test_the_database_rows_a_snapshot_covers_are_checked_too(tmp_path, rng):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    g.enroll("alice", _unit(rng, 3))
    g.snapshot()
    g.close()
    corrupt_a_row(path)
    again = Gallery.open(path, create=False)  # served from the (intact) snapshot, the row checked in the background
    for call in (lambda: again._settle(wait=True), lambda: again.identify(_unit(rng, 1)), again.verify):
        with pytest.raises(GalleryError, match=r"g\.db: checksum mismatch in the row of speaker 'alice'"):
            call()


def test_opening_writes_a_snapshot_when_it_read_many_rows(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(stored, "AUTO_ROWS", 10)
    path = tmp_path / "g.db"
    Gallery.open(path).enroll_many([f"s{i % 3}" for i in range(12)], _unit(rng, 12)).close()
    assert _snapshots(path) == []  # enrolling never writes one
    first = Gallery.open(path, create=False)
    assert first._covered == 12 and len(_snapshots(path)) == 1
    assert _settled(path)._covered == 12
    assert Gallery.open(path, create=False, snapshot=False)._covered == 0  # every row read from the database


def test_gallery_command_snapshots_and_verifies(tmp_path, rng, capsys):
    from spkid.app.cli import main

    path = tmp_path / "g.db"
    Gallery.open(path).enroll("alice", _unit(rng, 3)).close()
    assert main(["gallery", "snapshot", "--gallery", str(path)]) == 0
    assert "snapshot of 3 utterance(s) written" in capsys.readouterr().out and len(_snapshots(path)) == 1
    assert main(["gallery", "verify", "--gallery", str(path)]) == 0
    assert "1 stored row(s), every checksum matches" in capsys.readouterr().out
    corrupt_a_row(path)
    assert main(["gallery", "verify", "--gallery", str(path)]) == 2
    assert "checksum mismatch in the row of speaker 'alice'" in capsys.readouterr().err
