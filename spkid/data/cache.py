"""Feature-cache folders: built in parallel and resumably, verified, merged from shards, read back.

Layout of a cache folder::

    cache.json       {"format": "spkid-feature-cache", "format_version", "feature_config"}  -- fixed at creation
    labels.json      LabelMap of the manifest's training speakers (:mod:`spkid.data.labels`)
    manifest.txt     copy of the manifest the cache was last built from (:mod:`spkid.data.manifest`)
    entries/<relpath>.pkl

Each entry is one checksummed file per utterance in the format of :mod:`spkid.data.entries`, written
atomically, so builds can be killed and resumed and several processes may build into one folder.
A malformed ``cache.json`` raises :class:`~spkid.errors.CacheError` naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from spkid.features.config import FeatureConfig
from spkid.errors import CacheError, ConfigError, SpkidError
from spkid.fileio import atomic_write_bytes, atomic_write_text, check_format, read_json_file
from spkid.data.entries import FORMAT_VERSION, dump_entry, load_entry
from spkid.data.labels import LabelMap
from spkid.data.manifest import Manifest, Utterance, read_manifest, write_manifest

__all__ = [
    "BuildReport",
    "VerifyReport",
    "FeatureCache",
    "build_cache",
    "verify_cache",
    "merge_caches",
    "in_shard",
    "entry_path",
]

_CACHE_FORMAT = "spkid-feature-cache"
_STALE_TMP_S = 600.0


def entry_path(cache_dir: str | os.PathLike, relpath: str) -> Path:
    """Where the entry of ``relpath`` lives: ``cache_dir/entries/<relpath>.pkl``."""
    return Path(cache_dir) / "entries" / f"{relpath}.pkl"


def in_shard(relpath: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``relpath`` belongs to shard ``(i, n)`` (stable sha1 of the path; ``None`` = all)."""
    if shard is None:
        return True
    i, n = shard
    return int.from_bytes(hashlib.sha1(relpath.encode("utf-8")).digest()[:8], "big") % n == i


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be (index, count), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard index must be in 0..count-1, got {i}/{n}")
    return i, n


# -------------------------------------------------------------------------------------- cache header
def _read_header(cache_dir: Path) -> FeatureConfig:
    path = cache_dir / "cache.json"
    if not path.exists():
        raise CacheError("not a feature cache (no cache.json); build it with `spkid prepare`", path=cache_dir)
    data = read_json_file(path, "cache header", CacheError)
    check_format(data, _CACHE_FORMAT, FORMAT_VERSION, "feature cache header", error=CacheError, path=path,
                 version_key="format_version")
    if data.get("feature_config") is None:
        raise CacheError("cache header has no feature_config", path=path)
    try:
        return FeatureConfig.from_dict(data["feature_config"])
    except ConfigError as exc:
        raise CacheError(f"bad feature_config in cache header: {exc}", path=path) from None


def _check_config(cache_dir: Path, have: FeatureConfig, want: FeatureConfig | None) -> None:
    if want is not None and want != have:
        raise CacheError(
            f"cache was built with another feature config:\n  cache:     {have.describe()}\n"
            f"  requested: {want.describe()}\nuse another cache folder or rebuild",
            path=cache_dir,
        )


def _open_or_create(cache_dir: Path, config: FeatureConfig) -> None:
    """Create ``cache.json`` (under a file lock, so concurrent builders agree) or check it matches."""
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / ".cache.lock")):
        if (cache_dir / "cache.json").exists():
            _check_config(cache_dir, _read_header(cache_dir), config)
        else:
            header = {"format": _CACHE_FORMAT, "format_version": FORMAT_VERSION, "feature_config": config.to_dict()}
            atomic_write_text(cache_dir / "cache.json", json.dumps(header, indent=1, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------- building
@dataclasses.dataclass
class BuildReport:
    """Outcome of :func:`build_cache`: counts of built / already-valid entries and failures with reasons."""

    built: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def usable(self) -> int:
        return self.built + self.skipped

    def summary(self) -> str:
        return f"built {self.built}, skipped {self.skipped} (already valid), failed {len(self.failed)}"


def _entry_valid(path: Path, relpath: str, config_dict: dict) -> bool:
    try:
        entry = load_entry(path)
    except CacheError:
        return False
    return entry["source"] == relpath and entry["feature_config"] == config_dict


def _build_one(job: tuple[str, str, str, dict]) -> tuple[str, str, str]:
    """Worker: (audio root, relpath, cache dir, config dict) -> (status, relpath, message)."""
    root, relpath, cache_dir, config_dict = job
    target = entry_path(cache_dir, relpath)
    if _entry_valid(target, relpath, config_dict):
        return "skipped", relpath, ""
    try:
        from spkid.audio.io import load_audio
        from spkid.features.api import extract_features

        config = FeatureConfig.from_dict(config_dict)
        y = load_audio(Path(root) / relpath, sr=config.sr, min_duration=0.0)
        feats = np.ascontiguousarray(extract_features(y, config), dtype=np.float32)
        entry = {
            "format_version": FORMAT_VERSION,
            "feature_config": config_dict,
            "source": relpath,
            "n_samples": int(y.shape[0]),
            "sr": config.sr,
            "features": feats,
        }
        dump_entry(target, entry)
    except SpkidError as exc:
        return "failed", relpath, exc.problem
    except Exception as exc:  # never abort the batch: report and go on
        return "failed", relpath, f"{type(exc).__name__}: {exc}"
    return "built", relpath, ""


def _pool_context():
    """``fork`` on Linux when no threaded deep-learning framework is loaded (works from scripts without a
    ``__main__`` guard and from notebooks), else ``forkserver`` / ``spawn``."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    frameworks = ("torch", "tensorflow", "jax", "keras")
    if sys.platform.startswith("linux") and "fork" in methods and not any(f in sys.modules for f in frameworks):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def build_cache(
    manifest: Manifest,
    cache_dir: str | os.PathLike,
    config: FeatureConfig,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> BuildReport:
    """Compute the features of every utterance of ``manifest`` into ``cache_dir``.

    Resumable: valid entries are skipped, truncated or corrupt ones rebuilt. Each entry is written
    atomically, so an interrupted build (even ``kill -9``) leaves only valid entries, and several
    processes may build into one folder at once. Bad audio files are reported in
    ``BuildReport.failed`` and skipped. ``shard=(i, n)`` builds a stable 1/n subset (see :func:`in_shard`);
    the n shards cover every utterance exactly once. ``workers > 1`` uses a process pool.
    """
    if not isinstance(config, FeatureConfig):
        raise ConfigError(f"expected a FeatureConfig, got {type(config).__name__}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
    shard = _check_shard(shard)
    cache_dir = Path(cache_dir)
    _open_or_create(cache_dir, config)
    write_manifest(cache_dir / "manifest.txt", manifest)
    LabelMap.from_manifest(manifest).save(cache_dir / "labels.json")
    for stale in _stray_tmp(cache_dir, older_than=_STALE_TMP_S):  # a live writer renames its file in ms
        stale.unlink(missing_ok=True)

    config_dict = config.to_dict()
    root = str(Path(manifest.root).resolve())
    jobs = [(root, u.path, str(cache_dir), config_dict) for u in manifest if in_shard(u.path, shard)]
    report = BuildReport()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="caching features", unit="utt", disable=not progress, file=sys.stderr)
    try:
        if workers == 1 or len(jobs) < 2:
            results: Iterator = map(_build_one, jobs)
            _collect(results, report, bar)
        else:
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
                _collect(pool.map(_build_one, jobs, chunksize=chunk), report, bar)
    finally:
        bar.close()
    return report


def _collect(results: Iterator[tuple[str, str, str]], report: BuildReport, bar) -> None:
    for status, relpath, message in results:
        if status == "built":
            report.built += 1
        elif status == "skipped":
            report.skipped += 1
        else:
            report.failed.append((relpath, message))
        bar.update(1)


# ---------------------------------------------------------------------------------- verify and merge
@dataclasses.dataclass
class VerifyReport:
    """Outcome of :func:`verify_cache`: valid entries, missing ones, corrupt ones with the reason."""

    valid: int = 0
    missing: list[str] = dataclasses.field(default_factory=list)
    corrupt: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stray_tmp: list[str] = dataclasses.field(default_factory=list)  # left by an interrupted build

    @property
    def complete(self) -> bool:
        return not self.missing and not self.corrupt


def _stray_tmp(cache_dir: Path, older_than: float = 0.0) -> list[Path]:
    """Temporary files of interrupted entry writes (``.name.XXXX.tmp``) older than ``older_than`` s."""
    import time

    now, out = time.time(), []
    for dirpath, _, filenames in os.walk(cache_dir / "entries"):
        for f in filenames:
            p = Path(dirpath) / f
            if f.startswith(".") and f.endswith(".tmp"):
                try:
                    if now - p.stat().st_mtime >= older_than:
                        out.append(p)
                except FileNotFoundError:  # renamed by a concurrent writer
                    pass
    return out


def verify_cache(cache_dir: str | os.PathLike, manifest: Manifest | None = None) -> VerifyReport:
    """Check every entry the manifest (default: the cache's ``manifest.txt``) needs; report problems."""
    cache_dir = Path(cache_dir)
    config_dict = _read_header(cache_dir).to_dict()
    if manifest is None:
        manifest = read_manifest(cache_dir / "manifest.txt")
    report = VerifyReport()
    for u in manifest:
        path = entry_path(cache_dir, u.path)
        if not path.exists():
            report.missing.append(u.path)
            continue
        try:
            entry = load_entry(path)
        except CacheError as exc:
            report.corrupt.append((u.path, exc.problem))
            continue
        if entry["source"] != u.path or entry["feature_config"] != config_dict:
            report.corrupt.append((u.path, "entry belongs to another file or feature config"))
        else:
            report.valid += 1
    report.stray_tmp = [str(p) for p in _stray_tmp(cache_dir)]
    return report


def merge_caches(dest: str | os.PathLike, sources: Sequence[str | os.PathLike], manifest: Manifest) -> VerifyReport:
    """Copy valid entries of ``manifest`` from shard caches ``sources`` into ``dest`` (same config)."""
    dest = Path(dest)
    if not sources:
        raise CacheError("merge_caches needs at least one source cache", path=dest)
    config = _read_header(dest) if (dest / "cache.json").exists() else _read_header(Path(sources[0]))
    _open_or_create(dest, config)
    config_dict = config.to_dict()
    for src in map(Path, sources):
        _check_config(src, _read_header(src), config)
        for u in manifest:
            target = entry_path(dest, u.path)
            source = entry_path(src, u.path)
            if source.exists() and not _entry_valid(target, u.path, config_dict) and _entry_valid(source, u.path, config_dict):
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, source.read_bytes())
    write_manifest(dest / "manifest.txt", manifest)
    LabelMap.from_manifest(manifest).save(dest / "labels.json")
    return verify_cache(dest, manifest)


# -------------------------------------------------------------------------------------------- reading
class FeatureCache:
    """Read access to a built cache.

    ``config`` (optional) is checked against the cache's: a mismatch raises :class:`CacheError` showing
    both. ``len(cache)`` and iteration cover the manifest utterances whose entry exists.
    """

    def __init__(self, cache_dir: str | os.PathLike, config: FeatureConfig | None = None):
        self.cache_dir = Path(cache_dir)
        self.config = _read_header(self.cache_dir)
        _check_config(self.cache_dir, self.config, config)
        self._config_dict = self.config.to_dict()
        self._labels: LabelMap | None = None
        self._manifest: Manifest | None = None
        self._present: list[Utterance] | None = None

    @property
    def labels(self) -> LabelMap:
        """Training speakers <-> class indices (``labels.json``)."""
        if self._labels is None:
            try:
                self._labels = LabelMap.load(self.cache_dir / "labels.json")
            except SpkidError as exc:
                raise CacheError(exc.problem, path=exc.path) from None
        return self._labels

    @property
    def manifest(self) -> Manifest:
        """The manifest the cache was last built from (``manifest.txt``)."""
        if self._manifest is None:
            try:
                self._manifest = read_manifest(self.cache_dir / "manifest.txt")
            except SpkidError as exc:
                raise CacheError(exc.problem, path=exc.path) from None
        return self._manifest

    def utterances(self, split: str | None = None) -> list[Utterance]:
        """Manifest utterances that have an entry (optionally of one split)."""
        if self._present is None:
            self._present = [u for u in self.manifest if self.has(u)]
        return [u for u in self._present if split is None or u.split == split]

    def entry_path(self, utt: Utterance | str) -> Path:
        return entry_path(self.cache_dir, utt.path if isinstance(utt, Utterance) else utt)

    def has(self, utt: Utterance | str) -> bool:
        """Whether an entry file exists for ``utt`` (its validity is checked by :meth:`load`)."""
        return self.entry_path(utt).is_file()

    def load_entry(self, utt: Utterance | str) -> dict:
        """The checked entry dict of ``utt`` (see :func:`load_entry`)."""
        relpath = utt.path if isinstance(utt, Utterance) else utt
        path = self.entry_path(relpath)
        entry = load_entry(path)
        if entry["source"] != relpath:
            raise CacheError(f"entry is for {entry['source']!r}, not {relpath!r}", path=path)
        if entry["feature_config"] != self._config_dict:
            try:
                other = FeatureConfig.from_dict(entry["feature_config"]).describe()
            except ConfigError as exc:  # a malformed config is another config too: say why
                other = f"unusable feature_config ({exc.problem})"
            raise CacheError(
                f"entry was built with another feature config:\n  entry: {other}\n  cache: {self.config.describe()}",
                path=path,
            )
        return entry

    def load(self, utt: Utterance | str) -> np.ndarray:
        """Features of ``utt`` (an :class:`Utterance` or relpath): ``(n_frames, n_mels)`` float32."""
        return self.load_entry(utt)["features"]

    def __len__(self) -> int:
        return len(self.utterances())

    def __iter__(self) -> Iterator[tuple[Utterance, np.ndarray]]:
        for u in self.utterances():
            yield u, self.load(u)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.cache_dir)!r}, {self.config.describe()})"
