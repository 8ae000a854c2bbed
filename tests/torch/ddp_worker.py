"""Run by tests/torch/test_distributed.py under ``torch.distributed.run``: each rank trains the tiny model
on the shared synthetic blobs (or, with a third argument ``waves``, waveform blobs augmented on the fly) for
one epoch, resumes for a second, and dumps its full state after each."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from spkid.training.config import TrainConfig
from spkid.training.loop import run_training
from spkid_torch import train
from tests.train_cases import blobs, wave_blobs


def dump(model: torch.nn.Module, path: Path) -> None:
    np.savez(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def main(out: Path, config_json: str, data: str = "features") -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    cfg = TrainConfig.from_dict(json.loads(config_json))
    adapters = []

    class Keep(train.TorchAdapter):  # keep the adapter to read this rank's weights
        def build(self, *a):
            super().build(*a)
            adapters.append(self)

    for epochs in (1, 2):
        train_set = wave_blobs() if data == "waves" else blobs()
        run_training(Keep(), cfg.replace(epochs=epochs), train_set, blobs(2, seed=1), out / "run", resume=epochs > 1,
                     progress=False)
        dump(adapters[-1].model, out / f"rank{rank}-epoch{epochs}.npz")
    train.distributed.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
