"""Building blocks shared by the PyTorch models (mirrored name for name in ``spkid_keras.models.layers``).

- :class:`ConvBN`: k x k conv (no bias, symmetric padding k // 2) + BatchNorm.
- :class:`ResNetTrunk`: the torchvision-style ResNet trunk, parametrised by its block class
  (:class:`~spkid_torch.models.resnet18.BasicBlock` or :class:`~spkid_torch.models.resnet50.Bottleneck`).
- :class:`SelfAttentionPooling`: structured multi-hop self-attention (Lin et al., ICLR 2017), as used
  for temporal pooling by An, Thanh & Liu, IEEE Access 2019.
- :class:`CosineClassifier`: the AAM head, ``scale * max_k cos(e, w_{c,k})`` (Deng et al., ArcFace, CVPR
  2019; sub-centres: Sub-center ArcFace, ECCV 2020).

Variable-length batches: every trunk takes ``lengths`` (B,) valid frames at its input and zeroes the
frames past the valid length after every ReLU and pooling, so in eval mode a padded example gives exactly
the output of the same example unpadded (the convs see zeros where the unpadded one sees zero padding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spkid.models.specs import (NORM_EPS, STATS_VAR_FLOOR, AttentionSpec, ModelSpec, conv_output_length,
                                pooled_dim)

__all__ = ["ConvBN", "ResNetTrunk", "SelfAttentionPooling", "CosineClassifier", "length_mask", "mask_frames",
           "relu_masked"]


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True where frame t < lengths[b]."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def mask_frames(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero the frames t >= lengths of x (B, C, T, F); identity when lengths is None."""
    if lengths is None:
        return x
    return x * length_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)


def relu_masked(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return mask_frames(F.relu(x), lengths)


class ConvBN(nn.Module):
    """``kernel`` x ``kernel`` conv (stride ``stride``, padding kernel // 2, no bias) + BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, spec: ModelSpec):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=spec.bn_eps, momentum=spec.bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def out_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """Valid output frames for ``lengths`` valid input frames."""
        if lengths is None:
            return None
        return conv_output_length(lengths, self.kernel, self.stride, self.kernel // 2)


class ResNetTrunk(nn.Module):
    """Stem (``stem_kernel`` conv stride 2 + BN + ReLU + 3x3/2 max-pool), then ``len(depths)`` stages of
    ``block``; stage i has ``width * 2**i`` planes and stride 2 in its first block for i > 0.

    Input (B, 1, T, n_mels) -> output (B, C, T', F') with C = width * 2**(stages-1) * expansion.
    """

    def __init__(self, spec: ModelSpec, block: type[nn.Module]):
        super().__init__()
        r = spec.resnet
        self.stem = ConvBN(1, r.width, r.stem_kernel, 2, spec)
        stages, c_in = [], r.width
        for i, depth in enumerate(r.depths):
            planes = r.width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(c_in, planes, 2 if i > 0 and j == 0 else 1, spec))
                c_in = planes * block.expansion
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x, lengths=None, taps=None):
        """x (B, 1, T, F), lengths (B,) or None -> (B, C, T', F'), lengths (B,) or None.
        ``taps`` (a list) collects the stem's and every stage's output."""
        lengths = self.stem.out_lengths(lengths)
        x = relu_masked(self.stem(x), lengths)
        x = F.max_pool2d(x, 3, 2, 1)  # after ReLU + masking all values are >= 0
        lengths = None if lengths is None else conv_output_length(lengths, 3, 2, 1)
        x = mask_frames(x, lengths)
        if taps is not None:
            taps.append(x)
        for stage in self.stages:
            for blk in stage:
                x, lengths = blk(x, lengths)
            if taps is not None:
                taps.append(x)
        return x, lengths


class SelfAttentionPooling(nn.Module):
    """Structured self-attention (Lin et al., ICLR 2017): A = softmax_T(W2 tanh(W1 H^T)), M = A H.

    ``h`` (B, T, u), ``lengths`` (B,) valid frames or None -> pooled (B, u) for ``pool="mean"`` (mean of
    the r hop vectors), (B, r*u) for ``pool="concat"``, or (B, 2u) for ``pool="stats"`` (mean over hops
    of the weighted means M and of the weighted standard deviations sqrt(A (H*H) - M*M)), attention A
    (B, r, T) (softmax over time; padded frames get exactly 0), penalty (B,) = ||A A^T - I||_F^2.
    """

    def __init__(self, input_dim: int, d_a: int, hops: int, pool: str = "mean"):
        super().__init__()
        self.hops, self.pool = hops, pool
        self.w1 = nn.Linear(input_dim, d_a, bias=False)
        self.w2 = nn.Linear(d_a, hops, bias=False)
        self.output_dim = pooled_dim(input_dim, AttentionSpec(hops=hops, d_a=d_a, pool=pool))

    def forward(self, h: torch.Tensor, lengths: torch.Tensor | None = None):
        scores = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)  # (B, T, r) -> (B, r, T)
        if lengths is not None:
            scores = scores.masked_fill(~length_mask(lengths, h.shape[1])[:, None, :], float("-inf"))
        a = torch.softmax(scores, dim=-1)  # over time
        m = a @ h  # (B, r, u)
        if self.pool == "stats":
            std = torch.sqrt(torch.clamp(a @ (h * h) - m * m, min=STATS_VAR_FLOOR))  # (B, r, u)
            pooled = torch.cat([m.mean(dim=1), std.mean(dim=1)], dim=-1)  # (B, 2u)
        else:
            pooled = m.mean(dim=1) if self.pool == "mean" else m.flatten(1)  # (B, u) or (B, r*u)
        eye = torch.eye(self.hops, dtype=a.dtype, device=a.device)
        penalty = ((a @ a.transpose(1, 2) - eye) ** 2).sum(dim=(1, 2))  # (B,)
        return pooled, a, penalty


class CosineClassifier(nn.Module):
    """The AAM head (Deng et al., ArcFace, CVPR 2019; Sub-center ArcFace, ECCV 2020): ``weight``
    (C*K, E), rows ``c*K .. c*K+K-1`` the K = ``subcenters`` centres of class c (Xavier-uniform init).

    ``e`` (B, E) -> ``scale * max_k cos(e, w_{c,k})`` (B, C), both vectors L2-normalised
    (``v / max(||v||, NORM_EPS)``). No margin here: training applies it (``spkid_torch.losses``).
    """

    def __init__(self, embedding_dim: int, n_classes: int, subcenters: int = 1, scale: float = 30.0):
        super().__init__()
        self.n_classes, self.subcenters, self.scale = n_classes, subcenters, scale
        self.weight = nn.Parameter(torch.empty(n_classes * subcenters, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(e, dim=-1, eps=NORM_EPS) @ F.normalize(self.weight, dim=-1, eps=NORM_EPS).t()
        if self.subcenters > 1:
            cos = cos.view(cos.shape[0], self.n_classes, self.subcenters).amax(dim=-1)
        return self.scale * cos

    def extra_repr(self) -> str:
        return f"embedding_dim={self.weight.shape[1]}, n_classes={self.n_classes}, subcenters={self.subcenters}, " \
               f"scale={self.scale}"
