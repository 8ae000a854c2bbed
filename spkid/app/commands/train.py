"""``spkid train --backend torch|keras --model NAME --cache DIR | --data ROOT --out RUN [--resume] [--devices N]``.

``--devices N`` trains data-parallel on N devices (:mod:`spkid.training.distributed`): the torch backend
relaunches this command under ``torch.distributed.run`` with N processes (or run ``torchrun
--nproc_per_node N -m spkid train ...`` yourself); keras uses ``tf.distribute.MirroredStrategy``.

Options come from a recipe YAML file (``--config``: TrainConfig fields, plus an optional ``features:``
mapping of FeatureConfig fields, as ``benchmarks/recipes/*.yaml``) overridden by one ``--field`` flag per
TrainConfig field (tuples and dicts as YAML, e.g. ``--gain-db "[-6, 6]"``, booleans as ``true``/``false``);
the data come from ``--cache`` (a feature store built by ``spkid prepare``, streamed: random crops read from
its memory-mapped shards, nothing loaded whole; an older per-utterance cache is still read, into memory),
``--waves`` (a wave store: crops augmented,
then featurised while training) or ``--data`` (scanned and featurised now). The recipe's ``features:``
(under ``--feature-config``'s fields) featurise ``--waves`` and ``--data``; a ``--cache`` must already
hold such features, or the command says how to rebuild it. Both kinds of option are built by
:mod:`spkid.app.options`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from spkid.app.options import (add_config_arguments, add_data_arguments, add_progress_argument, config_from_args,
                               data_argv, load_split)

NAME = "train"
HELP = "Train a speaker-identification model (torch or keras) with checkpoints you can resume."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spkid.backends import BACKENDS
    from spkid.training.config import TrainConfig

    parser.add_argument("--backend", choices=list(BACKENDS), default="torch", help="deep-learning backend")
    add_data_arguments(parser)
    parser.add_argument("--config", metavar="YAML", help="recipe: TrainConfig fields (+ an optional features: "
                        "mapping of FeatureConfig fields) from a YAML file")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, history)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip re-hashing the store's shards before training (a tampered shard is refused)")
    add_progress_argument(parser)
    add_config_arguments(parser, TrainConfig, "training options (override --config)")


def recipe_from_args(args: argparse.Namespace):
    """(TrainConfig from ``--config`` + flags, the recipe's ``features:`` FeatureConfig overrides)."""
    from spkid.training.config import TrainConfig, split_recipe

    config, features = split_recipe(args.config)
    return config_from_args(args, TrainConfig, data=config), features


def _launch_torchrun(args: argparse.Namespace, config, features: dict, nproc: int) -> int:
    """Run this training in ``nproc`` processes under torch.distributed.run (the resolved TrainConfig
    travels as a YAML --config file); the exit status of the job."""
    import json
    import tempfile

    import yaml

    from spkid.training.distributed import launch_torchrun

    with tempfile.TemporaryDirectory(prefix="spkid-train-") as tmp:
        cfg = Path(tmp) / "train-config.yaml"
        recipe = json.loads(config.to_json())
        if features:
            recipe["features"] = features
        cfg.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        argv = ["train", "--backend", "torch", "--out", str(args.out), "--config", str(cfg), *data_argv(args)]
        argv += ["--resume"] * args.resume + ["--no-progress"] * args.no_progress + ["--no-verify"] * args.no_verify
        return launch_torchrun(argv, nproc)


def _verify_store(args: argparse.Namespace) -> None:
    """Re-hash the shards of a ``--cache`` feature store or a ``--waves`` store (a CacheError names a damaged one)."""
    import time

    from spkid.data.featstore import FeatureStore, is_feature_store
    from spkid.data.waves import WaveStore

    if args.cache and is_feature_store(args.cache):
        store = FeatureStore.open(args.cache)
    elif getattr(args, "waves", None):
        store = WaveStore.open(args.waves)
    else:
        return
    t = time.perf_counter()
    n = store.verify()
    print(f"verified {n} shards of {store.root} in {time.perf_counter() - t:.1f} s")


def run(args: argparse.Namespace) -> int:
    import os

    from spkid.backends import get_backend
    from spkid.training.distributed import device_count
    from spkid.data.featuresets import split_holdout

    config, features = recipe_from_args(args)
    nproc = device_count(config.devices)
    if args.backend == "torch" and nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args, config, features, nproc)
    backend = get_backend(args.backend)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    progress = not args.no_progress and main
    if main and not args.no_verify:
        _verify_store(args)
    train = load_split(args, "train", feature_overrides=features, progress=progress)
    if train is None:
        from spkid.errors import SplitError

        raise SplitError("no usable training utterances", path=args.cache or args.waves or args.data)
    val = load_split(args, "val", feature_config=train.feature_config, speakers=train.speakers, progress=progress)
    if val is None and config.val_fraction > 0:
        train, val = split_holdout(train, config.val_fraction, config.seed)
    if main:
        print(f"{args.backend} {config.model}: {len(train)} training utterances, {train.n_classes} speakers, "
              f"{0 if val is None else len(val)} validation utterances -> {args.out}")
    history = backend.fit(config, train, val, Path(args.out), resume=args.resume, progress=progress)
    if history and main:
        last = history[-1]
        print("final: " + " ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float)))
    return 0
