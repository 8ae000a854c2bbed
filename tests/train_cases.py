"""Shared pieces of the training tests: tiny data sets, a numpy stand-in backend for the core loop, and
backend-neutral checks that tests/torch and tests/keras run against their :class:`spkid.backends.Backend`."""
from __future__ import annotations

import numpy as np

from spkid.features.config import FeatureConfig
from spkid.training.config import TrainConfig
from spkid.training.loop import AdapterBase
from spkid.inference.embedder import load_embedder
from spkid.data.featuresets import FeatureSet
from spkid.models.specs import TINY_OVERRIDES


def blobs(n_per_class: int = 6, n_classes: int = 3, n_mels: int = 40, seed: int = 0) -> FeatureSet:
    """Easy synthetic utterances (class c = noise + a class-specific spectral tilt): for mechanics only;
    accuracy claims use real speech (tests/parity)."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for c in range(n_classes):
        tilt = np.sin(np.linspace(0, (c + 1) * np.pi, n_mels))
        for _ in range(n_per_class):
            t = int(rng.integers(20, 60))
            feats.append((rng.normal(size=(t, n_mels)) + 2 * tilt).astype(np.float32))
            labels.append(c)
    return FeatureSet(feats, labels, tuple(f"spk{c}" for c in range(n_classes)), FeatureConfig(), None)


def wave_blobs(n_per_class: int = 6, n_classes: int = 3, sr: int = 16000, seed: int = 0):
    """Easy synthetic waveforms (class c = a tone at 200 + 150 c Hz plus noise, 0.3-0.9 s) as a
    :class:`~spkid.data.wavesampler.WaveSet` with blobs' speaker names: for mechanics only."""
    from spkid.data.wavesampler import InMemoryWaves, WaveSet

    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            t = np.arange(int(rng.integers(int(0.3 * sr), int(0.9 * sr)))) / sr
            waves.append((0.3 * np.sin(2 * np.pi * (200 + 150 * c) * t) + 0.05 * rng.standard_normal(len(t)))
                         .astype(np.float32))
            labels.append(c)
    return WaveSet(InMemoryWaves(waves, labels, [f"spk{c}" for c in range(n_classes)], sr=sr))


def tiny_config(**kw) -> TrainConfig:
    base = dict(model="vgg_attention", model_overrides=TINY_OVERRIDES["vgg_attention"], epochs=3, batch_size=6,
                crop_frames=32, lr=3e-3, seed=0, plateau_patience=1)
    return TrainConfig.from_dict({**base, **kw})


class NumpyAdapter(AdapterBase):
    """A framework-free stand-in backend: softmax regression on the time-mean of the crop, plain SGD
    (one process: ``world``, ``is_main``, ``sync``, ``share`` and ``summary_writer`` are the defaults)."""

    backend = "numpy"
    suffix = ".npz"

    def build(self, config, spec, n_classes):
        rng = np.random.default_rng(config.seed)
        self.w = rng.normal(0, 0.01, size=(spec.n_mels, n_classes))
        self.b = np.zeros(n_classes)

    def batches(self, sampler, epoch):
        return sampler.epoch(epoch)

    def _logits(self, x, lengths=None):
        m = x.mean(axis=1) if lengths is None else np.stack([r[:n].mean(0) for r, n in zip(x, lengths)])
        return m, m @ self.w + self.b

    def train_step(self, x, y, lr):
        m, z = self._logits(x)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
        p[np.arange(len(y)), y] -= 1
        self.w -= lr * m.T @ p / len(y)
        self.b -= lr * p.mean(0)
        return {"loss": loss, "acc": float((z.argmax(1) == y).mean())}

    def forward(self, x, lengths):
        m, z = self._logits(x, lengths)
        return {"logits": z, "embedding": m}

    def save(self, path):
        with open(path, "wb") as fh:
            np.savez(fh, w=self.w, b=self.b)

    def load(self, path):
        with np.load(path) as z:
            self.w, self.b = z["w"], z["b"]


# ----------------------------------------------------------------------------- backend-neutral checks
def check_loss_decreases(module, tmp_path):
    data = blobs()
    hist = module.fit(tiny_config(epochs=4), data, None, tmp_path / "run", progress=False)
    assert len(hist) == 4
    assert hist[-1]["loss"] < hist[0]["loss"], [h["loss"] for h in hist]
    assert all(np.isfinite(h["penalty"]) and h["penalty"] >= 0 for h in hist)


def check_resume_equals_uninterrupted(module, tmp_path, weights_of):
    """2 epochs, then resume to 3 == 3 epochs straight (weights bit-for-bit on CPU)."""
    data = blobs()
    val = blobs(2, seed=1)
    cfg = tiny_config(epochs=3, time_masks=1, gain_db=(-3.0, 3.0))
    straight = module.fit(cfg, data, val, tmp_path / "a", progress=False)
    module.fit(cfg.replace(epochs=2), data, val, tmp_path / "b", progress=False)
    resumed = module.fit(cfg, data, val, tmp_path / "b", resume=True, progress=False)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]
    a = weights_of(module.load_model(tmp_path / "a", prefer="last"))
    b = weights_of(module.load_model(tmp_path / "b", prefer="last"))
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def check_max_steps_stops_exactly_and_resumes(module, tmp_path, weights_of):
    """max_steps stops inside an epoch at exactly that step; resuming to the end equals an unbroken run
    whose epochs (steps_per_epoch 2) cut across the data's passes (3 batches each)."""
    import json

    data, val = blobs(), blobs(2, seed=1)
    cfg = tiny_config(epochs=3, steps_per_epoch=2, time_masks=1)
    straight = module.fit(cfg, data, val, tmp_path / "a", progress=False)
    assert [h["epoch"] for h in straight] == [1, 2, 3]
    part = module.fit(cfg.replace(max_steps=3), data, val, tmp_path / "b", progress=False)
    meta = json.loads((tmp_path / "b" / "checkpoints" / "last.json").read_text())
    assert len(part) == 1 and meta["step"] == 3 and meta["epoch"] == 1 and meta["partial"]["steps"] == 1
    resumed = module.fit(cfg, data, val, tmp_path / "b", resume=True, progress=False)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]
    a = weights_of(module.load_model(tmp_path / "a", prefer="last"))
    b = weights_of(module.load_model(tmp_path / "b", prefer="last"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def check_evaluate_embed_and_embedder(module, tmp_path):
    data = blobs()
    run = tmp_path / "run"
    cfg = tiny_config(epochs=2)
    module.fit(cfg, data, data, run, progress=False)
    rep = module.evaluate(run, data)
    assert rep["n"] == len(data) and 0 <= rep["top1"] <= rep["top5"] <= 1
    conf = np.asarray(rep["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == len(data)
    assert set(rep["per_speaker"]) == set(data.speakers)
    emb = module.embed(run, data.features[:5])
    assert emb.shape == (5, cfg.model_overrides["embedding_dim"]) and emb.dtype == np.float32
    embedder = load_embedder(run)
    np.testing.assert_allclose(embedder.embed(data.features[:5]), emb, rtol=1e-5, atol=1e-6)
    logits = embedder.logits(data.features)
    assert logits.shape == (len(data), 3)
    assert (logits.argmax(1) == data.labels).mean() == rep["top1"]
    att = embedder.attention(data.features[0])
    assert att.ndim == 2 and att.shape[0] == 2
    np.testing.assert_allclose(att.sum(1), 1.0, rtol=1e-5)
    top = embedder.identify(data.features[:2], top_k=2)
    assert len(top) == 2 and all(len(t) == 2 and t[0][0] in data.speakers for t in top)
    assert embedder.feature_config == FeatureConfig() and embedder.labels.speakers == list(data.speakers)
