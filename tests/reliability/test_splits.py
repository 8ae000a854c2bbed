"""Bad split files and manifests: a SplitError naming the file and the line, never anything else."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spkid.errors import SplitError
from spkid.data.labels import LabelMap
from spkid.data.manifest import Manifest, Utterance, read_manifest, write_manifest
from spkid.data.layouts.registry import load_dataset
from spkid.data.layouts.voxceleb import parse_iden_split

GOOD_IDEN = "1 id10001/v/00001.wav\n"
GOOD_MANIFEST = "train a a/1.wav\n"


def _expect(path: Path, data: bytes, reader, line: int | None, *words: str) -> None:
    path.write_bytes(data)
    with pytest.raises(SplitError) as err:
        reader(path)
    msg = str(err.value)
    assert str(path) in msg
    if line is not None:
        assert f"line {line}" in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("4 id10001/v/00001.wav\n", 2, ["unknown split code", "'4'"]),
        ("1\n", 2, ["1 column"]),
        ("1 id10001/v/00001.wav extra\n", 2, ["3 column"]),
        ("1 /abs/id10001/v/00001.wav\n", 2, ["absolute"]),
        ("1 id10001/../../etc/passwd\n", 2, ["escapes"]),
        ("1 00001.wav\n", 2, ["speaker folder"]),
        ("1 id10001/v/00001.wav\n", 2, ["duplicate", "line 1"]),
        ("3 id10001/v/00001.wav\n", 2, ["one split only", "line 1"]),
        ("1 id10001\\v\\00002.wav\n", 2, ["backslash"]),
    ],
)
def test_iden_split_rejects_bad_lines(tmp_path, text, line, words):
    _expect(tmp_path / "iden_split.txt", (GOOD_IDEN + text).encode(), parse_iden_split, line, *words)


@pytest.mark.parametrize(
    "data, line, words",
    [
        (b"", None, ["no utterances"]),
        (b"\n\r\n  \n", None, ["no utterances"]),
        (b"1 id10001/v/\xff\xfe.wav\n", 1, ["UTF-8"]),
    ],
)
def test_iden_split_empty_or_binary(tmp_path, data, line, words):
    _expect(tmp_path / "iden_split.txt", data, parse_iden_split, line, *words)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("dev a a/2.wav\n", 2, ["unknown split", "'dev'"]),
        ("train a\n", 2, ["expected 'split speaker relpath'"]),
        ("train a ../a/2.wav\n", 2, ["escapes"]),
        ("train a /a/2.wav\n", 2, ["absolute"]),
        ("train a a/1.wav\n", 2, ["duplicate"]),
        ("test a a/1.wav\n", 2, ["one split only"]),
        ("# only a comment\n", None, []),
    ],
)
def test_manifest_rejects_bad_lines(tmp_path, text, line, words):
    data = (GOOD_MANIFEST + text) if line else text
    reader = read_manifest
    if line is None:
        words = ["no utterances"]
    _expect(tmp_path / "manifest.txt", data.encode(), reader, line, *words)


def test_manifest_non_utf8_and_empty(tmp_path):
    _expect(tmp_path / "m.txt", b"train a a/1.wav\ntrain b b/\xc3(.wav\n", read_manifest, 2, "UTF-8")
    _expect(tmp_path / "m.txt", b"", read_manifest, None, "empty")
    with pytest.raises(SplitError, match="not found"):
        read_manifest(tmp_path / "absent.txt")


def test_write_manifest_refuses_what_it_cannot_read_back(tmp_path):
    for bad in (Utterance(" lead.wav", "a"), Utterance("a/x.wav", "two words"), Utterance("a/x.wav", "a", "dev"),
                Utterance("a/new\nline.wav", "a")):
        with pytest.raises(SplitError, match="cannot write manifest"):
            write_manifest(tmp_path / "m.txt", Manifest(tmp_path, (bad,)))
    assert not (tmp_path / "m.txt").exists()


def test_bad_layout_arguments(tmp_path):
    with pytest.raises(SplitError, match="unknown layout"):
        load_dataset(tmp_path, "kaldi")
    with pytest.raises(SplitError, match="not found"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(SplitError, match="mic1"):
        (tmp_path / "wav48").mkdir()
        load_dataset(tmp_path, "vctk", mic="mic3")
    with pytest.raises(SplitError, match="invalid file-name pattern"):
        load_dataset(tmp_path, "pattern", pattern="(?P<speaker>")
    with pytest.raises(SplitError, match="no audio files"):
        load_dataset(tmp_path, "folders")


def test_iden_split_whose_files_are_all_missing(tmp_path):
    (tmp_path / "iden_split.txt").write_text(GOOD_IDEN)
    with pytest.raises(SplitError, match="none of the 1 files"):
        load_dataset(tmp_path)


def test_label_map_rejects_bad_json(tmp_path):
    p = tmp_path / "labels.json"
    for text, words in (("{", "cannot read"), ("[]", "not a spkid label map"),
                        ('{"format": "spkid-labels", "version": 1, "speakers": ["a", "a"]}', "duplicate")):
        p.write_text(text)
        with pytest.raises(SplitError, match=words) as err:
            LabelMap.load(p)
        assert str(p) in str(err.value)


# -------------------------------------------------------------------------------------------- fuzzing
tokens = st.sampled_from(["1", "2", "3", "4", "train", "val", "test", "id10001/v/1.wav", "a/b c.wav", "..", "/x",
                          "#", "\t", " ", "  ", "\r", "\ufeff", "\x00", "é", "a\\b", "id1/../x", "x"])
lines = st.lists(st.lists(tokens, max_size=5).map("".join), max_size=8).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(text=lines, raw=st.binary(max_size=64))
def test_parsers_raise_only_split_error(tmp_path_factory, text, raw):
    d = tmp_path_factory.mktemp("fuzz")
    for data in (text.encode("utf-8"), raw, text.encode("utf-8") + raw):
        p = d / "f.txt"
        p.write_bytes(data)
        for reader in (parse_iden_split, read_manifest):
            try:
                out = reader(p)
            except SplitError as exc:
                assert str(p) in str(exc)
                continue
            utts = out.utterances if hasattr(out, "utterances") else out
            assert utts and len({u.path for u in utts}) == len(utts)
            assert all(not u.path.startswith("/") and ".." not in u.path.split("/") for u in utts)
