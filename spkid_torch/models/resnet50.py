"""ResNet50 trunk (He et al., CVPR 2016) as adapted to spectrograms by An, Thanh & Liu (IEEE Access 2019):
:class:`Bottleneck` (1x1, 3x3, 1x1 x4; stride on the 3x3 as torchvision) in the shared
:class:`~spkid_torch.models.layers.ResNetTrunk`. 300 x 40 input, width 32 -> 10 x 2 x 1024.
"""
from __future__ import annotations

from torch import nn

from spkid.models.specs import ModelSpec

from .layers import ConvBN, relu_masked

__all__ = ["Bottleneck"]


class Bottleneck(nn.Module):
    """1x1 conv + BN + ReLU, 3x3 conv (stride) + BN + ReLU, 1x1 conv (x4 channels) + BN, plus the shortcut
    (1x1 conv + BN ``proj`` when the shape changes), ReLU. Module paths ``c1``, ``c2``, ``c3``, ``proj``."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, spec: ModelSpec):
        super().__init__()
        c_out = planes * self.expansion
        self.c1 = ConvBN(c_in, planes, 1, 1, spec)
        self.c2 = ConvBN(planes, planes, 3, stride, spec)
        self.c3 = ConvBN(planes, c_out, 1, 1, spec)
        self.proj = ConvBN(c_in, c_out, 1, stride, spec) if stride != 1 or c_in != c_out else None

    def forward(self, x, lengths=None):
        """x (B, c_in, T, F) -> (B, 4 * planes, T', F'), valid lengths T'_len (or None)."""
        out_lengths = self.c2.out_lengths(lengths)
        y = relu_masked(self.c1(x), lengths)
        y = self.c3(relu_masked(self.c2(y), out_lengths))
        shortcut = x if self.proj is None else self.proj(x)
        return relu_masked(y + shortcut, out_lengths), out_lengths
