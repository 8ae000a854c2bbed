"""``spkid gallery list|remove|convert``: look after an enrolment gallery without a model.

- ``spkid gallery list --gallery G [--json]``: the enrolled speakers and their utterance counts.
- ``spkid gallery remove --gallery G NAME [NAME...]``: erase speakers. On a SQLite gallery (``G.db``) the
  rows are deleted with ``secure_delete`` and the write-ahead log truncated, so the voiceprints are gone
  from the files (:meth:`~spkid.search.gallery.Gallery.remove`); the npz + json pair is rewritten without them.
- ``spkid gallery convert OLD NEW``: copy a gallery between formats, e.g. ``G`` (``G.json`` + ``G.npz``) to
  ``G.db``, or ``G.db`` to ``G.lance`` (LanceDB, the ``lancedb`` extra) and back, checked on read; metadata and
  threshold come along. NEW must not exist.
- ``spkid gallery snapshot --gallery G.db``: write the memory-mapped snapshot that opening maps
  (:mod:`spkid.search.snapshot`; opening writes one itself past 100k rows without).
- ``spkid gallery verify --gallery G``: check every stored checksum now.
"""
from __future__ import annotations

import argparse
import json

NAME = "gallery"
HELP = "List, erase, convert, snapshot or verify an enrolment gallery (G.db, G.lance or G.json + G.npz)."
WHERE = "G.db (SQLite), G.lance (LanceDB) or the G.json + G.npz pair"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="enrolled speakers and their utterance counts")
    ls.add_argument("--gallery", required=True, metavar="G", help=WHERE)
    ls.add_argument("--json", action="store_true", help="print JSON")
    rm = sub.add_parser("remove", help="erase speakers and their embeddings from storage")
    rm.add_argument("--gallery", required=True, metavar="G", help=WHERE)
    rm.add_argument("names", nargs="+", metavar="NAME", help="speaker(s) to erase")
    cv = sub.add_parser("convert", help="copy a gallery into another format (e.g. G -> G.db)")
    cv.add_argument("source", metavar="OLD", help="gallery to read")
    cv.add_argument("target", metavar="NEW",
                    help="gallery to write (G.db: SQLite; G.lance: LanceDB; other: G.json + G.npz)")
    sn = sub.add_parser("snapshot", help="write the memory-mapped snapshot of a SQLite gallery (fast opening)")
    sn.add_argument("--gallery", required=True, metavar="G.db")
    vf = sub.add_parser("verify", help="check every stored checksum")
    vf.add_argument("--gallery", required=True, metavar="G", help=WHERE)


def run(args: argparse.Namespace) -> int:
    from spkid.errors import GalleryError
    from spkid.search.gallery import Gallery

    if args.action == "convert":
        src = Gallery.load(args.source, index="exact")
        out = src.save(args.target)
        print(f"converted {args.source} -> {out}: {len(src)} speaker(s), {src.n_utterances()} utterance(s), "
              f"threshold {src.threshold}")
        return 0
    gallery = Gallery.load(args.gallery, index="exact")
    if args.action == "snapshot":
        print(f"snapshot of {gallery.n_utterances()} utterance(s) written: {gallery.snapshot()}")
        return 0
    if args.action == "verify":
        if gallery.storage_path is None:  # the pair was checked whole by loading it
            print(f"gallery {args.gallery}: {gallery.n_utterances()} utterance(s), every checksum matches")
            return 0
        print(f"gallery {args.gallery}: {gallery.verify()} stored row(s), every checksum matches")
        return 0
    if args.action == "list":
        rows = [{"name": s, "utterances": gallery.n_utterances(s)} for s in gallery.speakers]
        if args.json:
            print(json.dumps({"gallery": str(args.gallery), "speakers": rows, "threshold": gallery.threshold,
                              "metadata": gallery.metadata}, indent=1))
        else:
            print(f"gallery {args.gallery}: {len(rows)} speaker(s), {gallery.n_utterances()} utterance(s), "
                  f"threshold {gallery.threshold}")
            for r in rows:
                print(f"  {r['name']}\t{r['utterances']}")
        return 0
    missing = [n for n in args.names if n not in gallery]
    if missing:
        raise GalleryError(f"not enrolled: {', '.join(map(repr, missing))}; nothing removed", path=args.gallery)
    if gallery.storage_path is None and set(args.names) >= set(gallery.speakers):
        raise GalleryError("removing every speaker would leave an empty npz gallery; delete the files instead",
                           path=args.gallery)
    for name in dict.fromkeys(args.names):
        gallery.remove(name)
        print(f"removed {name!r}")
    if gallery.storage_path is None:
        gallery.save(args.gallery)
    print(f"gallery {args.gallery}: {len(gallery)} speaker(s) left")
    return 0
