"""The same tiny model and recipe trained by both backends on real speech (FSDD, 6 speakers).

The keras model starts from the torch model's initial weights (ported with spkid_keras.convert), both
see the same crops (spkid.data.sampler), and both optimizers follow the same formulas. So:

- with SGD, an epoch's mean training loss agrees to float32 round-off (rtol 2e-4: six steps of float32
  arithmetic in different operation orders; measured ~5e-5). Adam is not compared step by step: its
  first steps are nearly sign(gradient) * lr, so parameters whose gradient is at round-off level (biases
  that BatchNorm or the softmax over time cancel) move in directions decided by round-off;
- with Adam, round-off differences grow through training (the loss landscape is chaotic), so the runs
  are not bit-identical, but they must be the same learner. :func:`learner_mismatches` is the criterion:

  (a) the per-epoch training-loss trajectories agree: epoch 1 within ``EPOCH1_RTOL`` and the mean over
      the epochs of the relative gap (keras - torch) / torch within ``MEAN_GAP_TOL``;
  (b) both reach ``FLOOR`` (3.6x chance) top-1 on ``N_TEST`` held-out recordings;
  (c) their top-1 accuracies differ by at most ``K_SE`` binomial standard errors of a difference of two
      accuracies on n examples, ``sqrt(2 p (1 - p) / n)`` with p their mean accuracy (n = 900, p ~ 0.8:
      3 SE = 5.7 points).

How the tolerances were set (8 epochs, cosine schedule, train takes 5-14 = 600 files, test takes 0-4 and
40-49 = 900 files; seeds 0-5; repeated runs of a seed give identical numbers):

  ================================  ==============  ===============  ==================
  quantity                          keras vs torch  torch vs torch*  tolerance
  ================================  ==============  ===============  ==================
  epoch-1 loss, relative gap        <= 0.74 %       <= 0.07 %        2 %
  mean relative loss gap            <= 4.2 %        <= 4.5 %         8 %
  top-1 gap (900 clips)             <= 3.0 points   <= 2.7 points    3 SE (5-6 points)
  top-1                             0.75 - 0.90     0.75 - 0.90      >= 0.6 (chance 1/6)
  ================================  ==============  ===============  ==================

  (*) two torch runs whose initial weights differ by ~1 ulp: the spread that round-off alone causes,
  the same as the backend-to-backend one.

A keras run with a different recipe from the same start is rejected: attention penalty off (epoch-1
gap 6.7-7.4 %, mean gap 10-15 %; tested below), half the learning rate (mean gap 19-39 %, top-1 gap up to
19 points), label smoothing 0.1 (mean gap 21-49 %). The earlier criterion (top-1 within 10 points on 60
clips after a constant-lr run) failed on round-off alone: a 60-clip gap has an SE of ~9 points.

``SPKID_PARITY_SEED`` (default 0) picks the seed of the sampler and the initial weights.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")

import spkid_keras  # noqa: E402
import spkid_torch  # noqa: E402
from spkid.data.featuresets import FeatureSet  # noqa: E402
from spkid.features.api import extract_features  # noqa: E402
from spkid.features.config import FeatureConfig  # noqa: E402
from spkid.training.loop import resolve_spec  # noqa: E402
from spkid_keras.convert import torch_to_keras  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)
from tests.train_cases import tiny_config  # noqa: E402

pytestmark = [pytest.mark.parity, pytest.mark.data, pytest.mark.usefixtures("one_torch_thread")]

SEED = int(os.environ.get("SPKID_PARITY_SEED", "0"))
LEARN = dict(epochs=8, batch_size=30, crop_frames=50, lr=3e-3, lr_schedule="cosine", min_lr=1e-5)
TRAIN_TAKES = range(5, 15)  # 6 speakers x 10 digits x 10 takes = 600 training files
TEST_TAKES = (*range(0, 5), *range(40, 50))  # 900 other recordings (FSDD's test takes and the last ten)
N_TEST = 6 * 10 * len(TEST_TAKES)
FLOOR = 0.6  # 3.6x chance (1/6); measured 0.75-0.90 over seeds 0-5
EPOCH1_RTOL = 0.02  # measured <= 0.0074 (keras vs torch), the penalty switched off gives >= 0.067
MEAN_GAP_TOL = 0.08  # measured <= 0.042 (keras vs torch) and <= 0.045 (torch vs 1-ulp-perturbed torch)
K_SE = 3.0


def _fsdd_sets(fsdd_dir):
    """{"train": 600 files, "test": 900 files, "sgd": the 180 training files of digits 0-5, takes 5-9}."""
    fc = FeatureConfig(sr=8000)
    name = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
    files = sorted(p for p in fsdd_dir.glob("*.wav") if name.fullmatch(p.name))
    speakers = tuple(sorted({name.fullmatch(p.name).group(2) for p in files}))
    parts = {"train": ([], [], []), "test": ([], [], [])}
    for p in files:
        digit, spk, take = name.fullmatch(p.name).groups()
        split = "train" if int(take) in TRAIN_TAKES else "test" if int(take) in TEST_TAKES else None
        if split:
            parts[split][0].append(extract_features(p, fc))
            parts[split][1].append(speakers.index(spk))
            parts[split][2].append(p.name)
    sets = {k: FeatureSet(f, y, speakers, fc, ids) for k, (f, y, ids) in parts.items()}
    sgd = [i for i, n in enumerate(sets["train"].ids)
           if int(name.fullmatch(n).group(1)) <= 5 and int(name.fullmatch(n).group(3)) <= 9]
    sets["sgd"] = sets["train"].subset(sgd)
    assert (len(sets["train"]), len(sets["test"]), len(sets["sgd"])) == (600, N_TEST, 180)
    return sets


@pytest.fixture(scope="module")
def fsdd_sets(fsdd_dir):
    return _fsdd_sets(fsdd_dir)


def _initial_weights(cfg, train, seed):
    """The torch model's seeded initial state (numpy), the start of both backends."""
    import torch

    spec = resolve_spec(cfg, train.n_mels)
    torch.manual_seed(seed)
    model = spkid_torch.create_model(cfg.model, train.n_classes, **spec.to_dict())
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _fit(backend: str, cfg, train, init, out):
    """Train ``backend`` from the ``init`` weights; returns its history."""
    import torch

    spec = resolve_spec(cfg, train.n_mels)
    if backend == "torch":
        model = spkid_torch.create_model(cfg.model, train.n_classes, **spec.to_dict())
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in init.items()})
        return spkid_torch.fit(cfg, train, None, out, progress=False, model=model)
    model = spkid_keras.create_model(cfg.model, train.n_classes, **spec.to_dict())
    torch_to_keras(init, model)
    return spkid_keras.fit(cfg, train, None, out, progress=False, model=model)


def binomial_se_of_difference(p: float, n: int) -> float:
    """Standard error of the difference of two accuracies near ``p``, each measured on ``n`` examples."""
    return math.sqrt(2 * p * (1 - p) / n)


def learner_mismatches(th: list[dict], kh: list[dict], t_acc: float, k_acc: float, n: int) -> list[str]:
    """Why two runs of one recipe are not the same learner (empty when they are); see the docstring."""
    tl = np.array([h["loss"] for h in th])
    kl = np.array([h["loss"] for h in kh])
    problems = []
    if len(tl) != len(kl):
        return [f"{len(tl)} torch epochs, {len(kl)} keras epochs"]
    gap = (kl - tl) / tl
    if abs(gap[0]) > EPOCH1_RTOL:
        problems.append(f"epoch-1 loss gap {gap[0]:+.4f} (tolerance {EPOCH1_RTOL})")
    if abs(gap.mean()) > MEAN_GAP_TOL:
        problems.append(f"mean relative loss gap {gap.mean():+.4f} (tolerance {MEAN_GAP_TOL})")
    for name, acc in (("torch", t_acc), ("keras", k_acc)):
        if acc < FLOOR:
            problems.append(f"{name} top-1 {acc:.3f} < floor {FLOOR}")
    tol = K_SE * binomial_se_of_difference((t_acc + k_acc) / 2, n)
    if abs(t_acc - k_acc) > tol:
        problems.append(f"top-1 gap {k_acc - t_acc:+.4f} > {K_SE:g} SE = {tol:.4f} (n={n})")
    return problems


def _summary(th, kh, t_acc, k_acc, n) -> str:
    tl = np.array([h["loss"] for h in th])
    kl = np.array([h["loss"] for h in kh])
    gap = (kl - tl) / tl
    se = binomial_se_of_difference((t_acc + k_acc) / 2, n)
    return (f"seed {SEED}: top-1 torch {t_acc:.4f} keras {k_acc:.4f} gap {k_acc - t_acc:+.4f} "
            f"({(k_acc - t_acc) / se:+.2f} SE); loss gap epoch 1 {gap[0]:+.5f}, mean {gap.mean():+.4f}, "
            f"max {np.abs(gap).max():.4f}; torch {np.round(tl, 4).tolist()} keras {np.round(kl, 4).tolist()}")


@pytest.fixture(scope="module")
def torch_run(fsdd_sets, tmp_path_factory):
    """(config, initial weights, torch history, torch top-1) of the Adam recipe."""
    cfg = tiny_config(seed=SEED, **LEARN)
    init = _initial_weights(cfg, fsdd_sets["train"], SEED)
    out = tmp_path_factory.mktemp("torch")
    hist = _fit("torch", cfg, fsdd_sets["train"], init, out)
    return cfg, init, hist, spkid_torch.evaluate(out, fsdd_sets["test"])["top1"]


def test_sgd_steps_agree_to_round_off(fsdd_sets, tmp_path):
    cfg = tiny_config(epochs=1, batch_size=30, crop_frames=50, lr=3e-3, optimizer="sgd", weight_decay=1e-3,
                      label_smoothing=0.1, time_masks=1, gain_db=(-3.0, 3.0))
    init = _initial_weights(cfg, fsdd_sets["sgd"], 0)
    th = _fit("torch", cfg, fsdd_sets["sgd"], init, tmp_path / "torch")
    kh = _fit("keras", cfg, fsdd_sets["sgd"], init, tmp_path / "keras")
    for key in ("loss", "ce", "penalty"):
        np.testing.assert_allclose(kh[0][key], th[0][key], rtol=2e-4, err_msg=key)


AAM = dict(epochs=3, batch_size=30, crop_frames=50, lr=3e-3, optimizer="sgd", weight_decay=1e-3,
           label_smoothing=0.1, time_masks=1, gain_db=(-3.0, 3.0), loss="aam", aam_scale=30.0, aam_margin=0.2,
           aam_margin_warmup_epochs=2)
AAM_EPOCH1_RTOL = 0.02  # measured <= 0.0081 (keras vs torch); a keras run without the warm-up: >= 0.47
AAM_MEAN_GAP_TOL = 0.10  # epochs 2-3, measured <= 0.047; keras with margin 0.1 for 0.2: >= 0.25


def aam_mismatches(th: list[dict], kh: list[dict]) -> list[str]:
    """Why two SGD runs with ``loss="aam"`` are not the same learner (empty when they are).

    At ``s = 30`` round-off grows fast: two torch runs whose initial weights differ by one ulp drift
    0.6 % apart in epoch 1 and up to 3.5 % by epoch 2, so step-for-step agreement (the softmax test above)
    cannot hold. The criterion is the margin schedule's effect on the loss instead: the epoch-1 loss
    (margin 0 in the warm-up) within ``AAM_EPOCH1_RTOL`` and the mean absolute relative gap of the later
    epochs (margin 0.1, then 0.2) within ``AAM_MEAN_GAP_TOL``. Measured over seeds 0-3 with 1 and 3
    sub-centres: keras vs torch <= 0.81 % / 4.7 % (one-ulp-perturbed torch vs torch <= 0.64 % / 1.8 %);
    keras without the warm-up >= 47 % in epoch 1, keras with margin 0.1 >= 25 % later."""
    tl = np.array([h["loss"] for h in th])
    kl = np.array([h["loss"] for h in kh])
    if len(tl) != len(kl) or len(tl) < 2:
        return [f"{len(tl)} torch epochs, {len(kl)} keras epochs (need the same number, >= 2)"]
    gap = (kl - tl) / tl
    problems = []
    if abs(gap[0]) > AAM_EPOCH1_RTOL:
        problems.append(f"epoch-1 loss gap {gap[0]:+.4f} (tolerance {AAM_EPOCH1_RTOL})")
    if np.abs(gap[1:]).mean() > AAM_MEAN_GAP_TOL:
        problems.append(f"later epochs' mean |gap| {np.abs(gap[1:]).mean():.4f} (tolerance {AAM_MEAN_GAP_TOL})")
    return problems


def _aam_config(subcenters: int):
    head = dict(tiny_config().model_overrides, head={"type": "aam", "subcenters": subcenters})
    return tiny_config(seed=SEED, model_overrides=head, **AAM)


@pytest.fixture(scope="module")
def aam_torch_run(fsdd_sets, tmp_path_factory):
    """(config, initial weights, torch history) of the AAM recipe, one sub-centre."""
    cfg = _aam_config(1)
    init = _initial_weights(cfg, fsdd_sets["sgd"], SEED)
    return cfg, init, _fit("torch", cfg, fsdd_sets["sgd"], init, tmp_path_factory.mktemp("aam-torch"))


@pytest.mark.parametrize("subcenters", [1, 3])
def test_aam_training_agrees(fsdd_sets, aam_torch_run, tmp_path, subcenters):
    """The same AAM recipe (margin warm-up, label smoothing, sub-centres) trained by both backends from the
    same weights on the same crops: the same learner by :func:`aam_mismatches`."""
    if subcenters == 1:
        cfg, init, th = aam_torch_run
    else:
        cfg = _aam_config(subcenters)
        init = _initial_weights(cfg, fsdd_sets["sgd"], SEED)
        th = _fit("torch", cfg, fsdd_sets["sgd"], init, tmp_path / "torch")
    kh = _fit("keras", cfg, fsdd_sets["sgd"], init, tmp_path / "keras")
    gaps = [(k["loss"] - t["loss"]) / t["loss"] for t, k in zip(th, kh)]
    print(f"seed {SEED} K={subcenters}: relative loss gaps {np.round(gaps, 5).tolist()}")
    assert not aam_mismatches(th, kh), gaps


@pytest.mark.parametrize("wrong", [dict(aam_margin=0.1), dict(aam_margin_warmup_epochs=0)])
def test_aam_criterion_rejects_a_keras_run_with_another_margin(fsdd_sets, aam_torch_run, tmp_path, wrong):
    """The criterion can fail: keras with half the margin, or without the warm-up, from the same start."""
    cfg, init, th = aam_torch_run
    kh = _fit("keras", cfg.replace(**wrong), fsdd_sets["sgd"], init, tmp_path / "keras")
    assert aam_mismatches(th, kh), [(k["loss"] - t["loss"]) / t["loss"] for t, k in zip(th, kh)]


def test_both_backends_learn_the_same(fsdd_sets, torch_run, tmp_path):
    cfg, init, th, t_acc = torch_run
    kh = _fit("keras", cfg, fsdd_sets["train"], init, tmp_path / "keras")
    k_acc = spkid_keras.evaluate(tmp_path / "keras", fsdd_sets["test"])["top1"]
    summary = _summary(th, kh, t_acc, k_acc, len(fsdd_sets["test"]))
    print(summary)
    assert not learner_mismatches(th, kh, t_acc, k_acc, len(fsdd_sets["test"])), summary


def test_criterion_rejects_a_keras_run_without_the_attention_penalty(fsdd_sets, torch_run, tmp_path):
    """The criterion can fail: the same start and crops, but keras trains without the penalty term."""
    cfg, init, th, t_acc = torch_run
    kh = _fit("keras", cfg.replace(penalty_coef=0.0), fsdd_sets["train"], init, tmp_path / "keras")
    k_acc = spkid_keras.evaluate(tmp_path / "keras", fsdd_sets["test"])["top1"]
    problems = learner_mismatches(th, kh, t_acc, k_acc, len(fsdd_sets["test"]))
    print(_summary(th, kh, t_acc, k_acc, len(fsdd_sets["test"])), problems)
    assert any(p.startswith("epoch-1 loss gap") for p in problems), problems


def test_binomial_tolerance():
    assert binomial_se_of_difference(0.8, 900) == pytest.approx(0.01886, abs=1e-5)
    assert K_SE * binomial_se_of_difference(0.8, 900) < 0.06  # tight enough to mean something
    assert K_SE * binomial_se_of_difference(0.65, 60) > 0.25  # why 60 clips could not decide anything
