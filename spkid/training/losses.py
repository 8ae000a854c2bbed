"""Additive angular margin (AAM) softmax, framework-free: the float64 numpy reference both backends are
tested against, and the margin schedule both use.

ArcFace (Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
CVPR 2019); sub-centres: Deng et al., "Sub-center ArcFace", ECCV 2020. With the embedding e and the class
weights w_c L2-normalised, ``cos(theta_c) = <e, w_c> / (||e|| ||w_c||)`` (the closest of K sub-centres,
``max_k``, when the head has K > 1), the logits are

    z_c = s * cos(theta_c)                 for c != y (and for every class at inference)
    z_y = s * psi(theta_y),   psi(theta) = cos(theta + m)        if theta + m <= pi (cos(theta) > cos(pi - m))
                                           cos(theta) - m sin(m)  otherwise

then cross-entropy (with the configured label smoothing). The second branch is ArcFace's official
(insightface / wespeaker ``easy_margin=False``) fallback that keeps the target logit decreasing in theta
where cos(theta + m) would turn back up. ``sin(theta) = sqrt(clip(1 - cos^2, SIN_FLOOR, 1))`` (the
floor keeps the gradient finite at cos = +-1). ``m = 0`` gives the plain scaled-cosine softmax.

The model's ``logits`` output is ``s * cos(theta)`` (no margin); training turns it into the margin
logits with :func:`margin_logits` (its twins ``spkid_torch.losses.margin_logits`` and
``spkid_keras.losses.margin_logits``), so evaluation, embeddings and inference are unchanged.

Margin warm-up (:func:`margin_at`): linear per epoch, ``m_e = m * min(1, e / W)`` for 0-based epoch e
and ``W = aam_margin_warmup_epochs`` (epoch 0 trains with m = 0, epoch W and later with the full m;
W = 0: the full margin from the start).
"""
from __future__ import annotations

import math

import numpy as np

from spkid.models.specs import NORM_EPS

__all__ = ["SIN_FLOOR", "l2_normalize", "cosine_logits", "margin_logits", "aam_logits", "cross_entropy",
           "aam_loss", "margin_at"]

#: Floor on 1 - cos^2 before the square root of sin(theta) (both backends and this reference).
SIN_FLOOR = 1e-9


def l2_normalize(v: np.ndarray, axis: int = -1) -> np.ndarray:
    """``v / max(||v||, NORM_EPS)`` along ``axis`` (float64)."""
    v = np.asarray(v, np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), NORM_EPS)


def cosine_logits(embedding: np.ndarray, weight: np.ndarray, subcenters: int = 1) -> np.ndarray:
    """(B, C) cosines between the embeddings (B, E) and the classes of ``weight`` (C*K, E), the maximum
    over each class's K = ``subcenters`` consecutive rows."""
    cos = l2_normalize(embedding) @ l2_normalize(weight).T  # (B, C*K)
    b, ck = cos.shape
    return cos.reshape(b, ck // subcenters, subcenters).max(axis=-1)


def margin_logits(logits: np.ndarray, labels: np.ndarray, scale: float, margin: float) -> np.ndarray:
    """The AAM training logits from the head's ``logits = scale * cos(theta)`` (B, C): the target class's
    replaced by ``scale * psi(theta_y)`` (see the module docstring), the others unchanged."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    cos = np.clip(logits[rows, labels] / scale, -1.0, 1.0)
    sin = np.sqrt(np.clip(1.0 - cos * cos, SIN_FLOOR, 1.0))
    psi = cos * math.cos(margin) - sin * math.sin(margin)
    psi = np.where(cos > math.cos(math.pi - margin), psi, cos - margin * math.sin(margin))
    out = logits.copy()
    out[rows, labels] = scale * psi
    return out


def aam_logits(embedding: np.ndarray, weight: np.ndarray, labels: np.ndarray, scale: float, margin: float,
               subcenters: int = 1) -> np.ndarray:
    """The AAM training logits (B, C) of embeddings (B, E) against class weights (C*K, E)."""
    return margin_logits(scale * cosine_logits(embedding, weight, subcenters), labels, scale, margin)


def cross_entropy(logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0) -> np.ndarray:
    """Per-example cross-entropy (B,) with label smoothing as PyTorch's ``F.cross_entropy``: the target
    is ``(1 - eps) * onehot + eps / C``."""
    logits = np.asarray(logits, np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = logits.shape[1]
    target = np.full(logits.shape, label_smoothing / n)
    target[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    return -(target * logp).sum(axis=1)


def aam_loss(embedding: np.ndarray, weight: np.ndarray, labels: np.ndarray, scale: float, margin: float,
             subcenters: int = 1, label_smoothing: float = 0.0) -> float:
    """Mean AAM cross-entropy of a batch (no attention penalty: training adds ``penalty_coef * mean``)."""
    z = aam_logits(embedding, weight, labels, scale, margin, subcenters)
    return float(cross_entropy(z, labels, label_smoothing).mean())


def margin_at(margin: float, warmup_epochs: int, epoch: int) -> float:
    """The margin of 0-based ``epoch``: ``margin * min(1, epoch / warmup_epochs)`` (``margin`` when
    ``warmup_epochs`` is 0)."""
    if warmup_epochs <= 0:
        return float(margin)
    return float(margin) * min(1.0, epoch / warmup_epochs)
