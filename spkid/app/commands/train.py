"""``spkid train --backend torch|keras --model NAME --cache DIR | --data ROOT --out RUN [--resume] [--devices N]``.

``--devices N`` trains data-parallel on N devices (:mod:`spkid.training.distributed`): the torch backend
relaunches this command under ``torch.distributed.run`` with N processes (or run ``torchrun
--nproc_per_node N -m spkid train ...`` yourself); keras uses ``tf.distribute.MirroredStrategy``.

Options come from a YAML file (``--config``) overridden by one ``--field`` flag per TrainConfig field
(tuples and dicts as YAML, e.g. ``--gain-db "[-6, 6]"``). The data helpers here (``--cache`` from
``spkid prepare`` or ``--data`` scanned and featurised on the fly) are shared with ``evaluate``/``embed``.
"""
from __future__ import annotations

import argparse
import typing
from pathlib import Path

NAME = "train"
HELP = "Train a speaker-identification model (torch or keras) with checkpoints you can resume."


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache DIR`` | ``--data ROOT`` (+ ``--layout``, ``--pattern``, ``--feature-config``)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", metavar="DIR", help="feature cache built by `spkid prepare`")
    src.add_argument("--data", metavar="ROOT", help="dataset folder, scanned and featurised now")
    parser.add_argument("--layout", default="auto", help="dataset layout for --data (default: detect)")
    parser.add_argument("--pattern", help="file-name regex or preset (fsdd, librispeech) for --data")
    parser.add_argument("--feature-config", metavar="YAML", help="FeatureConfig for --data (default: defaults)")


def load_split(args: argparse.Namespace, split: str, *, feature_config=None, speakers=None, progress=True):
    """:func:`spkid.data.sampler.load_feature_set` for the ``--cache`` / ``--data`` options in ``args``
    (``--feature-config YAML`` applies to ``--data`` when no ``feature_config`` is given)."""
    from spkid.features.config import FeatureConfig
    from spkid._strict import load_yaml_config
    from spkid.data.sampler import load_feature_set

    if not args.cache and feature_config is None and args.feature_config:
        feature_config = FeatureConfig.from_dict(load_yaml_config(args.feature_config))
    return load_feature_set(split, cache=args.cache, data=args.data, layout=args.layout, pattern=args.pattern,
                            feature_config=feature_config, speakers=speakers, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.backends import BACKENDS
    from spkid.training.config import TrainConfig
    from spkid.app.commands.prepare import add_config_arguments

    parser.add_argument("--backend", choices=list(BACKENDS), default="torch", help="deep-learning backend")
    add_data_arguments(parser)
    parser.add_argument("--config", metavar="YAML", help="TrainConfig fields from a YAML file")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, history)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(parser, TrainConfig, "training options (override --config)")


def train_config_from_args(args: argparse.Namespace):
    """TrainConfig from ``--config`` + flags; dict/tuple flags are parsed as YAML."""
    import yaml

    from spkid.training.config import TrainConfig
    from spkid.errors import ConfigError
    from spkid.app.commands.prepare import config_from_args

    hints = typing.get_type_hints(TrainConfig)
    for name, tp in hints.items():
        value = getattr(args, f"cfg_{name}", None)
        structured = tp is dict or tuple in (typing.get_origin(tp), *map(typing.get_origin, typing.get_args(tp)))
        if structured and isinstance(value, str) and value != "none":
            try:
                setattr(args, f"cfg_{name}", yaml.safe_load(value))
            except yaml.YAMLError as exc:
                raise ConfigError(f"--{name.replace('_', '-')}: not valid YAML: {exc}") from None
    for name in ("mixed_precision",):  # booleans arrive as text
        value = getattr(args, f"cfg_{name}", None)
        if isinstance(value, str):
            setattr(args, f"cfg_{name}", value.lower() in ("1", "true", "yes", "on"))
    return config_from_args(args, TrainConfig, args.config)


def _launch_torchrun(args: argparse.Namespace, config, nproc: int) -> int:
    """Run this training in ``nproc`` processes under torch.distributed.run (the resolved TrainConfig
    travels as a YAML --config file); the exit status of the job."""
    import json
    import tempfile

    import yaml

    from spkid.training.distributed import launch_torchrun

    with tempfile.TemporaryDirectory(prefix="spkid-train-") as tmp:
        cfg = Path(tmp) / "train-config.yaml"
        cfg.write_text(yaml.safe_dump(json.loads(config.to_json())), encoding="utf-8")
        argv = ["train", "--backend", "torch", "--out", str(args.out), "--config", str(cfg)]
        for flag in ("cache", "data", "layout", "pattern", "feature_config"):
            if getattr(args, flag) is not None:
                argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        argv += ["--resume"] * args.resume + ["--no-progress"] * args.no_progress
        return launch_torchrun(argv, nproc)


def run(args: argparse.Namespace) -> int:
    import importlib
    import os

    from spkid.backends import get_backend
    from spkid.training.distributed import device_count
    from spkid.data.sampler import split_holdout

    config = train_config_from_args(args)
    nproc = device_count(config.devices)
    if args.backend == "torch" and nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args, config, nproc)
    module = importlib.import_module(get_backend(args.backend).__name__ + ".train")
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    progress = not args.no_progress and main
    train = load_split(args, "train", progress=progress)
    if train is None:
        from spkid.errors import SplitError

        raise SplitError("no usable training utterances", path=args.cache or args.data)
    val = load_split(args, "val", feature_config=train.feature_config, speakers=train.speakers, progress=progress)
    if val is None and config.val_fraction > 0:
        train, val = split_holdout(train, config.val_fraction, config.seed)
    if main:
        print(f"{args.backend} {config.model}: {len(train)} training utterances, {train.n_classes} speakers, "
              f"{0 if val is None else len(val)} validation utterances -> {args.out}")
    history = module.fit(config, train, val, Path(args.out), resume=args.resume, progress=progress)
    if history and main:
        last = history[-1]
        print("final: " + " ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float)))
    return 0
