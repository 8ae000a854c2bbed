"""ResNet18 trunk (He et al., CVPR 2016) as adapted to spectrograms by An, Thanh & Liu (IEEE Access 2019):
:class:`BasicBlock` (3x3, 3x3) in the shared :class:`~spkid_torch.models.layers.ResNetTrunk`.
300 x 40 input, width 32 -> 10 x 2 x 256.
"""
from __future__ import annotations

from torch import nn

from spkid.models.specs import ModelSpec

from .layers import ConvBN, relu_masked

__all__ = ["BasicBlock"]


class BasicBlock(nn.Module):
    """3x3 conv (stride) + BN + ReLU, 3x3 conv + BN, plus the shortcut (1x1 conv + BN ``proj`` when the
    shape changes), ReLU. Module paths ``c1``, ``c2``, ``proj``."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, spec: ModelSpec):
        super().__init__()
        self.c1 = ConvBN(c_in, planes, 3, stride, spec)
        self.c2 = ConvBN(planes, planes, 3, 1, spec)
        self.proj = ConvBN(c_in, planes, 1, stride, spec) if stride != 1 or c_in != planes else None

    def forward(self, x, lengths=None):
        """x (B, c_in, T, F) -> (B, planes, T', F'), valid lengths T'_len (or None)."""
        out_lengths = self.c1.out_lengths(lengths)
        y = self.c2(relu_masked(self.c1(x), out_lengths))
        shortcut = x if self.proj is None else self.proj(x)
        return relu_masked(y + shortcut, out_lengths), out_lengths
