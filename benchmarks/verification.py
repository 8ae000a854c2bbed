"""Speaker verification on real speech (libri251): EER and minDCF of all-pairs trials, raw, S-norm, AS-norm.

    python benchmarks/accuracy.py --protocol libri251 --out runs/libri251        # train once (a run dir)
    python benchmarks/verification.py --model runs/libri251                       # the table in the README

Trials. The libri251 test segments (the last 30% of each file in 3 s pieces, cut as
:func:`benchmarks.accuracy.libri_parts` cuts them) hold one segment per speaker, so each
segment is halved (two 1.5 s pieces, the first and the second half) and the trials are all pairs of pieces:
a target trial pairs the two halves of one speaker's segment, a non-target trial pieces of two speakers.

Cohort. S-norm needs a cohort of other speakers' embeddings: the speakers are split into two folds by the
parity of their index (sorted ids); the trials of a fold are the pairs within it, and its cohort is the other
fold's training audio (each training part -- the first 70% of a file less accuracy.py's 1.5 s validation tail
-- in consecutive ``--window`` -second windows, the windows of ``benchmarks/gallery_accuracy.py``). The two
folds' scores are pooled. S-norm uses the whole cohort, AS-norm each side's ``--top-n`` highest cohort scores
(:mod:`spkid.search.scoring`). The model was trained on all 251 speakers' training audio (not on the test
pieces), so its cohort speakers are not unseen: a closed-world figure, not a VoxCeleb one.

Printed: one row per scoring (trials, targets, EER %, minDCF at p_target 0.01 and 0.05, C_miss = C_fa = 1).
``--det PNG`` draws the three DET curves. The last line is ``raw_eer=<percent> snorm_eer=<percent>
asnorm_eer=<percent>``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import DATA, data_root, libri_parts, libri_sets, load_model  # noqa: E402  (puts the repo on sys.path too)
from gallery_accuracy import windows  # noqa: E402

from spkid.features.api import fbank_from_config  # noqa: E402
from spkid.metrics import compute_eer, compute_min_dcf, det_curve  # noqa: E402
from spkid.search.scoring import normalize_trials  # noqa: E402


def pieces(embedder, root: Path):
    """(embeddings (P, D) of the halved test segments, their speaker indices (P,), segment index (P,))."""
    fc = embedder.feature_config
    _, parts = libri_parts(root, fc.sr, 0.0, fc.win_length)
    feats, spk, seg = [], [], []
    for k, (y, label, _) in enumerate(parts["test"]):
        half = len(y) // 2
        for part in (y[:half], y[half:]):
            feats.append(fbank_from_config(part, fc))
            spk.append(label)
            seg.append(k)
    return embedder.embed(feats), np.asarray(spk), np.asarray(seg)


def cohort_of(embedder, root: Path, window: float):
    """(embeddings (C, D) of the training parts' windows, their speaker indices (C,))."""
    fc = embedder.feature_config
    train, _, _ = libri_sets(root, fc, embedder.config, val_seconds=1.5)
    size = int(round(window / fc.frame_shift))
    feats, spk = [], []
    for f, label in zip(train.features, train.labels):
        for piece in windows(f, size):
            feats.append(piece)
            spk.append(int(label))
    return embedder.embed(feats), np.asarray(spk)


def fold_trials(emb, spk, cohort, cohort_spk, top_n: int):
    """{scoring: scores}, is_target: the pooled within-fold all-pairs trials of the two parity folds."""
    out = {"raw": [], "S-norm": [], f"AS-norm top-{top_n}": []}
    target = []
    for fold in (0, 1):
        rows = np.flatnonzero(spk % 2 == fold)
        i, j = np.triu_indices(len(rows), k=1)
        left, right = rows[i], rows[j]
        c = cohort[cohort_spk % 2 != fold]
        out["raw"].append(normalize_trials(emb, left, right))
        out["S-norm"].append(normalize_trials(emb, left, right, c))
        out[f"AS-norm top-{top_n}"].append(normalize_trials(emb, left, right, c, top_n))
        target.append(spk[left] == spk[right])
    return {k: np.concatenate(v) for k, v in out.items()}, np.concatenate(target)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run directory / checkpoint (either backend) or .onnx")
    ap.add_argument("--top-n", type=int, default=100, help="AS-norm cohort size per side (default: 100)")
    ap.add_argument("--window", type=float, default=3.0, help="cohort window in seconds (default: 3)")
    ap.add_argument("--det", type=Path, metavar="PNG", help="also draw the three DET curves to this PNG")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    root = data_root("verification.py", args.data, "librispeech-251")
    if root is None:
        return 2
    embedder = load_model(args.model)
    t0 = time.perf_counter()
    emb, spk, _ = pieces(embedder, root)
    cohort, cohort_spk = cohort_of(embedder, root, args.window)
    scores, target = fold_trials(emb, spk, cohort, cohort_spk, args.top_n)
    print(f"model {args.model} ({embedder.backend} {embedder.model_name}): libri251, {len(emb)} test pieces of "
          f"{len(set(spk.tolist()))} speakers, cohort {len(cohort)} training windows ({args.window:g} s), "
          f"two folds, {time.perf_counter() - t0:.1f} s")
    print(f"  {'scoring':<18} {'trials':>8} {'targets':>7} {'EER %':>7} {'minDCF 0.01':>11} {'minDCF 0.05':>11}")
    eers = []
    for name, s in scores.items():
        eer = compute_eer(s, target)[0]
        eers.append(eer)
        print(f"  {name:<18} {len(s):>8} {int(target.sum()):>7} {100 * eer:7.2f} "
              f"{compute_min_dcf(s, target, 0.01)[0]:11.4f} {compute_min_dcf(s, target, 0.05)[0]:11.4f}")
    if args.det:
        from spkid.app.plots import plot_det

        curves = {f"{name} (EER {100 * e:.2f} %)": det_curve(s, target)[:2] for (name, s), e in zip(scores.items(), eers)}
        print(f"DET plot -> {plot_det(curves, args.det, title='libri251 all-pairs trials')}")
    print("raw_eer={:.2f} snorm_eer={:.2f} asnorm_eer={:.2f}".format(*(100 * e for e in eers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
