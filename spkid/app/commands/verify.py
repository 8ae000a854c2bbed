"""``spkid verify``: speaker verification, one pair or a VoxCeleb-style trial list.

    spkid verify --model M A.wav B.wav [--gallery G | --threshold X]
    spkid verify --model M --trials TRIALS --root DIR --out SCORES [--cohort EMB.npz [--top-n 300]]
                 [--calibration CAL.json | --fit-calibration CAL.json] [--det DET.png]

A pair prints its cosine score and ``same`` / ``different`` at the threshold (``--threshold``, else the one
stored in ``--gallery``; none: the score only). A trial list (:mod:`spkid.search.trials`: ``label path1
path2``, paths under ``--root``) has each distinct file embedded once, in batches of ``--batch-files``;
unreadable files are reported and their trials skipped. ``--cohort`` (an embeddings file of ``spkid embed``,
e.g. of the training set) S-normalises the scores, adaptively with ``--top-n``
(:mod:`spkid.search.scoring`). ``--calibration`` turns them into log-likelihood ratios with a saved
calibration; ``--fit-calibration`` fits one on this (labelled) list and saves it. SCORES gets one line
``score path1 path2`` per kept trial; for a labelled list a table of EER and minDCF (p_target 0.01 and
0.05) is printed, a DET plot written (``--det``, default SCORES.det.png), and the last line is
``EER=<percent> minDCF=<value>`` (minDCF at p_target 0.01, C_miss = C_fa = 1).
"""
from __future__ import annotations

import argparse

from spkid.app.options import add_progress_argument

NAME = "verify"
HELP = "Verify speakers: score a pair of clips or a trial list (EER, minDCF, S-norm / AS-norm, DET plot)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT_OR_ONNX",
                        help="run directory, checkpoint .json / state file (torch or keras), or exported .onnx")
    parser.add_argument("pair", nargs="*", metavar="CLIP", help="two clips to compare (without --trials)")
    parser.add_argument("--threshold", type=float, help="same speaker when cosine >= this")
    parser.add_argument("--gallery", metavar="G", help="take the threshold stored in gallery G")
    parser.add_argument("--trials", metavar="TRIALS", help="trial list: 'label path1 path2' per line")
    parser.add_argument("--root", metavar="DIR", help="folder the trial list's paths are relative to")
    parser.add_argument("--out", metavar="SCORES", help="score file to write ('score path1 path2' per trial)")
    parser.add_argument("--cohort", metavar="EMB.npz", help="cohort embeddings (spkid embed) for S-norm")
    parser.add_argument("--top-n", type=int, help="adaptive S-norm: the top-N cohort scores of each side")
    parser.add_argument("--calibration", metavar="CAL.json", help="map scores to LLRs with this calibration")
    parser.add_argument("--fit-calibration", metavar="CAL.json", help="fit a calibration on this list and save it")
    parser.add_argument("--det", metavar="PNG", help="DET plot (default: SCORES.det.png)")
    parser.add_argument("--batch-files", type=int, default=256, help="files embedded per batch (default: 256)")
    add_progress_argument(parser)


def _pair(args, embedder) -> int:
    from spkid.errors import AudioError, ConfigError
    from spkid.inference.embedder import embed_files
    from spkid.search.scoring import cosine_trials

    if len(args.pair) != 2:
        raise ConfigError(f"give two clips (or --trials), got {len(args.pair)}")
    threshold = args.threshold
    if threshold is None and args.gallery:
        from spkid.search.binding import open_gallery

        threshold = open_gallery(args.gallery, embedder, args.model, create=False)[0].threshold
    emb, ok, failed = embed_files(args.pair, embedder)
    if failed:
        raise AudioError(failed[0][1], path=failed[0][0])
    score = float(cosine_trials(emb, [0], [1])[0])
    if threshold is None:
        print(f"cosine={score:.4f} (no threshold: pass --threshold or --gallery)")
    else:
        print(f"cosine={score:.4f} threshold={threshold:.4f} {'same' if score >= threshold else 'different'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spkid.errors import ConfigError
    from spkid.inference.embedder import embed_files, load_embedder

    embedder = load_embedder(args.model)
    if not args.trials:
        return _pair(args, embedder)
    if args.pair or not args.out:
        raise ConfigError("--trials takes no clips and needs --out SCORES")
    if args.calibration and args.fit_calibration:
        raise ConfigError("--calibration and --fit-calibration exclude each other")
    from spkid.metrics import compute_eer, compute_min_dcf, det_curve
    from spkid.search.scoring import Calibration, score_trial_list
    from spkid.search.trials import read_scores, read_trials, write_scores

    trials = read_trials(args.trials)
    where = trials.resolve(args.root)
    cohort = None
    if args.cohort:
        from spkid.inference.embeddings import load_embeddings

        cohort = load_embeddings(args.cohort).embeddings
    elif args.top_n is not None:
        raise ConfigError("--top-n needs --cohort")
    names = list(where)
    files = list(dict.fromkeys(str(f) for f in where.values()))  # two spellings of one file: embedded once
    emb, ok, failed = embed_files(files, embedder, progress=not args.no_progress, batch_files=args.batch_files)
    row = {p: e for p, e in zip(ok, emb)}
    embedded = {n: row[str(where[n])] for n in names if str(where[n]) in row}
    for path, why in failed:
        print(f"skipped {path}: {why}")
    kept, scores = score_trial_list(trials, embedded, cohort, args.top_n)
    print(f"{len(files)} files ({len(failed)} unreadable), {len(kept)} of {len(trials)} trials scored"
          + (f", S-norm{' top-' + str(args.top_n) if args.top_n else ''} over {len(cohort)} cohort embeddings"
             if cohort is not None else ""))
    if not len(kept):
        return 1
    target = kept.labels == 1
    if args.fit_calibration:
        if not kept.labelled:
            raise ConfigError("--fit-calibration needs a labelled trial list", path=args.trials)
        cal = Calibration.fit(scores, target)
        cal.save(args.fit_calibration)
        print(f"calibration llr = {cal.slope:.4f} * score + {cal.offset:.4f} -> {args.fit_calibration}")
    if args.calibration:
        scores = Calibration.load(args.calibration)(scores)
    out = write_scores(args.out, scores, kept.left, kept.right)
    scores = read_scores(out)[0]  # the figures are those of the file, exactly
    print(f"scores -> {out}")
    if not kept.labelled or target.all() or not target.any():
        print("no EER: the trial list is unlabelled or has only one kind of trial")
        return 0
    eer, thr = compute_eer(scores, target)
    dcf1, dcf5 = compute_min_dcf(scores, target, 0.01)[0], compute_min_dcf(scores, target, 0.05)[0]
    print(f"  {'trials':>8} {'targets':>8} {'EER %':>7} {'threshold':>9} {'minDCF 0.01':>11} {'minDCF 0.05':>11}")
    print(f"  {len(kept):>8} {int(target.sum()):>8} {100 * eer:7.3f} {thr:9.4f} {dcf1:11.4f} {dcf5:11.4f}")
    from spkid.app.plots import plot_det

    p_fa, p_miss, _ = det_curve(scores, target)
    det = plot_det({f"{Path(args.trials).name} (EER {100 * eer:.2f} %)": (p_fa, p_miss)},
                   args.det or f"{args.out}.det.png", title=f"DET: {Path(args.model).name}")
    print(f"DET plot -> {det}")
    print(f"EER={100 * eer:.3f} minDCF={dcf1:.4f}")
    return 0
