"""Additive angular margin softmax in Keras 3 / TensorFlow (Deng et al., ArcFace, CVPR 2019; sub-centres:
Deng et al., Sub-center ArcFace, ECCV 2020): the twin of :func:`spkid.training.losses.margin_logits`
(the float64 numpy reference; the formulation, the theta + m > pi rule and the margin schedule are there).
"""
from __future__ import annotations

import math

from keras import ops

from spkid.training.losses import SIN_FLOOR

__all__ = ["margin_logits"]


def margin_logits(logits, labels, scale: float, margin):
    """The AAM training logits from the head's ``logits = scale * cos(theta)`` (B, C): the target class's
    becomes ``scale * cos(theta + m)`` (``scale * (cos(theta) - m sin(m))`` where theta + m > pi), the
    others are unchanged. ``margin`` may be a float or a scalar tensor (one traced step for every epoch's
    margin)."""
    logits = ops.convert_to_tensor(logits, "float32")
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype=logits.dtype)
    target = ops.sum(logits * onehot, axis=-1)  # (B,)
    m = ops.cast(margin, logits.dtype)
    cos = ops.clip(target / scale, -1.0, 1.0)
    sin = ops.sqrt(ops.clip(1.0 - cos * cos, SIN_FLOOR, 1.0))
    psi = cos * ops.cos(m) - sin * ops.sin(m)
    psi = ops.where(cos > ops.cos(math.pi - m), psi, cos - m * ops.sin(m))
    return ops.where(onehot > 0, (scale * psi)[:, None], logits)
