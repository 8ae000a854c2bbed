"""``spkid enroll`` / ``spkid identify`` end to end with a tiny torch model trained on real FSDD speech."""
from __future__ import annotations

import numpy as np
import pytest

from spkid.app.cli import main
from tests import enroll_support as es

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(fsdd_dir, tmp_path_factory):
    return es.train_tiny("torch", fsdd_dir, tmp_path_factory.mktemp("enroll") / "run")


def enroll(model, gallery, *args: str) -> int:
    return main(["enroll", "--model", str(model), "--gallery", str(gallery), "--no-progress", *map(str, args)])


def test_round_trip_and_readable_table(run, fsdd_dir, tmp_path, capsys):
    es.check_round_trip(capsys, run, fsdd_dir, tmp_path)
    clip = fsdd_dir / "3_lucas_30.wav"
    assert main(["identify", "--model", str(run), "--gallery", str(tmp_path / "gallery"), "--no-progress",
                 "--top-k", "2", "--threshold", "1.01", str(clip)]) == 0
    out = capsys.readouterr().out
    assert f"{clip}: unknown (best " in out and "< threshold 1.010" in out  # nothing reaches cosine 1.01
    assert "closest enrolled utterances" in out and "7 speaker(s), 61 utterance(s)" in out


def test_onnx_export_shares_the_checkpoints_gallery(run, fsdd_dir, tmp_path, capsys):
    from spkid.inference.export import export_model

    onnx = export_model(run, tmp_path / "model.onnx")
    gallery = tmp_path / "g"
    assert enroll(onnx, gallery, "george", *es.fsdd_files(fsdd_dir, "george", [20])[:3]) == 0
    assert enroll(run, gallery, "theo", *es.fsdd_files(fsdd_dir, "theo", [20])[:3]) == 0  # same weights: accepted
    clips = [fsdd_dir / "1_george_30.wav", fsdd_dir / "1_theo_30.wav"]
    by_ckpt = es.identify_json(capsys, run, gallery, clips)["results"]
    by_onnx = es.identify_json(capsys, onnx, gallery, clips)["results"]
    for a, b in zip(by_ckpt, by_onnx):
        assert [c["speaker"] for c in a["candidates"]] == [c["speaker"] for c in b["candidates"]]
        np.testing.assert_allclose([c["score"] for c in a["candidates"]], [c["score"] for c in b["candidates"]],
                                   atol=1e-4)


def test_enrolling_again_updates_the_centroid(run, fsdd_dir, tmp_path, capsys):
    from spkid.search.gallery import Gallery
    from spkid.inference.embedder import embed_files, load_embedder

    files = es.fsdd_files(fsdd_dir, "nicolas", [20])[:4]
    gallery = tmp_path / "g"
    assert enroll(run, gallery, "nicolas", *files[:2]) == 0
    before = Gallery.load(gallery).centroids()[0]
    capsys.readouterr()
    assert enroll(run, gallery, "nicolas", *files[1:]) == 0
    out = capsys.readouterr().out
    assert "+2 utterance(s), 4 in all (centroid updated)" in out
    assert f"skipped {files[1]}: already enrolled for 'nicolas'" in out
    after = Gallery.load(gallery)
    emb, ok, _ = embed_files(files, load_embedder(run))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert after.n_utterances("nicolas") == 4 and not np.allclose(after.centroids()[0], before, atol=1e-4)
    np.testing.assert_allclose(after.centroids()[0], unit.mean(axis=0), atol=1e-5)


def test_bad_files_are_skipped_with_a_summary(run, fsdd_dir, tmp_path, capsys):
    text, empty, missing = tmp_path / "notes.wav", tmp_path / "empty.wav", tmp_path / "missing.wav"
    text.write_text("not audio")
    empty.write_bytes(b"")
    good = fsdd_dir / "2_jackson_20.wav"
    gallery = tmp_path / "g"
    assert enroll(run, gallery, "jackson", text, good, empty, missing) == 0
    out = capsys.readouterr().out
    assert all(f"skipped {p}" in out for p in (text, empty, missing))
    assert "enrolled 1 file(s), skipped 3" in out
    assert enroll(run, tmp_path / "none", "jackson", text, missing) == 1  # nothing enrolled: no gallery
    assert "nothing enrolled" in capsys.readouterr().out and not (tmp_path / "none.json").exists()
    out = es.identify_json(capsys, run, gallery, [missing, good])
    assert [r["clip"] for r in out["results"]] == [str(good)] and out["skipped"][0]["clip"] == str(missing)
    assert main(["identify", "--model", str(run), "--gallery", str(gallery), "--no-progress", str(text)]) == 1


def test_gallery_of_another_model_is_refused(run, fsdd_dir, tmp_path, capsys):
    from tests.export_support import tiny_run

    gallery = tmp_path / "g"
    assert enroll(run, gallery, "lucas", fsdd_dir / "4_lucas_20.wav") == 0
    saved = (tmp_path / "g.json").read_bytes(), (tmp_path / "g.npz").read_bytes()
    other_features = tiny_run("torch", tmp_path / "n_mels20")  # 20 mel bands
    other_weights = es.train_tiny("torch", fsdd_dir, tmp_path / "seed1", seed=1)  # same config, other weights
    capsys.readouterr()
    assert enroll(other_features, gallery, "lucas", fsdd_dir / "5_lucas_20.wav") == 2
    err = capsys.readouterr().err
    assert "made with another feature_config" in err and "n_mels: gallery 40 vs model 20" in err
    assert str(tmp_path / "g.json") in err
    assert main(["identify", "--model", str(other_weights), "--gallery", str(gallery), "--no-progress",
                 str(fsdd_dir / "5_lucas_20.wav")]) == 2
    assert "made with other trained weights" in capsys.readouterr().err
    assert ((tmp_path / "g.json").read_bytes(), (tmp_path / "g.npz").read_bytes()) == saved


def test_missing_gallery_and_usage_errors(run, fsdd_dir, tmp_path, capsys):
    clip = fsdd_dir / "0_theo_30.wav"
    assert main(["identify", "--model", str(run), "--gallery", str(tmp_path / "nowhere"), str(clip)]) == 2
    err = capsys.readouterr().err
    assert "gallery file not found" in err and str(tmp_path / "nowhere.json") in err
    assert enroll(run, tmp_path / "g") == 2  # neither NAME FILE... nor --from-dir
    assert "give a speaker NAME" in capsys.readouterr().err
    assert enroll(run, tmp_path / "g", "--from-dir", tmp_path / "absent") == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_sqlite_gallery_through_the_commands(run, fsdd_dir, tmp_path, capsys):
    """G.db: each enrolment written through (no save step), the same answers as the npz pair, any --index."""
    db, pair = tmp_path / "g.db", tmp_path / "pair"
    for s in ("george", "theo", "lucas"):
        files = es.fsdd_files(fsdd_dir, s, [20])[:3]
        assert enroll(run, db, s, *files) == 0 and enroll(run, pair, s, *files) == 0
    assert not (tmp_path / "g.db.json").exists()
    clips = [fsdd_dir / "1_george_30.wav", fsdd_dir / "1_theo_30.wav", fsdd_dir / "1_lucas_30.wav"]
    want = es.identify_json(capsys, run, pair, clips)["results"]
    for index in ("auto", "exact", "speakers", "pq"):
        got = es.identify_json(capsys, run, db, clips, "--index", index)["results"]
        assert [r["candidates"] for r in got] == [r["candidates"] for r in want]
    assert main(["gallery", "remove", "--gallery", str(db), "theo"]) == 0
    assert [r["speaker"] for r in es.identify_json(capsys, run, db, clips[1:2])["results"]] != ["theo"]


def test_enroll_and_identify_through_a_lance_gallery(run, fsdd_dir, tmp_path, capsys):
    pytest.importorskip("lancedb")
    pytest.importorskip("lance")
    gallery = tmp_path / "voices.lance"
    solo = fsdd_dir / "7_theo_40.wav"
    assert enroll(run, gallery, "george", *es.fsdd_files(fsdd_dir, "george", [20])[:3]) == 0
    assert enroll(run, gallery, "solo", solo) == 0
    me = es.identify_json(capsys, run, gallery, [solo])["results"][0]
    assert me["speaker"] == "solo" and me["score"] > 0.9999
    assert me["neighbours"][0]["utterance"] == str(solo.absolute())
    assert main(["gallery", "remove", "--gallery", str(gallery), "solo"]) == 0
    assert es.identify_json(capsys, run, gallery, [solo])["results"][0]["speaker"] == "george"
