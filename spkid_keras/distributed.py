"""Keras data-parallel training with ``tf.distribute`` (rules in :mod:`spkid.training.distributed`).

``TrainConfig(devices="N")`` trains under ``tf.distribute.MirroredStrategy`` on N local GPUs (or N
logical CPU devices when fewer GPUs are visible: the CPU is split if TensorFlow has not started yet), the same model code and the same custom training
step (``strategy.run`` per replica, gradients summed across replicas by the Keras optimizer). BatchNorm
layers are switched to ``synchronized=True`` (Keras 3's replacement for ``SyncBatchNormalization``):
their batch statistics are the global batch's, so N replicas compute exactly what one device computes
with the batch in one piece.

Several machines: set ``TF_CONFIG`` on each (``{"cluster": {"worker": ["host1:12345", "host2:12345"]},
"task": {"type": "worker", "index": 0}}``, index 1 on the second) and run the same ``spkid train
--backend keras`` command everywhere: with ``TF_CONFIG`` set, ``tf.distribute.MultiWorkerMirroredStrategy``
is used and worker 0 (or the chief) writes the checkpoints (documented, not tested here).
"""
from __future__ import annotations

import json
import os

import keras

from spkid.training.distributed import device_count
from spkid.errors import ConfigError

__all__ = ["strategy_for", "is_main", "sync_batchnorm"]


def strategy_for(devices: str):
    """The ``tf.distribute`` strategy for a ``TrainConfig.devices`` value (the default one for one device)."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    n = device_count(devices)
    if n <= 1:
        return tf.distribute.get_strategy()
    if len(tf.config.list_physical_devices("GPU")) < n:  # data parallel on N logical CPU devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or []) < n:
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
            except RuntimeError:  # TensorFlow has started: the count below reports it
                pass
    gpus = tf.config.list_logical_devices("GPU")
    pool = gpus if len(gpus) >= n else tf.config.list_logical_devices("CPU")
    if len(pool) < n:
        raise ConfigError(f"devices={n}: only {len(gpus)} GPU and {len(pool)} CPU devices are visible (split a "
                          "CPU with tf.config.set_logical_device_configuration before TensorFlow starts)")
    return tf.distribute.MirroredStrategy([d.name for d in pool[:n]])


def is_main(strategy) -> bool:
    """Whether this process writes checkpoints and logs: always for one process; under TF_CONFIG the chief,
    or worker 0 when the cluster has no chief."""
    if not os.environ.get("TF_CONFIG"):
        return True
    cfg = json.loads(os.environ["TF_CONFIG"])
    task = cfg.get("task", {})
    if "chief" in cfg.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def sync_batchnorm(model) -> None:
    """Make every BatchNormalization layer of ``model`` use cross-replica batch statistics."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
