"""Train and load the Keras 3 models (same public names as ``spkid_torch.train``).

Same recipe as the torch backend: cross-entropy with label smoothing (on the additive angular margin
logits of :func:`spkid_keras.losses.margin_logits` for ``loss="aam"``, at the epoch's margin) +
``penalty_coef`` * mean attention penalty, Adam (PyTorch's update formula, epsilon 1e-8: :class:`TorchStyleAdam`) or SGD with decoupled weight decay applied before the update, the
learning rate set every step from :class:`spkid.training.Plateau`. The step is a ``tf.GradientTape`` loop
(TensorFlow backend of Keras) so that resuming restores exactly the same optimizer state; the epoch loop,
validation, checkpoints and history are shared with torch in :func:`spkid.training.run_training`.

Data-parallel training (``devices="N"``: ``tf.distribute.MirroredStrategy``; ``TF_CONFIG``: multi-worker)
and ``grad_accumulation`` follow :mod:`spkid.training.distributed` with :mod:`spkid_keras.distributed`; one
device runs the same step under TensorFlow's default strategy.

Checkpoint state files are ``.npz`` (no pickle): every model variable and optimizer variable, in order,
with their paths, checked on load. ``evaluate`` / ``embed`` and the rest of the backend interface:
:mod:`spkid_keras.backend`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from spkid.training.config import TrainConfig
from spkid.training.distributed import micro_batches
from spkid.errors import BackendError, CheckpointError
from spkid.data.featuresets import FeatureSet
from spkid.data.sampler import TrainSampler
from spkid.models.specs import ModelSpec, model_spec
from spkid.training.checkpoints import check_compatible, read_checkpoint
from spkid.training.loop import AdapterBase, check_model, run_training
from spkid.training.losses import margin_at

from . import distributed
from .data import EpochBatches, iterate
from .losses import margin_logits
from .models import create_model

__all__ = ["fit", "load_model", "load_checkpoint", "forward_fn", "KerasAdapter", "TorchStyleAdam"]


def _call(model, x, lengths, training: bool) -> dict:
    return model(x, lengths=lengths, training=training)


def _build_model(spec: ModelSpec, n_classes: int, name: str):
    return create_model(name, n_classes, **spec.to_dict())  # built: its variables exist


def _path(v) -> str:
    """A variable's path without its owner's auto-numbered name (``adam_3/...`` -> ``.../``)."""
    return v.path.split("/", 1)[-1]


def _variables(prefix: str, variables) -> dict[str, np.ndarray]:
    out = {f"{prefix}{i:05d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(variables)}
    out[f"{prefix}paths"] = np.asarray([_path(v) for v in variables], dtype=str)
    return out


def _assign(prefix: str, variables, state, path) -> None:
    names = [_path(v) for v in variables]
    saved = [str(s) for s in state[f"{prefix}paths"]] if f"{prefix}paths" in state else None
    if saved != names:
        raise CheckpointError(f"{prefix} variables differ: checkpoint has {len(saved or [])} "
                              f"({(saved or [])[:3]}...), model has {len(names)} ({names[:3]}...)", path=path)
    for i, v in enumerate(variables):
        value = state[f"{prefix}{i:05d}"]
        if tuple(value.shape) != tuple(v.shape):
            raise CheckpointError(f"{v.path}: checkpoint shape {value.shape} != model shape {tuple(v.shape)}",
                                  path=path)
        v.assign(value)


def _npz_load(path: str | os.PathLike) -> dict:
    try:
        with np.load(str(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zip / format errors of many kinds
        raise CheckpointError(f"cannot read keras checkpoint: {exc}", path=path) from None


class TorchStyleAdam(keras.optimizers.Adam):
    """Adam with PyTorch's epsilon placement, ``w -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``.

    Keras adds epsilon to ``sqrt(v)`` before the bias correction, which is a ~30x larger effective
    epsilon in early steps; with this form both backends take the same steps from the same state.
    """

    def update_step(self, gradient, variable, learning_rate):
        ops, dt = keras.ops, variable.dtype
        lr, g = ops.cast(learning_rate, dt), ops.cast(gradient, dt)
        t = ops.cast(self.iterations + 1, dt)
        bc1 = 1 - ops.power(ops.cast(self.beta_1, dt), t)
        bc2 = 1 - ops.power(ops.cast(self.beta_2, dt), t)
        i = self._get_variable_index(variable)
        m, v = self._momentums[i], self._velocities[i]
        self.assign_add(m, (g - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(g) - v) * (1 - self.beta_2))
        self.assign_sub(variable, m * (lr / bc1) / (ops.sqrt(v) / ops.sqrt(bc2) + self.epsilon))


class KerasAdapter(AdapterBase):
    """The keras side of :func:`spkid.training.run_training`; ``model`` (optional)
    is a ready model to start from instead of a freshly initialised one."""

    def __init__(self, model=None):
        self.initial_model = model

    backend = "keras"
    suffix = ".npz"

    def build(self, config: TrainConfig, spec: ModelSpec, n_classes: int) -> None:
        if keras.backend.backend() != "tensorflow":
            raise BackendError(f"spkid_keras training needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}")
        import tensorflow as tf

        self.tf, self.config = tf, config
        self.margin = margin_at(config.aam_margin, config.aam_margin_warmup_epochs, 0)
        gpu = bool(tf.config.list_physical_devices("GPU")) and config.devices != "cpu"
        if config.mixed_precision:
            if gpu:
                keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
            else:
                warnings.warn("mixed_precision needs a GPU; training in float32", stacklevel=2)
        keras.utils.set_random_seed(config.seed)
        self.strategy = distributed.strategy_for(config.devices)
        self.world, self.is_main = self.strategy.num_replicas_in_sync, distributed.is_main(self.strategy)
        with self.strategy.scope():  # variables mirrored on every replica
            model = self.initial_model
            if model is None or self.world > 1:
                model = _build_model(spec, n_classes, config.model)
                if self.initial_model is not None:
                    model.set_weights(self.initial_model.get_weights())
            self.model = check_model(model, spec, n_classes)
            if self.world > 1:
                distributed.sync_batchnorm(self.model)
            # weight decay: Keras' decoupled form w -= lr * wd * w before the update (as the torch backend)
            wd = config.weight_decay or None
            if config.optimizer == "adam":
                self.opt = TorchStyleAdam(learning_rate=config.lr, epsilon=1e-8, weight_decay=wd)
            else:
                self.opt = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, weight_decay=wd)
            self.opt.build(self.model.trainable_variables)
        self._step = tf.function(self._distributed_step, reduce_retracing=True)

    def begin_epoch(self, epoch: int) -> None:
        """Set the AAM margin of 0-based ``epoch`` (its warm-up ramp)."""
        c = self.config
        self.margin = margin_at(c.aam_margin, c.aam_margin_warmup_epochs, epoch)

    def _distributed_step(self, pieces, inv_n, lr, margin):
        self.opt.learning_rate.assign(lr)
        sums = self.strategy.run(self._replica_step, args=(pieces, inv_n, margin))
        return self.strategy.reduce("SUM", sums, axis=None)

    def _replica_step(self, pieces, inv_n, margin):
        """This replica's micro-batches: gradients of (summed loss) / (global batch size), accumulated, then
        applied (the optimizer sums them across replicas). Returns the sums of loss, ce, penalty, hits."""
        tf, c = self.tf, self.config
        tv = self.model.trainable_variables
        grads, sums = None, tf.zeros(4, tf.float32)
        for x, y in pieces:
            with tf.GradientTape() as tape:
                out = _call(self.model, x, None, True)
                logits = tf.cast(out["logits"], tf.float32)
                n = tf.shape(logits)[-1]
                target = tf.one_hot(y, n) * (1.0 - c.label_smoothing) + c.label_smoothing / tf.cast(n, tf.float32)
                z = margin_logits(logits, y, c.aam_scale, margin) if c.loss == "aam" else logits
                ce = -tf.reduce_sum(target * tf.nn.log_softmax(z), axis=-1)
                penalty = tf.cast(out["penalty"], tf.float32)
                loss = tf.reduce_sum(ce + c.penalty_coef * penalty)
                scaled = loss * inv_n
            g = tape.gradient(scaled, tv)
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
            hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)), tf.float32))
            sums += tf.stack([loss, tf.reduce_sum(ce), tf.reduce_sum(penalty), hits])
        self.opt.apply(grads, tv)
        return sums

    def batches(self, sampler: TrainSampler, epoch: int):
        return iterate(EpochBatches(sampler, epoch), num_workers=self.config.num_workers)

    def train_step(self, x, y, lr: float) -> dict:
        """One optimizer step on the global batch ``(x, y)``; replica ``r`` gets its micro-batches
        (:func:`spkid.training.distributed.micro_batches`). Returns the global batch's mean statistics."""
        tf, n = self.tf, len(y)

        def pieces(ctx):
            parts = micro_batches(n, self.world, self.config.grad_accumulation, ctx.replica_id_in_sync_group)
            return tuple((tf.constant(x[a:b]), tf.constant(y[a:b])) for a, b, _ in parts)

        per_replica = self.strategy.experimental_distribute_values_from_function(pieces)
        sums = self._step(per_replica, tf.constant(1.0 / n, tf.float32), tf.constant(lr, tf.float32),
                          tf.constant(self.margin, tf.float32))
        return dict(zip(("loss", "ce", "penalty", "acc"), (float(v) / n for v in sums.numpy())))

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> dict:
        return _forward(self.model, x, lengths)

    def save(self, path: Path) -> None:
        state = {**_variables("model", self.model.variables), **_variables("opt", self.opt.variables)}
        with open(path, "wb") as fh:
            np.savez(fh, **state)

    def load(self, path: Path) -> None:
        state = _npz_load(path)
        _assign("model", self.model.variables, state, path)
        _assign("opt", self.opt.variables, state, path)

    def summary_writer(self, logdir: Path) -> Callable | None:
        try:  # tf.summary.scalar needs the tensorboard package: skip quietly without it
            import tensorboard  # noqa: F401
        except ImportError:
            return None
        writer = self.tf.summary.create_file_writer(str(logdir))

        def scalar(name: str, value: float, step: int) -> None:
            with writer.as_default():
                self.tf.summary.scalar(name, value, step=step)
            writer.flush()

        return scalar


def _forward(model, x: np.ndarray, lengths: np.ndarray | None) -> dict:
    out = _call(model, np.asarray(x, np.float32), None if lengths is None else np.asarray(lengths, np.int32), False)
    return {k: np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32) for k, v in out.items()}


def forward_fn(model) -> Callable[[np.ndarray, np.ndarray], dict]:
    """``f(x (B, T, n_mels), lengths (B,)) -> dict`` of numpy outputs, in inference mode."""
    return lambda x, lengths: _forward(model, x, lengths)


def fit(config: TrainConfig, train_set: FeatureSet, val_set: FeatureSet | None, out_dir: str | os.PathLike, *,
        resume: bool = False, callbacks: Sequence[Callable] = (), progress: bool = True, model=None) -> list[dict]:
    """Train ``config.model`` on ``train_set``; checkpoints in ``out_dir`` (see :mod:`spkid.training`).

    Returns the history (one dict per epoch). ``resume=True`` continues from the last complete
    checkpoint; on CPU with a fixed seed the final weights equal those of an uninterrupted run.
    ``model``: start from this model (its spec and n_classes must be the run's) instead of a fresh seeded
    initialisation, e.g. weights ported from the other backend.
    """
    return run_training(KerasAdapter(model), config, train_set, val_set, out_dir, resume=resume,
                        callbacks=callbacks, progress=progress)


def load_checkpoint(path: str | os.PathLike, *, prefer: str = "best"):
    """(model, metadata) from a run dir / metadata json / state file (verified sha256)."""
    meta, state = read_checkpoint(path, prefer=prefer)
    check_compatible(meta, {"backend": "keras"}, state)
    spec = model_spec(meta["model"], **meta["spec"])
    model = _build_model(spec, int(meta["n_classes"]), meta["model"])
    _assign("model", model.variables, _npz_load(state), state)
    return model, meta


def load_model(path: str | os.PathLike, *, prefer: str = "best"):
    """The model of a checkpoint (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, prefer=prefer)[0]
