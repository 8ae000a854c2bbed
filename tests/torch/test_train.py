"""The torch backend (``get_backend("torch")``): fit / resume / evaluate / embed with a tiny model (shared checks)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from spkid.backends import get_backend  # noqa: E402
from tests import train_cases as cases  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BACKEND = get_backend("torch")


def weights_of(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_loss_decreases(tmp_path):
    cases.check_loss_decreases(BACKEND, tmp_path)


def test_resume_equals_uninterrupted(tmp_path):
    cases.check_resume_equals_uninterrupted(BACKEND, tmp_path, weights_of)


def test_max_steps_stops_exactly_and_resumes(tmp_path):
    cases.check_max_steps_stops_exactly_and_resumes(BACKEND, tmp_path, weights_of)


def test_evaluate_embed_and_embedder(tmp_path):
    cases.check_evaluate_embed_and_embedder(BACKEND, tmp_path)


def test_checkpoint_state_loads_with_weights_only(tmp_path):
    cases.check_loss_decreases(BACKEND, tmp_path)
    state = next((tmp_path / "run" / "checkpoints").glob("*.pt"))
    loaded = torch.load(state, weights_only=True)
    assert {"model", "optimizer", "torch_rng"} <= set(loaded)


def test_cli_train_evaluate_embed_on_a_real_cache(fsdd_dir, tmp_path, capsys):
    """`spkid prepare` -> `train` -> `train --resume` -> `evaluate` -> `embed` on 36 FSDD files."""
    import json

    import numpy as np

    from spkid.app.cli import main

    data = tmp_path / "fsdd"
    data.mkdir()
    for spk in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"):
        for idx in (0, 1, 5, 6, 7, 8):  # 0-4 is FSDD's test split
            (data / f"3_{spk}_{idx}.wav").symlink_to(fsdd_dir / f"3_{spk}_{idx}.wav")
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", str(data), "--cache", str(cache), "--pattern", "fsdd", "--sr", "8000",
                 "--no-progress"]) == 0
    tiny = json.dumps(cases.tiny_config().model_overrides)
    args = ["train", "--backend", "torch", "--cache", str(cache), "--out", str(run), "--model", "vgg_attention",
            "--model-overrides", tiny, "--batch-size", "8", "--crop-frames", "40", "--lr", "3e-3",
            "--val-fraction", "0.25", "--gain-db", "[-3, 3]", "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2"]) == 2  # the run dir is taken: an error, not a traceback
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3
    assert main(["evaluate", "--model", str(run), "--cache", str(cache), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5" in out and "george" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 12 and np.asarray(metrics["confusion"]).sum() == 12
    from matplotlib.image import imread

    for name in ("history", "confusion", "embeddings", "attention"):  # real, non-blank images
        png = run / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in out
        img = imread(png)
        assert min(img.shape[:2]) >= 300 and img[..., :3].var() > 1e-4, name
    assert main(["embed", "--model", str(run), "--cache", str(cache), "--out", str(tmp_path / "emb.npz"),
                 "--no-progress"]) == 0
    with np.load(tmp_path / "emb.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape == (36, 16) and z["speaker_embeddings"].shape == (6, 16)
        assert list(z["speakers"]) == json.loads((tmp_path / "emb.json").read_text())["speakers"]
        np.testing.assert_allclose(z["speaker_embeddings"][0], z["embeddings"][z["speaker_of"] == 0].mean(0),
                                   rtol=1e-5, atol=1e-6)
    assert main(["evaluate", "--model", str(tmp_path / "nowhere"), "--cache", str(cache)]) == 2
