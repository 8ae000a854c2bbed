"""``spkid identify --model CKPT_OR_ONNX --gallery G CLIP [CLIP...] [--top-k 5] [--threshold X] [--json] [--index auto]``.

For each clip: the ``top-k`` enrolled speakers ranked by cosine similarity to their centroid, the ``top-k``
closest enrolled utterances, and the answer -- the best speaker, or ``unknown`` when its score is below
the threshold (default: the one stored in the gallery; none means always answer). The gallery must have
been made with the same model (see :func:`spkid.search.binding.open_gallery`). ``--json`` prints one JSON document
instead of tables; each result is ``{"clip", **Identification.to_dict()}``, the shape of the service's
``/identify``. Unreadable clips are reported and skipped; exit status 1 when none could be read.

``--timeline``: who speaks when in each (long) recording, streamed in bounded memory
(:mod:`spkid.search.timeline`: energy VAD, ``--window`` -second windows every ``--hop``, gallery scoring,
Viterbi smoothing); a table of segments per file, or with ``--json`` one JSON object per file and line,
``{"file", "segments": [{"start", "end", "speaker" (null: unknown), "score"}]}``.
"""
from __future__ import annotations

import argparse
import json

from spkid.app.options import add_gallery_arguments

NAME = "identify"
HELP = "Identify speakers of clips against an enrolled gallery (top-k speakers, closest utterances)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, help="speakers and utterances listed per clip (default: 5)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="answer 'unknown' below this cosine score (default: the gallery's own, else never)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeline", action="store_true", help="who speaks when: segments of long recordings")
    parser.add_argument("--window", type=float, default=2.0, help="--timeline: window in seconds (default: 2)")
    parser.add_argument("--hop", type=float, default=0.5, help="--timeline: window hop in seconds (default: 0.5)")
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="audio file(s) to identify")


def table(clip: str, answer) -> list[str]:
    """Readable lines for one clip."""
    best = answer.candidates[0]
    if answer.is_unknown:
        verdict = f"unknown (best {best.speaker}, cosine {best.score:.3f} < threshold {answer.threshold:.3f})"
    else:
        verdict = f"{answer.label} (cosine {answer.score:.3f})"
    width = max(len("speaker"), *(len(m.speaker) for m in answer.candidates),
                *(len(n.speaker) for n in answer.neighbours))
    lines = [f"{clip}: {verdict}", f"  rank  {'speaker':<{width}}  cosine"]
    lines += [f"  {r:>4}  {m.speaker:<{width}}  {m.score:6.3f}" for r, m in enumerate(answer.candidates, 1)]
    lines.append(f"  closest enrolled utterances:\n  rank  {'speaker':<{width}}  cosine  utterance")
    lines += [f"  {r:>4}  {n.speaker:<{width}}  {n.score:6.3f}  {n.utterance}"
              for r, n in enumerate(answer.neighbours, 1)]
    return lines


def run(args: argparse.Namespace) -> int:
    from spkid.errors import ConfigError
    from spkid.inference.embedder import embed_files, load_embedder
    from spkid.search.binding import open_gallery

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    embedder = load_embedder(args.model)
    gallery, jpath, notes = open_gallery(args.gallery, embedder, args.model, create=False, index=args.index)
    if args.timeline:
        return _timeline(args, embedder, gallery, notes)
    emb, ok, failed = embed_files(args.clips, embedder, progress=not args.no_progress)
    answers = gallery.identify(emb, top_k=args.top_k, threshold=args.threshold) if ok else []
    if args.json:
        print(json.dumps({"gallery": str(jpath), "model": str(args.model), "speakers": len(gallery),
                          "notes": notes, "results": [{"clip": c, **a.to_dict()} for c, a in zip(ok, answers)],
                          "skipped": [{"clip": c, "reason": why} for c, why in failed]}, indent=1))
    else:
        for note in notes:
            print(f"note: {note}")
        print(f"gallery {jpath}: {len(gallery)} speaker(s), {gallery.n_utterances()} utterance(s)")
        for clip, answer in zip(ok, answers):
            print("\n" + "\n".join(table(clip, answer)))
        for clip, why in failed:
            print(f"skipped {clip}: {why}")
    return 0 if ok else 1


def _timeline(args: argparse.Namespace, embedder, gallery, notes) -> int:
    import sys

    from spkid.errors import SpkidError
    from spkid.features.api import fbank_from_config
    from spkid.search.timeline import TimelineConfig, format_table, segments_to_json, timeline_of_file

    fc = embedder.feature_config
    config = TimelineConfig(window=args.window, hop=args.hop)

    def embed(waves):
        return embedder.embed([fbank_from_config(w, fc) for w in waves])

    for note in notes:
        print(f"note: {note}", file=sys.stderr if args.json else sys.stdout)
    done = 0
    for clip in args.clips:
        try:
            segments = timeline_of_file(clip, fc.sr, embed, gallery, args.threshold, config)
        except SpkidError as exc:
            print(f"skipped {clip}: {exc.problem}", file=sys.stderr if args.json else sys.stdout)
            continue
        done += 1
        print(json.dumps(segments_to_json(clip, segments)) if args.json else "\n".join(format_table(clip, segments)))
    return 0 if done else 1
