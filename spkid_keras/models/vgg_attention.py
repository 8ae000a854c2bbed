"""VGG-style trunk of An, Thanh & Liu, "Deep CNNs With Self-Attention for Speaker Identification"
(IEEE Access 2019), as ``spkid_torch.models.vgg_attention``: blocks of ``convs_per_block`` x (3x3 conv,
BN, ReLU) then a 2x2 max-pool (1 x 2 where ``VGGSpec.time_pool`` says 1). 300 x 40 input, channels 64/128/256/512 -> 19 x 3 x 512.
"""
from __future__ import annotations

from keras import ops

from spkid.models.specs import ModelSpec, conv_output_length

from .layers import Block, ConvBN, mask_frames, relu_masked

__all__ = ["VGGTrunk"]


class VGGTrunk(Block):
    """(B, T, n_mels, 1) -> (B, T', F', channels[-1]); leaf names ``trunk.blocks.{i}.{j}.{conv,bn}``."""

    def __init__(self, spec: ModelSpec, name: str = "trunk"):
        super().__init__(name=name)
        n = spec.vgg.convs_per_block
        self.blocks = [
            [ConvBN(c, 3, 1, spec, name=f"{name}.blocks.{i}.{j}") for j in range(n)]
            for i, c in enumerate(spec.vgg.channels)
        ]
        self.time_strides = spec.vgg.time_strides()

    def call(self, x, lengths=None, taps=None, training=False):
        for block, st in zip(self.blocks, self.time_strides):
            for unit in block:
                x = relu_masked(unit(x, training=training), lengths)
            # (st x 2)/(st, 2) "same" pooling = PyTorch's ceil_mode=True: an odd last frame is pooled alone
            x = ops.max_pool(x, (st, 2), strides=(st, 2), padding="same")  # (B, T/st, F/2, C)
            lengths = None if lengths is None else conv_output_length(lengths, st, st, 0, ceil_mode=True)
            x = mask_frames(x, lengths)
            if taps is not None:
                taps.append(x)
        return x, lengths
