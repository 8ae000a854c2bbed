"""Who in a gallery sounds most like this clip? The closest speakers and their closest utterances.

The gallery is a saved ``spkid.search.gallery.Gallery`` (``--gallery NAME.json``, e.g. from ``spkid demo``) or is
built from the per-utterance embeddings written by ``extract_embeds.py`` or ``spkid embed``
(``--embeddings FILE.npz``; ``--save-gallery`` keeps it). Each clip is featurised with the checkpoint's settings, embedded, and ranked
against every speaker's centroid by cosine similarity.

    python examples/closest_celeb.py runs/vox1/run --embeddings vox1_test.npz my_voice.wav --top 5
"""
from __future__ import annotations

import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="run directory, checkpoint .json or state file")
    parser.add_argument("clips", nargs="+", help="audio file(s) to identify")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--gallery", help="saved gallery (NAME.json / NAME.npz)")
    src.add_argument("--embeddings", help=".npz from extract_embeds.py or `spkid embed`")
    parser.add_argument("--save-gallery", metavar="NAME", help="save the gallery built from --embeddings")
    parser.add_argument("--top", type=int, default=5, help="speakers and utterances to list (default 5)")
    args = parser.parse_args(argv)

    from spkid.search.gallery import Gallery
    from spkid.inference.embedder import embed_files, load_embedder
    from spkid.inference.embeddings import load_embeddings

    embedder = load_embedder(args.checkpoint)
    if args.gallery:
        gallery = Gallery.load(args.gallery)
    else:
        enrolled = load_embeddings(args.embeddings)
        gallery = Gallery(metadata={"checkpoint": str(args.checkpoint), "model": embedder.model_name})
        for name in enrolled.speakers:
            vectors, ids = enrolled.of_speaker(name)
            gallery.enroll(name, vectors, ids=ids)
        if args.save_gallery:
            print(f"saved gallery {gallery.save(args.save_gallery)}")
    print(f"gallery: {len(gallery)} speakers, {gallery.n_utterances()} utterances")

    queries, ok, failed = embed_files(args.clips, embedder)
    for path, why in failed:
        print(f"skipped {path}: {why}")
    for path, answer in zip(ok, gallery.identify(queries, top_k=args.top) if ok else []):
        print(f"\n{path}")
        for rank, match in enumerate(answer.candidates, 1):
            print(f"  {rank}. {match.speaker:<24} cosine {match.score:.3f}")
        print("  closest utterances:")
        for near in answer.neighbours:
            print(f"     {near.utterance}  ({near.speaker}, cosine {near.score:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
