"""PyTorch DistributedDataParallel on CPU (gloo): 2 ranks under torch.distributed.run vs one process.

Each rank computes half of every global batch; PyTorch's SyncBatchNorm refuses CPU tensors, so each rank
normalises its half with its own statistics -- exactly what one process does with
``grad_accumulation=2`` (the same two micro-batches, gradients summed). So the reference is a single
process with the same global batch (``batch_size``) in two micro-batches, and the trainable weights must
agree to float32 round-off: the loss weights (1/2 per micro-batch, or x2 / 2 ranks) are powers of two
and scale gradients exactly, the forward and backward passes run the same kernels on the same
micro-batches, and only the order of the final gradient sum (accumulation in ``.grad`` vs gloo's
all-reduce) differs -- at most a few ulps (measured: bit-identical), which Adam's normalised steps keep at that size over 4 steps
(rtol 1e-4 / atol 1e-6; a wrong shard, a missing or doubled gradient, or a rank that skips its
micro-batch moves weights by ~lr = 3e-3). BatchNorm running statistics are rank 0's by design (they
are not used in training mode), so they are compared between ranks, not with the single process.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from spkid.backends import get_backend  # noqa: E402
from spkid_torch import train  # noqa: E402
from tests.model_contract import one_torch_thread  # noqa: E402,F401 (fixture)
from tests.train_cases import blobs, tiny_config, wave_blobs  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("one_torch_thread")]
REPO = Path(__file__).resolve().parents[2]


def _torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("data", ["features", "waves"])
def test_two_cpu_ranks_equal_one_process_with_the_same_global_batch(data, tmp_path):
    """``waves``: each rank augments and featurises only its half of every global batch
    (``WaveSampler.only_rows``), so equality with the single process also shows those halves are right."""
    cfg = tiny_config(batch_size=8, devices="cpu", time_masks=1, gain_db=(-3.0, 3.0))
    if data == "waves":
        cfg = cfg.replace(waveform_augment={"noise_prob": 0.5, "reverb_prob": 0.5, "babble_prob": 0.5,
                                            "babble_speakers": [1, 2]})
    _torchrun(["-m", "tests.torch.ddp_worker", str(tmp_path), cfg.to_json(), data], tmp_path)
    train_set = wave_blobs() if data == "waves" else blobs()
    single = train.fit(cfg.replace(epochs=2, grad_accumulation=2), train_set, blobs(2, seed=1), tmp_path / "single",
                       progress=False)
    ref = {k: v.detach().numpy() for k, v in train.load_model(tmp_path / "single", prefer="last").named_parameters()}
    for epoch in (1, 2):
        r0, r1 = (_npz(tmp_path / f"rank{r}-epoch{epoch}.npz") for r in (0, 1))
        assert r0.keys() == r1.keys()
        for k in r0:  # parameters and (after the epoch-end sync) BatchNorm statistics
            np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    for k, v in ref.items():
        np.testing.assert_allclose(r0[k], v, rtol=1e-4, atol=1e-6, err_msg=k)
    init = train.TorchAdapter()
    init.build(cfg, *_spec_and_classes(cfg))
    moved = max(float(np.abs(p.detach().numpy() - ref[k]).max()) for k, p in init.model.named_parameters())
    assert moved > 1e-3  # training moved the weights far more than the tolerance
    # rank 0 alone wrote the checkpoints; the history (the resumed epoch included) matches the single run
    with open(tmp_path / "run" / "history.csv", newline="") as fh:
        ddp_loss = [float(row["loss"]) for row in csv.DictReader(fh)]
    np.testing.assert_allclose(ddp_loss, [h["loss"] for h in single], rtol=1e-4)


def _spec_and_classes(cfg):
    from spkid.training.loop import resolve_spec

    return resolve_spec(cfg, 40), 3


def test_spkid_train_devices_2_launches_torchrun_and_resumes(fsdd_dir, tmp_path, capsys):
    """`spkid train --devices 2` on a real FSDD cache: 2 gloo ranks, rank 0's checkpoint, then --resume."""
    import json

    from spkid.app.cli import main
    from spkid.training.checkpoints import read_checkpoint

    data = tmp_path / "fsdd"
    data.mkdir()
    for spk in ("george", "jackson", "lucas"):
        for idx in (5, 6, 7, 8):
            (data / f"3_{spk}_{idx}.wav").symlink_to(fsdd_dir / f"3_{spk}_{idx}.wav")
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", str(data), "--cache", str(cache), "--pattern", "fsdd", "--sr", "8000",
                 "--val-fraction", "0", "--test-fraction", "0", "--no-progress"]) == 0
    args = ["train", "--backend", "torch", "--cache", str(cache), "--out", str(run), "--devices", "2",
            "--model-overrides", json.dumps(tiny_config().model_overrides), "--batch-size", "6",
            "--crop-frames", "40", "--no-progress"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    meta, _ = read_checkpoint(run, prefer="last")
    assert meta["epoch"] == 2 and meta["train_config"]["devices"] == "2" and len(meta["history"]) == 2
    assert len(list((run / "checkpoints").glob("epoch-*.pt"))) >= 1
    assert get_backend("torch").embed(run, blobs(1).features).shape == (3, 16)  # the checkpoint loads in one process
