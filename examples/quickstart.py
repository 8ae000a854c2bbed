"""spkid in one page: what ``spkid demo`` does, as a script over the public API.

synthetic corpus -> manifest -> feature store -> train -> evaluate -> enrol a gallery -> identify -> plots.

    python examples/quickstart.py --out spkid_out/quickstart --backend torch
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="spkid_out/quickstart", help="output folder")
    parser.add_argument("--backend", choices=["torch", "keras"], default="torch")
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--utterances", type=int, default=24, help="clips per speaker")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--tiny", action="store_true", help="tiny model (smoke tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)

    import numpy as np

    from spkid.app import plots
    from spkid.app.demo import DEMO_OVERRIDES, DEMO_TRAINING
    from spkid.backends import get_backend
    from spkid.data.featstore import build_feature_store
    from spkid.data.featuresets import cache_feature_sets
    from spkid.features.config import FeatureConfig
    from spkid.search.gallery import Gallery
    from spkid.training.config import TrainConfig
    from spkid.inference.embedder import load_embedder
    from spkid.models.specs import TINY_OVERRIDES
    from spkid.data.layouts.registry import load_dataset
    from spkid.data.synthetic import make_corpus

    print("1. a synthetic corpus: one folder of 16 kHz WAVs per speaker")
    make_corpus(out / "corpus", n_speakers=args.speakers, utterances_per_speaker=args.utterances)
    manifest = load_dataset(out / "corpus", "folders", val=0.1, test=0.2)
    print("  ", manifest.summary())

    print("2. log-mel features, in a memory-mapped feature store on disk")
    build_feature_store(manifest, out / "cache", FeatureConfig())
    train, val, test = cache_feature_sets(out / "cache")

    print(f"3. train a small VGG + self-attention model with {args.backend}")
    overrides = TINY_OVERRIDES if args.tiny else DEMO_OVERRIDES  # the demo's small models
    config = TrainConfig(model="vgg_attention", model_overrides=overrides["vgg_attention"], epochs=args.epochs,
                         **DEMO_TRAINING)
    backend = get_backend(args.backend)
    backend.fit(config, train, val, out / "run", resume=(out / "run" / "checkpoints" / "last.json").exists())

    print("4. closed-set accuracy on held-out clips")
    report = backend.evaluate(out / "run", test)
    print(f"   top-1 {100 * report['top1']:.1f}%, top-5 {100 * report['top5']:.1f}%")

    print("5. enrol every speaker's training clips, identify the test clips by cosine similarity")
    embedder = load_embedder(out / "run")  # works for either backend
    gallery = Gallery()
    train_emb = embedder.embed(train.features)
    for c, name in enumerate(train.speakers):
        gallery.enroll(name, train_emb[train.labels == c])
    answers = gallery.identify(embedder.embed(test.features), top_k=3)
    for ids, truth, answer in list(zip(test.ids, test.labels, answers))[:5]:
        best = ", ".join(f"{m.speaker} ({m.score:.2f})" for m in answer.candidates)
        print(f"   {ids}: true {test.speakers[truth]}, closest {best}")

    print("6. figures")
    for png in (plots.plot_history(out / "run" / "history.csv", out / "history.png"),
                plots.plot_confusion(np.asarray(report["confusion"]), test.speakers, out / "confusion.png"),
                plots.plot_embeddings(train_emb, [train.speakers[i] for i in train.labels], out / "embeddings.png"),
                plots.plot_attention(test.features[0], embedder.attention(test.features[0]), out / "attention.png")):
        print(f"   {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
