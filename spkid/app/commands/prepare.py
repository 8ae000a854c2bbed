"""``spkid prepare ROOT --cache DIR``: scan a dataset, write its manifest, build the feature cache.

Exit status is 0 when the cache holds at least one usable entry (failures are listed, not fatal),
1 when nothing usable was produced.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

NAME = "prepare"
HELP = "Scan a dataset (VoxCeleb, VCTK, folders, file-name pattern, manifest) and build its feature cache."
_MAX_LISTED = 20


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def _option_kwargs(tp) -> dict:
    """argparse ``choices`` / ``type`` for a config field annotation; ``none`` allowed when optional."""
    optional = type(None) in typing.get_args(tp)
    literals = [tp] if typing.get_origin(tp) is typing.Literal else [
        a for a in typing.get_args(tp) if typing.get_origin(a) is typing.Literal
    ]
    if literals:
        return {"choices": [str(v) for lit in literals for v in typing.get_args(lit)] + ["none"] * optional}
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    convert = base if base in (int, float) else str
    if not optional:
        return {"type": convert}
    return {"type": lambda text: "none" if text.lower() == "none" else convert(text)}


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, title: str) -> None:
    """One ``--kebab-name`` option per field of a StrictConfig class (default: keep the config's value)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kw = _option_kwargs(hints[f.name])
        if "choices" not in kw:
            kw["metavar"] = f.name.upper()
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", default=None,
                           help=f"(default: {f.default})", **kw)


def config_from_args(args: argparse.Namespace, config_cls, yaml_path: str | None = None):
    """Build a config: YAML file (optional) overridden by the ``--field`` options that were given."""
    from spkid._strict import load_yaml_config

    data = load_yaml_config(yaml_path) if yaml_path else {}
    for name in config_cls.field_names():
        value = getattr(args, f"cfg_{name}", None)
        if value is not None:
            data[name] = None if value == "none" else value
    return config_cls.from_dict(data)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.features.config import FeatureConfig
    from spkid.data.splits import LAYOUTS

    parser.add_argument("root", help="dataset folder (or a manifest file with --layout manifest)")
    parser.add_argument("--cache", required=True, metavar="DIR", help="feature-cache folder to build or resume")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--feature-config", metavar="YAML", help="FeatureConfig fields from a YAML file")
    add_config_arguments(parser, FeatureConfig, "feature options (override --feature-config)")


def _load_manifest(args: argparse.Namespace):
    from spkid.data.splits import load_dataset, read_manifest, write_manifest

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


def run(args: argparse.Namespace) -> int:
    from spkid.data.cache import build_cache
    from spkid.features.config import FeatureConfig
    from spkid.errors import SplitError
    from spkid.data.splits import check_closed_set

    config = config_from_args(args, FeatureConfig, args.feature_config)
    manifest = _load_manifest(args)
    print(manifest.summary())
    for note in manifest.notes:
        print(f"note: {note}")
    try:
        check_closed_set(manifest)
    except SplitError as exc:
        print(f"warning: {exc}")
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(f"building {args.cache}{shard} with {config.describe()}")
    report = build_cache(manifest, args.cache, config, workers=args.workers, shard=args.shard,
                         progress=not args.no_progress)
    print(report.summary())
    for relpath, message in report.failed[:_MAX_LISTED]:
        print(f"  failed: {relpath}: {message}")
    if len(report.failed) > _MAX_LISTED:
        print(f"  ... and {len(report.failed) - _MAX_LISTED} more failures")
    if report.usable == 0:
        print("nothing usable was produced")
        return 1
    return 0
