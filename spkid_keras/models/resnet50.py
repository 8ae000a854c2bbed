"""ResNet50 trunk (He et al., CVPR 2016) as adapted to spectrograms by An, Thanh & Liu (IEEE Access 2019):
:class:`Bottleneck` (stride on the 3x3) in the shared :class:`~spkid_keras.models.layers.ResNetTrunk`.
"""
from __future__ import annotations

from spkid.models.specs import ModelSpec

from .layers import Block, ConvBN, relu_masked

__all__ = ["Bottleneck"]


class Bottleneck(Block):
    """1x1 conv + BN + ReLU, 3x3 conv (stride) + BN + ReLU, 1x1 conv (x4) + BN, plus the shortcut
    (1x1 conv + BN ``proj`` when the shape changes), ReLU."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, spec: ModelSpec, name: str):
        super().__init__(name=name)
        c_out = planes * self.expansion
        self.c1 = ConvBN(planes, 1, 1, spec, name=f"{name}.c1")
        self.c2 = ConvBN(planes, 3, stride, spec, name=f"{name}.c2")
        self.c3 = ConvBN(c_out, 1, 1, spec, name=f"{name}.c3")
        self.proj = ConvBN(c_out, 1, stride, spec, name=f"{name}.proj") if stride != 1 or c_in != c_out else None

    def call(self, x, lengths=None, training=False):
        """x (B, T, F, c_in) -> (B, T', F', 4 * planes), valid lengths T'_len (or None)."""
        out_lengths = self.c2.out_lengths(lengths)
        y = relu_masked(self.c1(x, training=training), lengths)
        y = self.c3(relu_masked(self.c2(y, training=training), out_lengths), training=training)
        shortcut = x if self.proj is None else self.proj(x, training=training)
        return relu_masked(y + shortcut, out_lengths), out_lengths
