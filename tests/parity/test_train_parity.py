"""The same tiny model and recipe trained by both backends on real speech (an FSDD subset).

The keras model starts from the torch model's initial weights (ported with spkid_keras.convert), both
see the same crops (spkid.data.sampler), and both optimizers follow the same formulas. So:

- with SGD, an epoch's mean training loss agrees to float32 round-off (rtol 2e-4: six steps of float32
  arithmetic in different operation orders; measured ~5e-5). Adam is not compared step by step: its
  first steps are nearly sign(gradient) * lr, so parameters whose gradient is at round-off level (biases
  that BatchNorm or the softmax over time cancel) move in directions decided by round-off;
- after training with Adam, both clear a floor far above chance (1/6) and their test accuracies differ by at most
  10 points: round-off differences grow through training (the loss landscape is chaotic), so the runs
  are not bit-identical, but they must be the same learner -- a real mismatch (a missing penalty term,
  another softmax axis, wrong weight decay) shows up as a gap of tens of points or as a different
  first-epoch loss.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")

import spkid_keras  # noqa: E402
import spkid_torch  # noqa: E402
from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.features.api import extract_features  # noqa: E402
from spkid.data.featuresets import FeatureSet  # noqa: E402
from spkid.training.loop import resolve_spec  # noqa: E402
from spkid_keras import train as ktrain  # noqa: E402
from spkid_keras.convert import torch_to_keras  # noqa: E402
from spkid_torch import train as ttrain  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)
from tests.train_cases import tiny_config  # noqa: E402

pytestmark = [pytest.mark.parity, pytest.mark.data, pytest.mark.usefixtures("one_torch_thread")]
FLOOR = 0.5  # 3x chance (1/6); measured 0.68 (torch) and 0.73 (keras)


def _fsdd_subset(fsdd_dir):
    """Train: takes 5-9 of digits 0-5 (180 files); test: takes 0-4 of digits 0-1 (60 files)."""
    fc = FeatureConfig(sr=8000)
    name = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
    files = sorted(p for p in fsdd_dir.glob("*.wav") if name.fullmatch(p.name))
    speakers = tuple(sorted({name.fullmatch(p.name).group(2) for p in files}))
    parts = {"train": ([], []), "test": ([], [])}
    for p in files:
        digit, spk, idx = (int(g) if g.isdigit() else g for g in name.fullmatch(p.name).groups())
        split = "train" if 5 <= idx <= 9 and digit <= 5 else "test" if idx < 5 and digit <= 1 else None
        if split:
            parts[split][0].append(extract_features(p, fc))
            parts[split][1].append(speakers.index(spk))
    return tuple(FeatureSet(f, y, speakers, fc) for f, y in (parts["train"], parts["test"]))


@pytest.fixture(scope="module")
def fsdd_subset(fsdd_dir):
    return _fsdd_subset(fsdd_dir)


def _fit_both(cfg, train, tmp_path):
    """Train torch and keras from the same initial weights; returns both histories."""
    import torch

    spec = resolve_spec(cfg, train.n_mels)
    torch.manual_seed(0)
    tmodel = spkid_torch.create_model(cfg.model, train.n_classes, **spec.to_dict())
    kmodel = spkid_keras.create_model(cfg.model, train.n_classes, **spec.to_dict())
    torch_to_keras({k: v.numpy() for k, v in tmodel.state_dict().items()}, kmodel)
    th = ttrain.fit(cfg, train, None, tmp_path / "torch", progress=False, model=tmodel)
    kh = ktrain.fit(cfg, train, None, tmp_path / "keras", progress=False, model=kmodel)
    return th, kh


def test_sgd_steps_agree_to_round_off(fsdd_subset, tmp_path):
    cfg = tiny_config(epochs=1, batch_size=30, crop_frames=50, lr=3e-3, optimizer="sgd", weight_decay=1e-3,
                      label_smoothing=0.1, time_masks=1, gain_db=(-3.0, 3.0))
    th, kh = _fit_both(cfg, fsdd_subset[0], tmp_path)
    for key in ("loss", "ce", "penalty"):
        np.testing.assert_allclose(kh[0][key], th[0][key], rtol=2e-4, err_msg=key)


def test_both_backends_learn_the_same(fsdd_subset, tmp_path):
    train, test = fsdd_subset
    cfg = tiny_config(epochs=6, batch_size=30, crop_frames=50, lr=3e-3, plateau_patience=10)
    th, kh = _fit_both(cfg, train, tmp_path)
    t_acc = spkid_torch.evaluate(tmp_path / "torch", test)["top1"]
    k_acc = spkid_keras.evaluate(tmp_path / "keras", test)["top1"]
    print(f"fsdd subset top-1: torch {t_acc:.3f}, keras {k_acc:.3f}; losses torch "
          f"{[round(h['loss'], 4) for h in th]} keras {[round(h['loss'], 4) for h in kh]}")
    assert t_acc >= FLOOR and k_acc >= FLOOR
    assert abs(t_acc - k_acc) <= 0.10
