"""Datasets on disk -> :class:`Manifest` of :class:`Utterance` records (who speaks, in which split).

Supported layouts (``load_dataset(root, layout=...)``; ``"auto"`` picks one by looking at ``root``):

- ``"voxceleb1-split"``: VoxCeleb1 identification with its official ``iden_split.txt``
  (Nagrani et al., *VoxCeleb: a large-scale speaker identification dataset*, Interspeech 2017);
  lines ``1 id10001/1zcIwhmdeo4/00001.wav`` (1 train, 2 val, 3 test).
- ``"voxceleb"``: VoxCeleb1/2 trees ``[wav|aac/]idNNNNN/<video>/NNNNN.wav|.m4a`` (seeded split).
- ``"vctk"``: VCTK 0.80 ``wav48/p225/p225_001.wav`` or 0.92
  ``wav48_silence_trimmed/p225/p225_001_mic1.flac`` (one microphone), ``speaker-info.txt`` as metadata.
- ``"folders"``: one sub-folder per speaker holding audio files (any depth).
- ``"pattern"``: speaker taken from file names by a regex with a ``speaker`` group (presets
  ``"fsdd"`` -- with its standard split, index 0-4 test -- and ``"librispeech"``).
- ``"manifest"``: a manifest text file written by :func:`write_manifest`.

Splits: ``"train"``, ``"val"``, ``"test"``. Datasets without an official split get a seeded, per-file
hash split (:func:`assign_splits`) that keeps files in place when others are added.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from spkid.errors import SplitError
from spkid.fileio import atomic_write_text, check_format, read_file_bytes, read_json_file

__all__ = [
    "SPLITS",
    "LAYOUTS",
    "AUDIO_EXTENSIONS",
    "PATTERN_PRESETS",
    "Utterance",
    "Manifest",
    "LabelMap",
    "load_dataset",
    "detect_layout",
    "parse_iden_split",
    "scan_voxceleb",
    "scan_vctk",
    "scan_folders",
    "scan_pattern",
    "read_speaker_info",
    "assign_splits",
    "split_by",
    "split_by_regex",
    "fsdd_split",
    "read_manifest",
    "write_manifest",
    "check_closed_set",
    "check_relpath",
]

SPLITS = ("train", "val", "test")
LAYOUTS = ("auto", "voxceleb1-split", "voxceleb", "vctk", "folders", "pattern", "manifest")
AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".aac", ".aiff", ".aif", ".sph")
IDEN_SPLIT_CODES = {"1": "train", "2": "val", "3": "test"}
PATTERN_PRESETS = {
    # Free Spoken Digit Dataset: {digit}_{speaker}_{index}.wav; standard split: index 0-4 test.
    "fsdd": r"(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)\.wav",
    # LibriSpeech: {speaker}-{chapter}-{utterance}.flac
    "librispeech": r"(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<utt>\d+)\.flac",
}
MANIFEST_HEADER = "# spkid manifest v1: split speaker relpath (the path is the rest of the line)"
_SEP = re.compile(r"[ \t]+")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


# --------------------------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class Utterance:
    """One audio file: ``path`` is POSIX and relative to the dataset root."""

    path: str
    speaker: str
    split: str = "train"

    def with_split(self, split: str) -> "Utterance":
        return dataclasses.replace(self, split=split)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Every utterance of a dataset with its speaker and split; ``root`` is the folder paths start from.

    ``notes`` are human-readable remarks from the scan (skipped files, speakers missing a microphone);
    ``speaker_info`` is optional per-speaker metadata (e.g. VCTK's age, gender, accent).
    """

    root: Path
    utterances: tuple[Utterance, ...]
    notes: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    speaker_info: Mapping[str, Mapping[str, str]] = dataclasses.field(
        default_factory=dict, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "utterances", tuple(self.utterances))

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def split(self, name: str) -> list[Utterance]:
        """Utterances of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise SplitError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        return [u for u in self.utterances if u.split == name]

    @property
    def speakers(self) -> list[str]:
        """Sorted ids of every speaker in any split."""
        return sorted({u.speaker for u in self.utterances})

    def counts(self) -> dict[str, int]:
        """Number of utterances per split (all three keys present)."""
        c = Counter(u.split for u in self.utterances)
        return {s: c.get(s, 0) for s in SPLITS}

    def path_of(self, utt: Utterance | str) -> Path:
        """Absolute path of an utterance (or of a relpath)."""
        return self.root / (utt.path if isinstance(utt, Utterance) else utt)

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{len(self)} utterances from {len(self.speakers)} speakers "
            f"(train {c['train']}, val {c['val']}, test {c['test']}) under {self.root}"
        )


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; BOM and CR stripped; SplitError names file + line."""
    data = read_file_bytes(path, what, SplitError)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SplitError(f"line {n}: not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
        out.append((n, line[:-1] if line.endswith("\r") else line))
    return out


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it is a clean relative POSIX path; raise ValueError saying why not."""
    if not relpath:
        raise ValueError("empty path")
    if _BAD_CHARS.search(relpath):
        raise ValueError(f"path {relpath!r} contains a backslash or control character")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise ValueError(f"absolute path {relpath!r}; paths must be relative to the dataset root")
    parts = relpath.split("/")
    if ".." in parts:
        raise ValueError(f"path {relpath!r} escapes the dataset root ('..')")
    if any(p in ("", ".") for p in parts):
        raise ValueError(f"path {relpath!r} has an empty or '.' component")
    if relpath != relpath.strip():
        raise ValueError(f"path {relpath!r} starts or ends with whitespace")
    return relpath


def _check_speaker(speaker: str) -> str:
    if not speaker or re.search(r"\s", speaker) or _BAD_CHARS.search(speaker) or speaker.startswith("#"):
        raise ValueError(f"speaker id {speaker!r} must be non-empty, without whitespace, not start with '#'")
    return speaker


def _validate(utterances: Iterable[tuple[int, Utterance]], path: Path) -> list[Utterance]:
    """Reject duplicate entries and files listed in two splits (line numbers in the message)."""
    seen: dict[str, tuple[int, str]] = {}
    out = []
    for n, u in utterances:
        if u.path in seen:
            first, split = seen[u.path]
            if split == u.split:
                raise SplitError(f"line {n}: duplicate entry {u.path!r} (first on line {first})", path=path)
            raise SplitError(
                f"line {n}: {u.path!r} is in {u.split!r} but line {first} puts it in {split!r}; "
                "a file must be in one split only",
                path=path,
            )
        seen[u.path] = (n, u.split)
        out.append(u)
    return out


# ------------------------------------------------------------------------------------------- VoxCeleb1
def parse_iden_split(path: str | os.PathLike) -> list[Utterance]:
    """Parse VoxCeleb1's ``iden_split.txt``: ``<1|2|3> <speaker>/<video>/<file>`` per line.

    Tolerates runs of spaces/tabs, CRLF, blank lines and a UTF-8 BOM; anything else raises
    :class:`SplitError` naming the file and line. The speaker is the first path component.
    """
    path = Path(path)
    parsed = []
    for n, line in _read_lines(path, "split file"):
        text = line.strip(" \t")
        if not text:
            continue
        fields = _SEP.split(text)
        if len(fields) != 2:
            raise SplitError(
                f"line {n}: expected '<1|2|3> <relative path>', got {len(fields)} column(s): {text[:80]!r}",
                path=path,
            )
        code, rel = fields
        if code not in IDEN_SPLIT_CODES:
            raise SplitError(f"line {n}: unknown split code {code[:20]!r} (expected 1, 2 or 3)", path=path)
        try:
            check_relpath(rel)
        except ValueError as exc:
            raise SplitError(f"line {n}: {exc}", path=path) from None
        if "/" not in rel:
            raise SplitError(f"line {n}: {rel!r} has no speaker folder (expected id/video/file)", path=path)
        parsed.append((n, Utterance(rel, rel.split("/", 1)[0], IDEN_SPLIT_CODES[code])))
    out = _validate(parsed, path)
    if not out:
        raise SplitError("split file lists no utterances", path=path)
    return out


def _load_voxceleb1_split(root: Path, split_file: str | os.PathLike | None) -> Manifest:
    split_path = Path(split_file) if split_file is not None else root / "iden_split.txt"
    utts = parse_iden_split(split_path)
    base = root / "wav" if (root / "wav").is_dir() else root
    present = [u for u in utts if (base / u.path).is_file()]
    notes = []
    if len(present) < len(utts):
        missing = [u.path for u in utts if not (base / u.path).is_file()]
        notes.append(
            f"{len(missing)} of {len(utts)} files listed in {split_path.name} are missing under {base} "
            f"(skipped), e.g. {', '.join(missing[:3])}"
        )
    if not present:
        raise SplitError(f"none of the {len(utts)} files it lists exists under {base}", path=split_path)
    return Manifest(base, tuple(present), notes=tuple(notes))


# -------------------------------------------------------------------------------------- directory scans
def _walk_audio(base: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Sorted relative POSIX paths of audio files under ``base`` (hidden files and folders skipped)."""
    exts = tuple(e.lower() for e in extensions)
    out = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(exts):
                out.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(out)


def _usable(utts: Iterable[Utterance], notes: list[str]) -> list[Utterance]:
    """Drop files whose path cannot go in a manifest (control characters, ...) and replace whitespace in
    speaker ids by ``_``, noting both."""
    good, bad, renamed = [], [], set()
    for u in utts:
        try:
            check_relpath(u.path)
        except ValueError:
            bad.append(u.path)
            continue
        speaker = re.sub(r"\s+", "_", u.speaker.strip())
        if speaker != u.speaker:
            renamed.add(u.speaker)
        good.append(dataclasses.replace(u, speaker=speaker))
    if bad:
        notes.append(f"skipped {len(bad)} file(s) with unusable names, e.g. {bad[0]!r}")
    if renamed:
        notes.append(f"whitespace in {len(renamed)} speaker id(s) replaced by '_', e.g. {sorted(renamed)[0]!r}")
    return good


def scan_voxceleb(root: str | os.PathLike) -> tuple[Path, list[Utterance]]:
    """VoxCeleb1/2 tree: ``[wav|aac/]idNNNNN/<video>/NNNNN.wav|.m4a`` -> (base folder, utterances)."""
    root = Path(root)
    base = next((root / d for d in ("wav", "aac") if (root / d).is_dir()), root)
    utts = []
    for rel in _walk_audio(base, (".wav", ".m4a")):
        parts = rel.split("/")
        if len(parts) == 3 and re.fullmatch(r"id\d+", parts[0]):
            utts.append(Utterance(rel, parts[0]))
    return base, utts


def read_speaker_info(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """VCTK ``speaker-info.txt`` -> {speaker: {age, gender, accent, region}}.

    Handles 0.80 ids (``225``) and 0.92 ids (``p225``); rows that do not parse are skipped.
    """
    info: dict[str, dict[str, str]] = {}
    for _, line in _read_lines(Path(path), "speaker info"):
        fields = line.split()
        if len(fields) < 3 or fields[0].upper() == "ID" or not fields[1].isdigit():
            continue
        sid = f"p{fields[0]}" if fields[0].isdigit() else fields[0]
        info[sid] = {
            "age": fields[1],
            "gender": fields[2],
            "accent": fields[3] if len(fields) > 3 else "",
            "region": " ".join(fields[4:]),
        }
    return info


def scan_vctk(root: str | os.PathLike, *, mic: str = "mic1") -> Manifest:
    """VCTK 0.80 (``wav48/``) or 0.92 (``wav48_silence_trimmed/``, one ``mic``); split = all train.

    Speakers that have no file for ``mic`` are listed in ``Manifest.notes`` (e.g. p280 has no mic2).
    """
    root = Path(root)
    if mic not in ("mic1", "mic2"):
        raise SplitError(f"VCTK microphone must be 'mic1' or 'mic2', got {mic!r}")
    notes: list[str] = []
    if (root / "wav48_silence_trimmed").is_dir():
        base, suffix = root / "wav48_silence_trimmed", f"_{mic}.flac"
    elif (root / "wav48").is_dir():
        base, suffix = root / "wav48", ".wav"
    else:
        raise SplitError("not a VCTK folder: no wav48/ or wav48_silence_trimmed/ inside", path=root)
    utts, speakers_seen = [], set()
    for rel in _walk_audio(base):
        parts = rel.split("/")
        if len(parts) != 2:
            continue
        speakers_seen.add(parts[0])
        if parts[1].endswith(suffix):
            utts.append(Utterance(rel, parts[0]))
    without = sorted(speakers_seen - {u.speaker for u in utts})
    if without:
        notes.append(f"{len(without)} speaker(s) have no {suffix!r} files and are left out: {', '.join(without)}")
    info_path = root / "speaker-info.txt"
    info = read_speaker_info(info_path) if info_path.is_file() else {}
    return Manifest(base, tuple(utts), notes=tuple(notes), speaker_info=info)


def scan_folders(root: str | os.PathLike) -> list[Utterance]:
    """One sub-folder per speaker (audio at any depth below it); files directly in ``root`` are ignored."""
    return [Utterance(rel, rel.split("/", 1)[0]) for rel in _walk_audio(Path(root)) if "/" in rel]


def _compile_pattern(pattern: str) -> re.Pattern:
    pattern = PATTERN_PRESETS.get(pattern, pattern)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise SplitError(f"invalid file-name pattern {pattern!r}: {exc}") from None
    if "speaker" not in rx.groupindex:
        raise SplitError(f"file-name pattern {pattern!r} needs a named group (?P<speaker>...)")
    return rx


def scan_pattern(root: str | os.PathLike, pattern: str) -> tuple[list[Utterance], int]:
    """Files whose name (or relative path, if ``pattern`` contains ``/``) fully matches ``pattern``.

    ``pattern`` is a regex with a ``speaker`` named group, or a preset name from
    :data:`PATTERN_PRESETS`. Returns (utterances, number of audio files that did not match).
    """
    rx = _compile_pattern(pattern)
    on_path = "/" in rx.pattern
    utts, unmatched = [], 0
    for rel in _walk_audio(Path(root)):
        m = rx.fullmatch(rel if on_path else rel.rsplit("/", 1)[-1])
        if m and m.group("speaker"):
            utts.append(Utterance(rel, m.group("speaker")))
        else:
            unmatched += 1
    return utts, unmatched


# ---------------------------------------------------------------------------------------------- splits
def _unit(seed: int, path: str) -> float:
    """Stable pseudo-random number in [0, 1) from (seed, path)."""
    digest = hashlib.sha1(f"{seed}:{path}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    utterances: Iterable[Utterance], *, val: float = 0.1, test: float = 0.1, seed: int = 0
) -> list[Utterance]:
    """Seeded per-file split for datasets without an official one.

    Each file's split depends only on ``sha1(seed, path)``, so no file lands in two parts and adding
    files moves no existing one. Every speaker keeps at least one training file, so closed-set
    identification stays possible: if the draw left a speaker none, its file with the highest hash
    goes to train (the one exception to stability: a later file drawn into train releases it).
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SplitError(f"split fractions must satisfy 0 <= val, test and val + test < 1; got val={val}, test={test}")
    by_speaker: dict[str, list[tuple[float, Utterance]]] = defaultdict(list)
    for u in utterances:
        by_speaker[u.speaker].append((_unit(seed, u.path), u))
    out = []
    for speaker in sorted(by_speaker):
        drawn = []
        for x, u in by_speaker[speaker]:
            split = "test" if x < test else "val" if x < test + val else "train"
            drawn.append((x, u.with_split(split)))
        if all(u.split != "train" for _, u in drawn):
            top = max(range(len(drawn)), key=lambda i: drawn[i][0])
            drawn[top] = (drawn[top][0], drawn[top][1].with_split("train"))
        out.extend(u for _, u in drawn)
    return sorted(out, key=lambda u: u.path)


def split_by(utterances: Iterable[Utterance], rule: Callable[[Utterance], str]) -> list[Utterance]:
    """Assign each utterance the split ``rule(utt)`` returns (``"train"``, ``"val"`` or ``"test"``)."""
    out = []
    for u in utterances:
        split = rule(u)
        if split not in SPLITS:
            raise SplitError(f"split rule returned {split!r} for {u.path!r}; valid splits: {', '.join(SPLITS)}")
        out.append(u.with_split(split))
    return out


def split_by_regex(
    utterances: Iterable[Utterance], *, test: str | None = None, val: str | None = None
) -> list[Utterance]:
    """Files whose name fully matches ``test`` go to test, ``val`` to val, the rest to train."""
    rx = {}
    for name, pattern in (("test", test), ("val", val)):
        if pattern is not None:
            try:
                rx[name] = re.compile(pattern)
            except re.error as exc:
                raise SplitError(f"invalid {name} pattern {pattern!r}: {exc}") from None

    def rule(u: Utterance) -> str:
        fname = u.path.rsplit("/", 1)[-1]
        return next((s for s, r in rx.items() if r.fullmatch(fname)), "train")

    return split_by(utterances, rule)


def fsdd_split(utt: Utterance) -> str:
    """FSDD standard split rule: take index 0-4 -> test, 5-49 -> train."""
    m = re.fullmatch(PATTERN_PRESETS["fsdd"], utt.path.rsplit("/", 1)[-1])
    if not m:
        raise SplitError(f"{utt.path!r} is not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav)")
    return "test" if int(m.group("index")) < 5 else "train"


def check_closed_set(manifest: Manifest) -> None:
    """Closed-set identification needs every val/test speaker in train; SplitError lists the others."""
    train = {u.speaker for u in manifest.split("train")}
    if not train:
        raise SplitError(f"the manifest has no training utterances ({manifest.summary()})")
    unseen = sorted({u.speaker for u in manifest if u.split != "train"} - train)
    if unseen:
        shown = ", ".join(unseen[:20]) + (f", ... ({len(unseen)} in all)" if len(unseen) > 20 else "")
        raise SplitError(
            f"closed-set identification needs every val/test speaker in train; "
            f"{len(unseen)} speaker(s) appear only in val/test: {shown}"
        )


# ------------------------------------------------------------------------------------------- manifests
def write_manifest(path: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``split speaker relpath`` lines (atomically); :func:`read_manifest` reads it back identically."""
    lines = [MANIFEST_HEADER, f"# root: {Path(manifest.root).resolve()}"]
    for u in manifest.utterances:
        try:
            check_relpath(u.path)
            _check_speaker(u.speaker)
        except ValueError as exc:
            raise SplitError(f"cannot write manifest entry: {exc}", path=path) from None
        if u.split not in SPLITS:
            raise SplitError(f"cannot write manifest entry {u.path!r}: unknown split {u.split!r}", path=path)
        lines.append(f"{u.split} {u.speaker} {u.path}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    default_root: str | os.PathLike | None = None,
) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (or by hand), validating every line.

    The dataset root is ``root`` if given, else the ``# root:`` header line, else ``default_root``,
    else the manifest's folder.
    """
    path = Path(path)
    header_root, parsed = None, []
    for n, line in _read_lines(path, "manifest"):
        text = line.lstrip(" \t")
        if text.startswith("#"):
            if text.startswith("# root:") and header_root is None:
                header_root = text[len("# root:"):].strip()
            continue
        text = text.rstrip(" \t")
        if not text:
            continue
        fields = _SEP.split(text, maxsplit=2)
        if len(fields) != 3:
            raise SplitError(f"line {n}: expected 'split speaker relpath', got {text[:80]!r}", path=path)
        split, speaker, rel = fields
        if split not in SPLITS:
            raise SplitError(f"line {n}: unknown split {split[:20]!r}; valid splits: {', '.join(SPLITS)}", path=path)
        try:
            check_relpath(rel)
            _check_speaker(speaker)
        except ValueError as exc:
            raise SplitError(f"line {n}: {exc}", path=path) from None
        parsed.append((n, Utterance(rel, speaker, split)))
    utts = _validate(parsed, path)
    if not utts:
        raise SplitError("manifest lists no utterances (empty file?)", path=path)
    base = root if root is not None else header_root or default_root or path.parent
    return Manifest(base, tuple(utts))


# ----------------------------------------------------------------------------------------- load_dataset
def detect_layout(root: str | os.PathLike) -> tuple[str, dict]:
    """Guess the layout of ``root`` -> (layout, extra keyword arguments for :func:`load_dataset`)."""
    root = Path(root)
    if root.is_file():
        return "manifest", {}
    if not root.is_dir():
        raise SplitError("dataset folder not found", path=root)
    if (root / "iden_split.txt").is_file():
        return "voxceleb1-split", {}
    if (root / "wav48_silence_trimmed").is_dir() or (root / "wav48").is_dir():
        return "vctk", {}
    children = [p for p in root.iterdir() if not p.name.startswith(".")]
    if any(p.is_dir() and (p.name in ("wav", "aac") or re.fullmatch(r"id\d+", p.name)) for p in children):
        return "voxceleb", {}
    names = [p.name for p in children if p.is_file() and p.name.lower().endswith(AUDIO_EXTENSIONS)]
    for preset, pattern in PATTERN_PRESETS.items():
        if names and all(re.fullmatch(pattern, n) for n in names):
            return "pattern", {"pattern": preset}
    if any(p.is_dir() and _walk_audio(p) for p in children):
        return "folders", {}
    raise SplitError(
        "no known dataset layout found: looked for iden_split.txt (voxceleb1-split), wav48/ or "
        "wav48_silence_trimmed/ (vctk), wav/, aac/ or idNNNNN/ folders (voxceleb), flat files named like "
        f"{' or '.join(PATTERN_PRESETS)} (pattern), and sub-folders holding audio "
        f"({', '.join(AUDIO_EXTENSIONS)}) (folders); pass layout='pattern' with a regex for other names",
        path=root,
    )


def load_dataset(
    root: str | os.PathLike,
    layout: str = "auto",
    *,
    pattern: str | None = None,
    mic: str = "mic1",
    split_file: str | os.PathLike | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    test_pattern: str | None = None,
    val_pattern: str | None = None,
) -> Manifest:
    """Scan a dataset into a :class:`Manifest` (see the module docstring for ``layout``).

    Official splits are kept (VoxCeleb1 ``iden_split.txt``, FSDD index 0-4 test, a manifest's own);
    otherwise files matching ``test_pattern`` / ``val_pattern`` go to test / val when given, else the
    seeded :func:`assign_splits` (``val``, ``test`` fractions, ``seed``) decides.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise SplitError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout, extra = detect_layout(root)
        pattern = pattern or extra.get("pattern")
    elif layout != "manifest" and not root.is_dir():
        raise SplitError("dataset folder not found", path=root)
    if layout == "manifest":
        return read_manifest(root)
    if layout == "voxceleb1-split":
        return _load_voxceleb1_split(root, split_file)

    notes: list[str] = []
    info: Mapping[str, Mapping[str, str]] = {}
    official = None
    if layout == "vctk":
        scanned = scan_vctk(root, mic=mic)
        base, utts, notes, info = scanned.root, list(scanned.utterances), list(scanned.notes), scanned.speaker_info
    elif layout == "voxceleb":
        base, utts = scan_voxceleb(root)
    elif layout == "folders":
        base, utts = root, scan_folders(root)
    else:  # pattern
        if not pattern:
            raise SplitError("layout 'pattern' needs pattern=<regex with (?P<speaker>...)> or a preset name")
        base = root
        utts, unmatched = scan_pattern(root, pattern)
        if unmatched:
            notes.append(f"{unmatched} audio file(s) do not match the file-name pattern (skipped)")
        if pattern == "fsdd":
            official = fsdd_split
    utts = _usable(utts, notes)
    if not utts:
        raise SplitError(f"no audio files found for layout {layout!r}", path=base)
    if test_pattern or val_pattern:
        utts = split_by_regex(utts, test=test_pattern, val=val_pattern)
    elif official is not None:
        utts = split_by(utts, official)
    else:
        utts = assign_splits(utts, val=val, test=test, seed=seed)
    return Manifest(base, tuple(sorted(utts, key=lambda u: u.path)), notes=tuple(notes), speaker_info=info)


# -------------------------------------------------------------------------------------------- LabelMap
class LabelMap:
    """Speaker id <-> class index, over the sorted training speakers; saved as JSON with caches and models."""

    FORMAT = "spkid-labels"
    VERSION = 1

    def __init__(self, speakers: Sequence[str]):
        speakers = list(speakers)
        if len(set(speakers)) != len(speakers):
            dup = sorted(s for s, c in Counter(speakers).items() if c > 1)
            raise SplitError(f"duplicate speaker id(s) in label map: {', '.join(dup[:10])}")
        if not all(isinstance(s, str) and s for s in speakers):
            raise SplitError("speaker ids in a label map must be non-empty strings")
        self._speakers = tuple(speakers)
        self._index = {s: i for i, s in enumerate(self._speakers)}

    @classmethod
    def from_speakers(cls, speakers: Iterable[str]) -> "LabelMap":
        """Label map over the sorted unique ``speakers``."""
        return cls(sorted(set(speakers)))

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "LabelMap":
        """Label map over the manifest's training speakers."""
        return cls.from_speakers(u.speaker for u in manifest.split("train"))

    @property
    def speakers(self) -> list[str]:
        return list(self._speakers)

    def index(self, speaker: str) -> int:
        try:
            return self._index[speaker]
        except KeyError:
            raise SplitError(f"speaker {speaker!r} is not in the label map ({len(self)} training speakers)") from None

    def speaker(self, i: int) -> str:
        if not 0 <= int(i) < len(self._speakers):
            raise SplitError(f"class index {i} out of range 0..{len(self._speakers) - 1}")
        return self._speakers[int(i)]

    def __len__(self) -> int:
        return len(self._speakers)

    def __contains__(self, speaker: object) -> bool:
        return speaker in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other._speakers == self._speakers

    def __hash__(self) -> int:
        return hash(self._speakers)

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} speakers)"

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "version": self.VERSION, "speakers": list(self._speakers)}

    @classmethod
    def from_dict(cls, data: Mapping, path: str | os.PathLike | None = None) -> "LabelMap":
        check_format(data, cls.FORMAT, cls.VERSION, "label map", error=SplitError, path=path)
        speakers = data.get("speakers")
        if not isinstance(speakers, list):
            raise SplitError("label map has no 'speakers' list", path=path)
        try:
            return cls(speakers)
        except SplitError as exc:
            raise SplitError(exc.problem, path=path) from None

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        return cls.from_dict(read_json_file(path, "label map", SplitError), path=path)
