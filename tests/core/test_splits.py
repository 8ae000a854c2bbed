"""spkid.data.manifest, spkid.data.splitting, spkid.data.labels and spkid.data.layouts: every dataset layout on small
fake trees, seeded splits, manifests, label maps."""
from __future__ import annotations

import pkgutil
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spkid.data.layouts as layouts_pkg
from spkid.errors import SplitError
from spkid.data.labels import LabelMap
from spkid.data.layouts.base import Layout, register_layout, registered_layouts
from spkid.data.layouts.registry import LAYOUTS, detect_layout, load_dataset
from spkid.data.layouts.voxceleb import parse_iden_split
from spkid.data.manifest import AUDIO_EXTENSIONS, Manifest, Utterance, read_manifest, write_manifest
from spkid.data.splitting import assign_splits, check_closed_set, split_by, split_by_regex


def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


# ------------------------------------------------------------------------------------------- VoxCeleb
def test_voxceleb1_iden_split_with_messy_whitespace(tmp_path):
    files = ["id10001/1zcIwhmdeo4/00001.wav", "id10001/1zcIwhmdeo4/00002.wav", "id10002/xTV-jFAUKcw/00001.wav",
             "id10002/xTV-jFAUKcw/00002.wav", "id10002/xTV-jFAUKcw/00003.wav"]
    touch(tmp_path / "wav", *files)
    text = (
        "\ufeff1 id10001/1zcIwhmdeo4/00001.wav\r\n"
        "3\tid10001/1zcIwhmdeo4/00002.wav\r\n"
        "\r\n"
        "1  id10002/xTV-jFAUKcw/00001.wav\n"
        "  2 \t id10002/xTV-jFAUKcw/00002.wav   \n"
        "3 id10002/xTV-jFAUKcw/00003.wav\n"
        "1 id10003/missing/00001.wav\n"
    )
    (tmp_path / "iden_split.txt").write_bytes(text.encode("utf-8"))
    assert detect_layout(tmp_path)[0] == "voxceleb1-split"
    m = load_dataset(tmp_path)
    assert m.root == tmp_path / "wav"
    got = {(u.path, u.speaker, u.split) for u in m}
    assert got == {
        (files[0], "id10001", "train"), (files[1], "id10001", "test"), (files[2], "id10002", "train"),
        (files[3], "id10002", "val"), (files[4], "id10002", "test"),
    }
    assert any("missing" in n and "id10003/missing/00001.wav" in n for n in m.notes)
    assert len(parse_iden_split(tmp_path / "iden_split.txt")) == 6


def test_voxceleb2_tree_m4a(tmp_path):
    files = [f"aac/id{s:05d}/vid{v}/{n:05d}.m4a" for s in (12, 13) for v in range(2) for n in range(1, 6)]
    touch(tmp_path, *files, "aac/id00012/vid0/notes.txt", "aac/id00012/stray.m4a")
    assert detect_layout(tmp_path)[0] == "voxceleb"
    m = load_dataset(tmp_path, seed=3)
    assert m.root == tmp_path / "aac"
    assert sorted(u.path for u in m) == sorted(f[len("aac/"):] for f in files)
    assert m.speakers == ["id00012", "id00013"]
    check_closed_set(m)


# ----------------------------------------------------------------------------------------------- VCTK
def test_vctk_080_with_speaker_info(tmp_path):
    touch(tmp_path, *[f"wav48/p{s}/p{s}_{i:03d}.wav" for s in (225, 226) for i in range(1, 11)], "txt/p225/p225_001.txt")
    (tmp_path / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n226  22  M    English    Surrey\n"
    )
    assert detect_layout(tmp_path)[0] == "vctk"
    m = load_dataset(tmp_path)
    assert m.root == tmp_path / "wav48"
    assert m.speakers == ["p225", "p226"] and len(m) == 20
    assert m.speaker_info["p225"] == {"age": "23", "gender": "F", "accent": "English", "region": "Southern England"}


@pytest.mark.parametrize("mic", ["mic1", "mic2"])
def test_vctk_092_mics_and_missing_mic2(tmp_path, mic):
    files = [f"wav48_silence_trimmed/p{s}/p{s}_{i:03d}_mic{k}.flac" for s in (225, 280) for i in range(1, 6) for k in (1, 2)]
    files = [f for f in files if not (f.endswith("mic2.flac") and "p280" in f)]  # p280 has no mic2
    touch(tmp_path, *files)
    (tmp_path / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION COMMENTS \np225  23  F    English    Southern  England\n")
    m = load_dataset(tmp_path, "vctk", mic=mic)
    assert all(u.path.endswith(f"_{mic}.flac") for u in m)
    if mic == "mic1":
        assert m.speakers == ["p225", "p280"] and len(m) == 10
        assert not any("p280" in n for n in m.notes)
    else:
        assert m.speakers == ["p225"] and len(m) == 5
        assert any("p280" in n and "mic2" in n for n in m.notes)
    assert m.speaker_info["p225"]["gender"] == "F"


# ------------------------------------------------------------------------------------ folders, pattern
def test_folder_per_speaker(tmp_path):
    touch(tmp_path, "alice/a.wav", "alice/sub/b.flac", "bob/c.WAV", "bob/readme.txt", "top.wav",
          ".hidden/d.wav", "bob/.e.wav", "mary ann/f.wav")
    assert detect_layout(tmp_path)[0] == "folders"
    m = load_dataset(tmp_path, test=0.0, val=0.0)
    assert sorted(u.path for u in m) == ["alice/a.wav", "alice/sub/b.flac", "bob/c.WAV", "mary ann/f.wav"]
    assert m.speakers == ["alice", "bob", "mary_ann"]
    assert any("whitespace" in n for n in m.notes)


@pytest.fixture
def fsdd_small(fsdd_dir, tmp_path) -> Path:
    """A handful of real FSDD files (two speakers, indices 3-6) copied into tmp_path."""
    out = tmp_path / "fsdd"
    out.mkdir()
    for speaker in ("george", "jackson"):
        for index in range(3, 7):
            name = f"1_{speaker}_{index}.wav"
            shutil.copy(fsdd_dir / name, out / name)
    return out


def test_fsdd_pattern_standard_split(fsdd_small):
    assert detect_layout(fsdd_small) == ("pattern", {"pattern": "fsdd"})
    m = load_dataset(fsdd_small)
    assert len(m) == 8 and m.speakers == ["george", "jackson"]
    for u in m:
        index = int(u.path[:-4].rsplit("_", 1)[1])
        assert u.split == ("test" if index < 5 else "train")
    explicit = load_dataset(fsdd_small, "pattern", pattern=r"(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav",
                            test_pattern=r"\d_[a-z]+_[0-4]\.wav")
    assert explicit == m


def test_pattern_counts_unmatched_and_needs_speaker_group(tmp_path):
    touch(tmp_path, "spk1-take1.wav", "spk2-take1.wav", "other.wav")
    m = load_dataset(tmp_path, "pattern", pattern=r"(?P<speaker>spk\d)-take\d\.wav")
    assert m.speakers == ["spk1", "spk2"]
    assert any("1 audio file(s) do not match" in n for n in m.notes)
    with pytest.raises(SplitError, match="speaker"):
        load_dataset(tmp_path, "pattern", pattern=r"(?P<who>spk\d)-take\d\.wav")


def test_auto_detection_failure_says_what_was_looked_for(tmp_path):
    touch(tmp_path, "notes.txt")
    with pytest.raises(SplitError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg
    for looked_for in ("iden_split.txt", "wav48", "voxceleb", "folders", "pattern"):
        assert looked_for in msg


def test_auto_detection_message_is_unchanged_by_the_registry(tmp_path):
    touch(tmp_path, "notes.txt")
    with pytest.raises(SplitError) as err:
        detect_layout(tmp_path)
    assert err.value.problem == (
        "no known dataset layout found: looked for iden_split.txt (voxceleb1-split), wav48/ or "
        "wav48_silence_trimmed/ (vctk), wav/, aac/ or idNNNNN/ folders (voxceleb), flat files named like "
        f"fsdd or librispeech (pattern), and sub-folders holding audio ({', '.join(AUDIO_EXTENSIONS)}) "
        "(folders); pass layout='pattern' with a regex for other names"
    )
    with pytest.raises(SplitError, match="not found"):
        detect_layout(tmp_path / "absent")


def test_every_layout_module_registers_its_layouts():
    """Each module of spkid.data.layouts (but the registry machinery) registers at least one layout, and
    the registry knows them all, in detection order: adding a layout is adding a module."""
    modules = {m.name for m in pkgutil.iter_modules(layouts_pkg.__path__)} - {"base", "registry"}
    assert modules == {"manifest_file", "voxceleb", "vctk", "folders", "pattern"}
    by_module = {lay.load.__module__.rsplit(".", 1)[-1] for lay in registered_layouts()}
    assert by_module == modules
    assert LAYOUTS == ("auto", "manifest", "voxceleb1-split", "vctk", "voxceleb", "pattern", "folders")
    with pytest.raises(ValueError, match="registered by"):
        register_layout(Layout("vctk", lambda root, options: Manifest(root, ())))


# ---------------------------------------------------------------------------------------------- splits
paths = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)),
    min_size=1, max_size=60, unique_by=lambda t: t[1],
).map(lambda xs: [Utterance(f"{s}/{f}.wav", s) for s, f in xs])


@settings(max_examples=60, deadline=None)
@given(utts=paths, extra=paths, seed=st.integers(0, 2**31))
def test_assign_splits_deterministic_disjoint_and_stable(utts, extra, seed):
    first = assign_splits(utts, seed=seed, val=0.2, test=0.2)
    assert first == assign_splits(list(reversed(utts)), seed=seed, val=0.2, test=0.2)
    assert sorted(u.path for u in first) == sorted(u.path for u in utts)  # every file exactly once
    for speaker in {u.speaker for u in utts}:  # closed set: every speaker keeps a training file
        assert any(u.speaker == speaker and u.split == "train" for u in first)
    # Adding files moves nothing, except a file that was a speaker's only training file because every
    # file of that speaker was drawn into val/test (it was kept for training; a new file may take over).
    names = {u.path for u in utts}
    added = [u for u in extra if u.path not in names]
    grown = {u.path: u.split for u in assign_splits(utts + added, seed=seed, val=0.2, test=0.2)}
    for u in first:
        if grown[u.path] != u.split:
            assert u.split == "train"
            assert [v.path for v in first if v.speaker == u.speaker and v.split == "train"] == [u.path]


def test_assign_splits_fractions_roughly_respected():
    utts = [Utterance(f"s{i % 10}/{i}.wav", f"s{i % 10}") for i in range(3000)]
    counts = Manifest(Path("."), tuple(assign_splits(utts, val=0.1, test=0.2, seed=7))).counts()
    assert 0.17 < counts["test"] / 3000 < 0.23 and 0.07 < counts["val"] / 3000 < 0.13
    other = assign_splits(utts, val=0.1, test=0.2, seed=8)
    assert other != assign_splits(utts, val=0.1, test=0.2, seed=7)


def test_split_by_rule_and_regex():
    utts = [Utterance(f"x/{n}.wav", "x") for n in ("a1", "a2", "b1")]
    assert [u.split for u in split_by(utts, lambda u: "val" if "2" in u.path else "train")] == ["train", "val", "train"]
    assert [u.split for u in split_by_regex(utts, test=r"a\d\.wav", val=r"b1\.wav")] == ["test", "test", "val"]
    with pytest.raises(SplitError, match="bogus"):
        split_by(utts, lambda u: "bogus")


def test_check_closed_set_lists_unseen_speakers():
    m = Manifest(Path("."), (Utterance("a/1.wav", "a"), Utterance("b/1.wav", "b", "test"), Utterance("c/1.wav", "c", "val")))
    with pytest.raises(SplitError, match="2 speaker.*b, c"):
        check_closed_set(m)
    check_closed_set(Manifest(Path("."), m.utterances + (Utterance("b/2.wav", "b"), Utterance("c/2.wav", "c"))))


# ------------------------------------------------------------------------------------------- manifests
component = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .#-]{0,6}[A-Za-z0-9_]", fullmatch=True).filter(
    lambda c: c not in (".", "..")
)
manifests = st.lists(
    st.tuples(st.sampled_from(["train", "val", "test"]), st.from_regex(r"[A-Za-z0-9_.-]{1,6}", fullmatch=True),
              st.lists(component, min_size=1, max_size=3).map("/".join)),
    min_size=1, max_size=30, unique_by=lambda t: t[2],
)


@settings(max_examples=50, deadline=None)
@given(rows=manifests)
def test_manifest_round_trip(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("m") / "manifest.txt"
    m = Manifest(path.parent.resolve(), tuple(Utterance(p, s, split) for split, s, p in rows))
    write_manifest(path, m)
    back = read_manifest(path)
    assert back == m and back.utterances == m.utterances
    assert read_manifest(path, root="/elsewhere").root == Path("/elsewhere")


def test_manifest_default_root_when_no_header(tmp_path):
    (tmp_path / "m.txt").write_text("train a x.wav\n# comment\n   \ntest a my file.wav\n")
    m = read_manifest(tmp_path / "m.txt", default_root="/data")
    assert m.root == Path("/data") and [u.path for u in m] == ["x.wav", "my file.wav"]
    assert read_manifest(tmp_path / "m.txt").root == tmp_path


# -------------------------------------------------------------------------------------------- LabelMap
def test_label_map_round_trip(tmp_path):
    m = Manifest(Path("."), (Utterance("b/1.wav", "b"), Utterance("a/1.wav", "a"), Utterance("c/1.wav", "c", "test")))
    labels = LabelMap.from_manifest(m)
    assert labels.speakers == ["a", "b"] and len(labels) == 2
    assert labels.index("b") == 1 and labels.speaker(0) == "a" and "c" not in labels
    labels.save(tmp_path / "labels.json")
    assert LabelMap.load(tmp_path / "labels.json") == labels
    with pytest.raises(SplitError, match="'c'"):
        labels.index("c")
    with pytest.raises(SplitError, match="out of range"):
        labels.speaker(2)
