"""``spkid prepare ROOT --cache DIR [--waves DIR]``: scan a dataset, write its manifest, build the
feature store (log-mel frames in memory-mapped shards that training streams: :mod:`spkid.data.featstore`)
and/or the waveform store (decoded and resampled audio in the same layout, for training with waveform
augmentation: :mod:`spkid.data.waves`). Both resume after a crash and build ``--shard I/N`` parts that
``spkid prepare --merge PART... --cache DIR`` (or ``--waves DIR``) combines.

``spkid prepare OLD_CACHE --cache DIR`` converts a per-utterance cache folder of the older format
(``cache.json`` + ``entries/``) into a feature store, without decoding audio again.

Exit status is 0 when each store built holds at least one usable entry (failures are listed, not fatal),
1 when nothing usable was produced.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spkid.app.options import add_feature_arguments, add_progress_argument, feature_config_from_args

NAME = "prepare"
HELP = "Scan a dataset (VoxCeleb, VCTK, folders, file-name pattern, manifest) and build its feature store."
_MAX_LISTED = 20


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.data.layouts.registry import LAYOUTS

    parser.add_argument("root", nargs="?", help="dataset folder (or a manifest file with --layout manifest, or an "
                                                "older per-utterance cache folder to convert)")
    parser.add_argument("--cache", metavar="DIR", help="feature-store folder to build or resume")
    parser.add_argument("--waves", metavar="DIR", help="waveform-store folder to build or resume (audio at --sr)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="dataset layout (default: detect)")
    parser.add_argument("--manifest", metavar="FILE",
                        help="read this manifest if it exists, else write the scanned one there")
    parser.add_argument("--pattern", help="file-name regex with (?P<speaker>...), or a preset: fsdd, librispeech")
    parser.add_argument("--test-pattern", metavar="REGEX", help="file names fully matching it go to test")
    parser.add_argument("--val-pattern", metavar="REGEX", help="file names fully matching it go to val")
    parser.add_argument("--mic", choices=["mic1", "mic2"], default="mic1", help="VCTK 0.92 microphone")
    parser.add_argument("--split-file", metavar="FILE", help="VoxCeleb1 iden_split.txt (default: ROOT/iden_split.txt)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="seeded split: share of val files")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="seeded split: share of test files")
    parser.add_argument("--seed", type=int, default=0, help="seeded split: seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="feature-extraction processes (default 1)")
    parser.add_argument("--shard", type=_shard, metavar="I/N", help="build only shard I of N (0 <= I < N)")
    parser.add_argument("--merge", nargs="+", metavar="PART",
                        help="combine the stores PART... (built with --shard) into --cache DIR or --waves DIR")
    add_progress_argument(parser)
    add_feature_arguments(parser)


def _load_manifest(args: argparse.Namespace):
    from spkid.data.layouts.registry import load_dataset
    from spkid.data.manifest import read_manifest, write_manifest

    if args.manifest and Path(args.manifest).exists():
        manifest = read_manifest(args.manifest, default_root=args.root)
        print(f"read manifest {args.manifest}")
        return manifest
    manifest = load_dataset(
        args.root, args.layout, pattern=args.pattern, mic=args.mic, split_file=args.split_file,
        val=args.val_fraction, test=args.test_fraction, seed=args.seed,
        test_pattern=args.test_pattern, val_pattern=args.val_pattern,
    )
    if args.manifest:
        write_manifest(args.manifest, manifest)
        print(f"wrote manifest {args.manifest}")
    return manifest


def _merge(args: argparse.Namespace) -> int:
    from spkid.errors import ConfigError

    if bool(args.cache) == bool(args.waves) or args.root:
        raise ConfigError("spkid prepare --merge PART... takes one of --cache DIR or --waves DIR, and no ROOT")
    if args.cache:
        from spkid.data.featstore import merge_feature_stores

        store = merge_feature_stores(args.cache, args.merge)
    else:
        from spkid.data.store_merge import merge_wave_stores

        store = merge_wave_stores(args.waves, args.merge)
    print(f"merged {len(args.merge)} parts: {store!r}")
    return 0


def run(args: argparse.Namespace) -> int:
    from spkid.data.featstore import build_feature_store, convert_cache, is_legacy_cache
    from spkid.errors import ConfigError, SplitError
    from spkid.data.splitting import check_closed_set

    if not (args.cache or args.waves):
        raise ConfigError("spkid prepare needs --cache DIR (feature store) and/or --waves DIR (waveform store)")
    if args.merge:
        return _merge(args)
    if not args.root:
        raise ConfigError("spkid prepare needs ROOT: a dataset folder, a manifest, or an older cache to convert")
    if is_legacy_cache(args.root):
        if args.waves or not args.cache:
            raise ConfigError(f"{args.root} is an older feature cache: convert it with `spkid prepare {args.root} "
                              f"--cache NEW` (audio for --waves comes from the dataset, not a cache)")
        print(f"converting the per-utterance cache {args.root} into the feature store {args.cache}")
        report = convert_cache(args.root, args.cache, workers=args.workers, progress=not args.no_progress)
        _print_report(report)
        return 0 if report.usable else 1
    config = feature_config_from_args(args)
    manifest = _load_manifest(args)
    print(manifest.summary())
    for note in manifest.notes:
        print(f"note: {note}")
    try:
        check_closed_set(manifest)
    except SplitError as exc:
        print(f"warning: {exc}")
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    reports = []
    if args.cache:
        print(f"building the feature store {args.cache}{shard} with {config.describe()}")
        reports.append(build_feature_store(manifest, args.cache, config, workers=args.workers, shard=args.shard,
                                           progress=not args.no_progress))
        _print_report(reports[-1])
    if args.waves:
        from spkid.data.waves_build import build_wave_store

        print(f"building the wave store {args.waves}{shard} at {config.sr} Hz")
        reports.append(build_wave_store(manifest, args.waves, sr=config.sr, workers=args.workers, shard=args.shard,
                                        progress=not args.no_progress))
        _print_report(reports[-1])
    if any(r.usable == 0 for r in reports):
        print("nothing usable was produced")
        return 1
    return 0


def _print_report(report) -> None:
    print(report.summary())
    for relpath, message in report.failed[:_MAX_LISTED]:
        print(f"  failed: {relpath}: {message}")
    if len(report.failed) > _MAX_LISTED:
        print(f"  ... and {len(report.failed) - _MAX_LISTED} more failures")
