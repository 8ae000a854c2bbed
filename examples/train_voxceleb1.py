"""Train a speaker-identification model on VoxCeleb1 with its official identification split.

Expects ``ROOT/wav/idXXXXX/<video>/NNNNN.wav`` and ``iden_split.txt`` (``1``/``2``/``3`` = train/val/test;
138,361 / 6,904 / 8,251 utterances of 1,251 speakers), in ROOT or given with ``--split-file``. Defaults
are the paper's recipe (full-size model, Adam 2e-4, 3 s crops, 30 epochs); every one can be overridden.

    python examples/train_voxceleb1.py /data/voxceleb1 --out runs/vox1 --model resnet18 --workers 8
"""
from __future__ import annotations

import argparse

from _pipeline import add_training_arguments, prepare_and_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="VoxCeleb1 folder (holding wav/)")
    parser.add_argument("--split-file", help="iden_split.txt (default: ROOT/iden_split.txt)")
    add_training_arguments(parser, "spkid_out/voxceleb1")
    args = parser.parse_args(argv)

    from spkid.data.layouts.registry import load_dataset

    print(f"reading the identification split of VoxCeleb1 at {args.root}")
    manifest = load_dataset(args.root, "voxceleb1-split", split_file=args.split_file)
    prepare_and_train(manifest, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
