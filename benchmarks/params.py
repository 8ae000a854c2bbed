"""Parameter counts of every registered model in both backends at the default config.

    python benchmarks/params.py [--n-classes 1251] [--frames 300]

Prints a Markdown table: trainable / total (incl. BatchNorm running statistics) parameters, and the
trunk output H (T' x u) for ``--frames`` input frames, for PyTorch and Keras side by side.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-classes", type=int, default=1251)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args(argv)

    import spkid_keras
    import spkid_torch
    from spkid.models.specs import MODEL_NAMES, attention_input_dim, model_spec, output_frames

    print(f"n_classes={args.n_classes}, input {args.frames} x n_mels\n")
    print("| model | backend | trainable | total | H (T' x u) |")
    print("|---|---|---:|---:|---|")
    for name in MODEL_NAMES:
        spec = model_spec(name)
        h = f"{output_frames(spec, args.frames)} x {attention_input_dim(spec)}"
        for label, backend in (("torch", spkid_torch), ("keras", spkid_keras)):
            counts = backend.count_params(backend.create_model(name, args.n_classes))
            print(f"| {name} | {label} | {counts['trainable']:,} | {counts['total']:,} | {h} |")


if __name__ == "__main__":
    main()
