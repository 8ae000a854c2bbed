"""ResNet18 trunk (He et al., CVPR 2016) as adapted to spectrograms by An, Thanh & Liu (IEEE Access 2019):
:class:`BasicBlock` in the shared :class:`~spkid_keras.models.layers.ResNetTrunk` (as ``spkid_torch``).
"""
from __future__ import annotations

from spkid.models.specs import ModelSpec

from .layers import Block, ConvBN, relu_masked

__all__ = ["BasicBlock"]


class BasicBlock(Block):
    """3x3 conv (stride) + BN + ReLU, 3x3 conv + BN, plus the shortcut (1x1 conv + BN ``proj`` when the
    shape changes), ReLU."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, spec: ModelSpec, name: str):
        super().__init__(name=name)
        self.c1 = ConvBN(planes, 3, stride, spec, name=f"{name}.c1")
        self.c2 = ConvBN(planes, 3, 1, spec, name=f"{name}.c2")
        self.proj = ConvBN(planes, 1, stride, spec, name=f"{name}.proj") if stride != 1 or c_in != planes else None

    def call(self, x, lengths=None, training=False):
        """x (B, T, F, c_in) -> (B, T', F', planes), valid lengths T'_len (or None)."""
        out_lengths = self.c1.out_lengths(lengths)
        y = self.c2(relu_masked(self.c1(x, training=training), out_lengths), training=training)
        shortcut = x if self.proj is None else self.proj(x, training=training)
        return relu_masked(y + shortcut, out_lengths), out_lengths
