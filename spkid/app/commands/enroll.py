"""``spkid enroll --model CKPT_OR_ONNX --gallery G NAME FILE [FILE...]`` | ``--from-dir DIR``.

Embeds each recording with the model (a run directory or checkpoint of either backend, or an exported
``.onnx``) and enrols it under NAME in the :class:`~spkid.search.gallery.Gallery` ``G``, created when missing:
``G.db`` is a SQLite gallery, where each speaker's enrolment is a durable transaction of its own; any other
name the older ``G.json`` + ``G.npz`` pair, written whole at the end. Enrolling an existing NAME again adds
utterances and updates its centroid. With
``--from-dir DIR`` every sub-folder of DIR is a speaker and all audio below it is enrolled. Unreadable
files are reported and skipped; the exit status is 1 only when nothing could be enrolled. Concurrent
enrolments into one gallery take turns (SQLite's write lock, or a ``G.json.lock`` file beside the pair), so
none is lost.

The gallery records how its embeddings were made (model name, spec, feature config and a *fingerprint*:
the model's unit embedding of a fixed pseudo-random input, which identifies the trained weights across
backends and export formats). A gallery made with another model or feature config is refused with a
:class:`~spkid.errors.GalleryError` showing both, so embeddings from different spaces never mix.
"""
from __future__ import annotations

import argparse
import os
from collections import defaultdict

from spkid.app.options import add_gallery_arguments

NAME = "enroll"
HELP = "Enrol speakers' recordings in a gallery (created when missing; enrolling again updates the centroid)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gallery_arguments(parser)
    parser.add_argument("--from-dir", metavar="DIR",
                        help="enrol every sub-folder of DIR as a speaker (folder name = speaker name)")
    parser.add_argument("--threshold", type=float,
                        help="store this open-set threshold (cosine) in the gallery: identify's default")
    parser.add_argument("name", nargs="?", metavar="NAME", help="speaker name")
    parser.add_argument("files", nargs="*", metavar="FILE", help="recordings of NAME")


def speakers_to_enroll(args: argparse.Namespace) -> dict[str, list[str]]:
    """``{speaker: [audio paths]}`` from ``NAME FILE...`` or ``--from-dir DIR``."""
    from spkid.errors import ConfigError, SplitError

    if args.from_dir:
        if args.name or args.files:
            raise ConfigError("give either NAME FILE... or --from-dir DIR, not both")
        from pathlib import Path

        from spkid.data.layouts.folders import scan_folders

        root = Path(args.from_dir)
        if not root.is_dir():
            raise SplitError("not a directory", path=root)
        jobs: dict[str, list[str]] = defaultdict(list)
        for u in scan_folders(root):
            jobs[u.speaker].append(os.fspath(root / u.path))
        if not jobs:
            raise SplitError("no audio files in speaker sub-folders (DIR/SPEAKER/*.wav ...)", path=root)
        return dict(jobs)
    if not args.name or not args.files:
        raise ConfigError("give a speaker NAME and at least one FILE (or --from-dir DIR)")
    return {args.name: list(args.files)}


def run(args: argparse.Namespace) -> int:
    from filelock import FileLock

    from spkid.inference.embedder import load_embedder
    from spkid.search.stored import is_database_path
    from spkid.search.storage import gallery_paths

    jobs = speakers_to_enroll(args)
    embedder = load_embedder(args.model)
    if is_database_path(args.gallery):  # G.db / G.lance: each enrolment is its own transaction, no lock here
        return enroll_into(args.gallery, jobs, embedder, args)
    jpath, _ = gallery_paths(args.gallery)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{jpath}.lock"):  # concurrent enrolments into one gallery take turns: no lost updates
        return enroll_into(jpath, jobs, embedder, args)


def enroll_into(jpath, jobs: dict[str, list[str]], embedder, args: argparse.Namespace) -> int:
    """Load (or create) the gallery, embed and enrol ``jobs``, save; the exit status."""
    from spkid.search.binding import open_gallery
    from spkid.inference.embedder import embed_files

    gallery, jpath, notes = open_gallery(jpath, embedder, args.model, create=True, index=args.index)
    for note in notes:
        print(f"note: {note}")
    failed: list[tuple[str, str]] = []
    added = 0
    for name, files in jobs.items():
        known = set(gallery.utterance_ids(name)) if name in gallery else set()
        ids = {os.path.abspath(f): f for f in files}  # a file given twice is enrolled once
        fresh = [f for i, f in ids.items() if i not in known]
        failed += [(f, f"already enrolled for {name!r}") for i, f in ids.items() if i in known]
        emb, ok, bad = embed_files(fresh, embedder, progress=not args.no_progress)
        failed += bad
        if not ok:
            print(f"{name}: nothing enrolled")
            continue
        existed = name in gallery
        gallery.enroll(name, emb, ids=[os.path.abspath(p) for p in ok])
        added += len(ok)
        print(f"{name}: +{len(ok)} utterance(s), {gallery.n_utterances(name)} in all"
              + (" (centroid updated)" if existed else " (new speaker)"))
    if args.threshold is not None:
        gallery.threshold = float(args.threshold)
    for path, why in failed:
        print(f"skipped {path}: {why}")
    if not added:
        print(f"nothing enrolled ({len(failed)} file(s) skipped); {jpath} left unchanged")
        return 1
    if gallery.storage_path is None:  # the npz + json pair is written whole; a database already has it all
        gallery.save(jpath)
    print(f"enrolled {added} file(s), skipped {len(failed)}; gallery {jpath}: {len(gallery)} speaker(s), "
          f"{gallery.n_utterances()} utterance(s), threshold {gallery.threshold}")
    return 0
