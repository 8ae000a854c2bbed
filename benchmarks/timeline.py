"""Who speaks when, on constructed recordings of real speech (libri251): labelled time and boundaries.

    python benchmarks/accuracy.py --protocol libri251 --out runs/libri251        # train once (a run dir)
    python benchmarks/timeline.py --model runs/libri251                           # the table in the README

Speakers (sorted ids, index ``i``): ``i % 5 != 4`` are enrolled (about 200); of the others, every second one
tunes the open-set threshold and the rest appear, unenrolled, in the recordings (about 25 each).

- Gallery: each enrolled speaker from its training audio (the first 70% of its file less accuracy.py's 1.5 s
  validation tail) in 3 s windows, as ``benchmarks/gallery_accuracy.py`` enrols.
- Threshold: the 1.5 s validation tails (unseen by the model) of the enrolled speakers and of the tuning
  speakers are scored against the gallery; the threshold is the equal-error point between the enrolled
  tails' own-speaker scores and the tuning tails' best scores (:func:`spkid.metrics.compute_eer`).
- Recordings (``--recordings``, seeded by ``--seed``): turns of enrolled speakers (distinct speakers, drawn
  without replacement while they last) and, with probability 0.2 per turn, of an unenrolled one; each turn a
  piece of 2 to 8 s (no longer than the speaker has) of the speaker's test audio -- the last 30% of its file,
  never used to train or enrol -- with pauses of 0.5-1.5 s of white noise at -70 dBFS between turns (nothing is
  added under the speech: the README's robustness table shows this model collapses under added noise). Turns follow each other until ``--seconds`` of audio.

The recordings go through :func:`spkid.search.timeline.timeline` (energy VAD, ``--window`` -second windows
every ``--hop``, Viterbi smoothing) exactly as ``spkid identify --timeline`` runs it, streamed in 1 s blocks.
Scores: *enrolled* = fraction of the enrolled turns' time inside a segment with the right name; *unknown* =
fraction of the unenrolled turns' time inside a segment marked unknown; *missed* = turn time inside no segment; *in a segment: right* = the enrolled turns' time inside
a segment with the right name over their time inside any segment;
*boundary* = mean distance from each turn's start (end) to the nearest segment start (end).
Two operating points are scored on the same recordings: the EER threshold above and a strict one, just above
the best tuning-tail score (no tuning speaker accepted; never below the EER threshold). The last line, for the EER threshold, is
``enrolled=<percent> unknown=<percent> boundary=<seconds>``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import DATA, data_root, libri_sets, load_model  # noqa: E402  (puts the repo on sys.path too)
from gallery_accuracy import gallery_of  # noqa: E402

from spkid.audio.io import load_audio  # noqa: E402
from spkid.data.featuresets import FeatureSet  # noqa: E402
from spkid.features.api import fbank_from_config  # noqa: E402
from spkid.metrics import compute_eer  # noqa: E402
from spkid.search.timeline import TimelineConfig, timeline_of_blocks  # noqa: E402


def subset(fs: FeatureSet, keep) -> FeatureSet:
    rows = [i for i, label in enumerate(fs.labels) if fs.speakers[label] in keep]
    return FeatureSet([fs.features[i] for i in rows], [fs.labels[i] for i in rows], fs.speakers, fs.feature_config,
                      [fs.ids[i] for i in rows])


def pick_threshold(gallery, embedder, val: FeatureSet, tuning: set) -> tuple[float, float, float]:
    """(threshold, its EER, strict threshold) between the enrolled speakers' tails (own score) and the tuning
    speakers' (best score); the strict one is just above the highest tuning score (no tuning tail accepted), and
    never below the EER one."""
    scores = gallery.centroid_scores(embedder.embed(val.features))
    col = {s: j for j, s in enumerate(gallery.speakers)}
    names = [val.speakers[label] for label in val.labels]
    own = [scores[i, col[n]] for i, n in enumerate(names) if n in col]
    other = [scores[i].max() for i, n in enumerate(names) if n in tuning]
    eer, thr = compute_eer(np.r_[own, other], np.r_[np.ones(len(own), bool), np.zeros(len(other), bool)])
    return thr, eer, max(thr, float(np.nextafter(np.float32(max(other)), np.float32(2.0))))


def make_recording(test_audio: dict, enrolled: list, unknown: list, seconds: float, sr: int,
                   rng: np.random.Generator, pool: list):
    """(samples, truth [(start, end, speaker or None)]): turns until ``seconds`` of audio."""
    parts, truth, t = [], [], 0.0
    while t < seconds:
        pause = (3e-4 * rng.standard_normal(int(rng.uniform(0.5, 1.5) * sr))).astype(np.float32)
        parts.append(pause)
        t += len(pause) / sr
        if rng.random() < 0.2:
            name, label = unknown[int(rng.integers(len(unknown)))], None
        else:
            if not pool:
                pool.extend(rng.permutation(enrolled).tolist())
            name = label = pool.pop()
        y = test_audio[name]
        n = min(len(y), int(rng.uniform(2.0, 8.0) * sr))
        off = int(rng.integers(0, len(y) - n + 1))
        parts.append(y[off:off + n])
        truth.append((t, t + n / sr, label))
        t += n / sr
    return np.concatenate(parts), truth


def overlap(a0, a1, b0, b1) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def score(truth, segments) -> dict:
    """Seconds labelled right / missed per kind of turn, and boundary distances."""
    out = {"enrolled": 0.0, "enrolled_total": 0.0, "enrolled_covered": 0.0, "unknown": 0.0, "unknown_total": 0.0,
           "missed": 0.0, "total": 0.0, "bounds": []}
    starts = np.array([s.start for s in segments]) if segments else np.zeros(1)
    ends = np.array([s.end for s in segments]) if segments else np.zeros(1)
    for t0, t1, who in truth:
        kind = "enrolled" if who is not None else "unknown"
        out[f"{kind}_total"] += t1 - t0
        out["total"] += t1 - t0
        covered = 0.0
        for s in segments:
            o = overlap(t0, t1, s.start, s.end)
            covered += o
            if s.speaker == who:
                out[kind] += o
        out["missed"] += (t1 - t0) - covered
        if who is not None:
            out["enrolled_covered"] += covered
        out["bounds"] += [float(np.abs(starts - t0).min()), float(np.abs(ends - t1).min())]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run directory / checkpoint (either backend) or .onnx")
    ap.add_argument("--recordings", type=int, default=10, help="constructed recordings (default: 10)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each recording (default: 60 s)")
    ap.add_argument("--window", type=float, default=2.0, help="timeline window in seconds (default: 2)")
    ap.add_argument("--hop", type=float, default=0.5, help="timeline window hop in seconds (default: 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    root = data_root("timeline.py", args.data, "librispeech-251")
    if root is None:
        return 2
    embedder = load_model(args.model)
    fc = embedder.feature_config
    t0 = time.perf_counter()
    train, val, _ = libri_sets(root, fc, embedder.config, val_seconds=1.5)
    speakers = list(train.speakers)
    enrolled = [s for i, s in enumerate(speakers) if i % 5 != 4]
    others = [s for i, s in enumerate(speakers) if i % 5 == 4]
    tuning, unknown = set(others[::2]), others[1::2]
    gallery = gallery_of(embedder, subset(train, set(enrolled)), int(round(3.0 / fc.frame_shift)))
    gallery.threshold, thr_eer, strict = pick_threshold(gallery, embedder, val, tuning)
    test_audio = {}
    for p in sorted(root.glob("*.flac")):
        y = load_audio(p, sr=fc.sr, min_duration=0.0)
        test_audio[p.name.split("-")[0]] = y[int(0.7 * len(y)):]
    config = TimelineConfig(window=args.window, hop=args.hop)
    print(f"model {args.model} ({embedder.backend} {embedder.model_name}): {len(enrolled)} enrolled, "
          f"{len(tuning)} tuning and {len(unknown)} unenrolled speakers; threshold {gallery.threshold:.4f} "
          f"(EER {100 * thr_eer:.2f}% on the validation tails), strict threshold {strict:.4f}; setup {time.perf_counter() - t0:.1f} s")

    def embed(waves):
        return embedder.embed([fbank_from_config(w, fc) for w in waves])

    rules = {"EER threshold": gallery.threshold, "strict threshold": strict}
    totals = {rule: score([], []) for rule in rules}
    rng = np.random.default_rng(args.seed)
    pool: list = []
    t0, audio, n_turns = time.perf_counter(), 0.0, 0
    for _ in range(args.recordings):
        y, truth = make_recording(test_audio, enrolled, unknown, args.seconds, fc.sr, rng, pool)
        audio += len(y) / fc.sr
        n_turns += len(truth)
        for rule, threshold in rules.items():
            blocks = (y[i:i + fc.sr] for i in range(0, len(y), fc.sr))
            result = score(truth, list(timeline_of_blocks(blocks, fc.sr, embed, gallery, threshold, config)))
            for k, v in result.items():
                totals[rule][k] = totals[rule][k] + v
    took = time.perf_counter() - t0
    first = totals["EER threshold"]
    print(f"  {args.recordings} recordings, {audio:.0f} s of audio, {n_turns} turns "
          f"({first['enrolled_total']:.0f} s enrolled, {first['unknown_total']:.0f} s unenrolled speech); "
          f"window {args.window:g} s, hop {args.hop:g} s; {took:.1f} s for {len(rules)} passes "
          f"({len(rules) * audio / took:.1f}x real time)")
    print(f"  {'':<34} " + " ".join(f"{rule:>17}" for rule in rules))
    figures = {}
    for rule, t in totals.items():
        figures[rule] = (t["enrolled"] / t["enrolled_total"], t["unknown"] / max(t["unknown_total"], 1e-9),
                         t["missed"] / t["total"], t["enrolled"] / max(t["enrolled_covered"], 1e-9),
                         float(np.mean(t["bounds"])))
    names = ["enrolled time labelled right", "unenrolled time marked unknown", "speech time in no segment",
             "  enrolled time in a segment: right"]
    for k, name in enumerate(names):
        print(f"  {name:<34} " + " ".join(f"{100 * figures[rule][k]:16.2f}%" for rule in rules))
    print(f"  {'mean boundary error':<34} " + " ".join(f"{figures[rule][4]:15.3f} s" for rule in rules))
    enr, unk, _, _, bound = figures["EER threshold"]
    print(f"enrolled={100 * enr:.2f} unknown={100 * unk:.2f} boundary={bound:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
