"""Memory stays bounded while a feature store larger than the budget is streamed: a subprocess trains
through an epoch of crops and the evaluation pieces of every utterance, and its private memory (RssAnon)
grows by far less than the store; loading the same store whole (the control) grows by about its size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spkid.data.featstore import FeatureStore, feature_kind
from spkid.data.manifest import Manifest, Utterance
from spkid.data.waves_build import build_store
from spkid.features.config import FeatureConfig

N_UTT, FRAMES = 1500, 500  # 1500 x 500 x 40 float32 = 120 MB


def _frames(job):
    """build_store worker: seeded random frames for utterance ``spkS/N.wav``."""
    _, relpath, _ = job
    n = int(relpath.split("/")[1].split(".")[0])
    return relpath, np.random.default_rng(n).standard_normal((FRAMES, 40)).astype(np.float32), ""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "store"
    kind = feature_kind(FeatureConfig(), produce=_frames)
    utts = [Utterance(f"spk{j % 20:02d}/{j:05d}.wav", f"spk{j % 20:02d}", "val" if j % 7 == 0 else "train")
            for j in range(N_UTT)]
    build_store(Manifest("/nonexistent", utts), root, kind)
    return root


_SCRIPT = """
import json, sys
import numpy as np
from spkid.data.featuresets import load_feature_set
from spkid.data.sampler import TrainSampler, eval_batches, eval_pieces
from spkid.training.config import TrainConfig

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
cfg = TrainConfig(batch_size=32, crop_frames=300, eval_mode="windows", window_frames=300, hop_frames=150)
train = load_feature_set("train", cache=sys.argv[1], progress=False)
val = load_feature_set("val", cache=sys.argv[1], speakers=train.speakers, progress=False)
sampler = TrainSampler(train, cfg)
order = sampler.order(0)
sampler.batch(0, 0, order)
start, peak = anon(), 0
if sys.argv[2] == "whole":
    held = [np.array(f) for f in train.features]
    peak = anon()
for i in range(len(sampler)):
    x, y = sampler.batch(0, i, order)
    peak = max(peak, anon())
for data in (train, val):
    pieces, owner = eval_pieces(data.features, cfg)
    for x, lengths, idx in eval_batches(pieces, 64):
        peak = max(peak, anon())
print(json.dumps({"grew": peak - start, "store": int(sum(int(n) for n in train.features.lengths)) * 160}))
"""


@pytest.mark.parametrize("mode", ["stream", "whole"])
def test_private_memory_stays_flat_while_a_store_is_streamed(store, mode):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(store), mode], capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["store"] > 100e6 and FeatureStore(store).verify() >= 1
    if mode == "stream":
        assert got["grew"] < 0.2 * got["store"], got  # batches and pieces' index only
    else:  # the control: the test can tell a copy of the corpus from a stream
        assert got["grew"] > 0.9 * got["store"], got
