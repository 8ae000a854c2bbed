"""Shared steps of the training examples: dataset manifest -> feature store -> train -> test accuracy.

Not a public module; ``train_vctk.py`` and ``train_voxceleb1.py`` import it from this folder.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_training_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """Options shared by the training examples (defaults: the paper's recipe, full-size model)."""
    from spkid.models.specs import MODEL_NAMES

    parser.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    parser.add_argument("--backend", choices=["torch", "keras"], default="torch")
    parser.add_argument("--model", choices=list(MODEL_NAMES), default="vgg_attention")
    parser.add_argument("--tiny", action="store_true", help="tiny model (spkid.models.specs.TINY_OVERRIDES), for smoke tests")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--crop-frames", type=int, default=300, help="training crop length (300 = 3 s)")
    parser.add_argument("--workers", type=int, default=1, help="feature-extraction processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue OUT/run from its last checkpoint")


def prepare_and_train(manifest, args: argparse.Namespace) -> dict:
    """Cache the features of ``manifest`` under ``OUT/cache``, train into ``OUT/run``, evaluate on test."""
    from spkid.backends import get_backend
    from spkid.data.featstore import build_feature_store
    from spkid.data.featuresets import cache_feature_sets
    from spkid.features.config import FeatureConfig
    from spkid.training.config import TrainConfig
    from spkid.models.specs import TINY_OVERRIDES
    from spkid.data.manifest import write_manifest

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(manifest.summary())
    for note in manifest.notes:
        print(f"note: {note}")
    write_manifest(out / "manifest.txt", manifest)
    print(f"caching 40-band log-mel features in {out / 'cache'} ({args.workers} worker(s))")
    print(build_feature_store(manifest, out / "cache", FeatureConfig(), workers=args.workers).summary())
    train, val, test = cache_feature_sets(out / "cache", args.seed)

    config = TrainConfig(model=args.model, model_overrides=TINY_OVERRIDES[args.model] if args.tiny else {},
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, crop_frames=args.crop_frames,
                         seed=args.seed)
    print(f"training {args.model} ({args.backend}) on {len(train)} clips of {train.n_classes} speakers, "
          f"validating on {len(val)}; checkpoints in {out / 'run'}")
    backend = get_backend(args.backend)
    backend.fit(config, train, val, out / "run", resume=args.resume)
    result = {"train_clips": len(train), "speakers": train.n_classes}
    if test is not None:
        report = backend.evaluate(out / "run", test)
        result.update(top1=report["top1"], top5=report["top5"], test_clips=report["n"])
        print(f"test: top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%  ({report['n']} clips)")
    print(f"done in {time.perf_counter() - t0:.0f} s; best checkpoint: {out / 'run' / 'checkpoints' / 'best.json'}")
    return result
