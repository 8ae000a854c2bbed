"""``spkid features FILE... [--out DIR]``: log-mel features of audio files.

Prints each file's feature shape and duration; with ``--out`` writes ``DIR/<stem>.npy`` atomically.
Unreadable files are reported and skipped; the exit status is 1 only when no file succeeded.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from spkid.app.options import add_feature_arguments, feature_config_from_args

NAME = "features"
HELP = "Compute log-mel filterbank features of audio files (print shapes, optionally save .npy)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, ...)")
    parser.add_argument("--out", metavar="DIR", help="write DIR/<file stem>.npy, (n_frames, n_mels) float32")
    add_feature_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from spkid.errors import SpkidError
    from spkid.audio.io import load_audio
    from spkid.features.api import fbank_from_config
    from spkid.fileio import atomic_write_bytes

    config = feature_config_from_args(args)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[Path, str] = {}
    failures: list[str] = []
    for name in args.files:
        try:
            y = load_audio(name, sr=config.sr)
            feats = fbank_from_config(y, config)
            target = None
            if out_dir is not None:
                target = out_dir / f"{Path(name).stem}.npy"
                if target in written:
                    raise SpkidError(f"output {target} already written for {written[target]}", path=name)
                buf = io.BytesIO()
                np.save(buf, feats)
                atomic_write_bytes(target, buf.getvalue())
                written[target] = name
        except (SpkidError, OSError) as exc:
            message = str(exc) if getattr(exc, "path", None) else f"{name}: {exc}"
            failures.append(message)
            print(f"skip {message}")
            continue
        print(f"{name}: {y.size / config.sr:.2f} s -> {feats.shape[0]} frames x {feats.shape[1]} mels"
              + (f" -> {target}" if target else ""))
    ok = len(args.files) - len(failures)
    print(f"{ok} of {len(args.files)} file(s) done, {len(failures)} skipped")
    return 0 if ok else 1
