"""Train a speaker-identification model on VCTK (0.80 ``wav48/`` or 0.92 ``wav48_silence_trimmed/``).

VCTK has no official identification split: each speaker's files are split 80/10/10 (train/val/test) by a
seeded hash of the file name. Defaults are the paper's recipe (full-size model, Adam 2e-4, 3 s crops,
30 epochs); every one can be overridden.

    python examples/train_vctk.py /data/VCTK-Corpus-0.92 --out runs/vctk --backend torch --model resnet18
"""
from __future__ import annotations

import argparse

from _pipeline import add_training_arguments, prepare_and_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="VCTK folder (holding wav48/ or wav48_silence_trimmed/)")
    parser.add_argument("--mic", choices=["mic1", "mic2"], default="mic1", help="VCTK 0.92 microphone")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    add_training_arguments(parser, "spkid_out/vctk")
    args = parser.parse_args(argv)

    from spkid.data.layouts.registry import load_dataset

    print(f"scanning VCTK at {args.root} (mic {args.mic})")
    manifest = load_dataset(args.root, "vctk", mic=args.mic, val=args.val_fraction, test=args.test_fraction,
                            seed=args.seed)
    prepare_and_train(manifest, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
