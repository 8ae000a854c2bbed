"""Additive angular margin softmax in PyTorch (Deng et al., ArcFace, CVPR 2019; sub-centres: Deng et
al., Sub-center ArcFace, ECCV 2020): the twin of :func:`spkid.training.losses.margin_logits` (the
float64 numpy reference; the formulation, the theta + m > pi rule and the margin schedule are there).
"""
from __future__ import annotations

import math

import torch

from spkid.training.losses import SIN_FLOOR

__all__ = ["margin_logits"]


def margin_logits(logits: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """The AAM training logits from the head's ``logits = scale * cos(theta)`` (B, C): the target class's
    becomes ``scale * cos(theta + m)`` (``scale * (cos(theta) - m sin(m))`` where theta + m > pi), the
    others are unchanged. Differentiable; cross-entropy on the result is the AAM loss."""
    labels = labels.long()
    target = logits.gather(1, labels[:, None])  # (B, 1)
    cos = torch.clamp(target / scale, -1.0, 1.0)
    sin = torch.sqrt(torch.clamp(1.0 - cos * cos, SIN_FLOOR, 1.0))
    psi = cos * math.cos(margin) - sin * math.sin(margin)
    psi = torch.where(cos > math.cos(math.pi - margin), psi, cos - margin * math.sin(margin))
    return logits.scatter(1, labels[:, None], scale * psi)
