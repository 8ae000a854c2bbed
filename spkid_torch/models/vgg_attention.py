"""VGG-style trunk of An, Thanh & Liu, "Deep CNNs With Self-Attention for Speaker Identification"
(IEEE Access 2019): blocks of ``convs_per_block`` x (3x3 conv, BN, ReLU) then a 2x2 max-pool (ceil mode,
so odd lengths keep their last frame; ``VGGSpec.time_pool`` may make it 1 x 2, keeping the frames).
300 x 40 input, channels 64/128/256/512 -> 19 x 3 x 512.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from spkid.models.specs import ModelSpec, conv_output_length

from .layers import ConvBN, mask_frames, relu_masked

__all__ = ["VGGTrunk"]


class VGGTrunk(nn.Module):
    """(B, 1, T, n_mels) -> (B, channels[-1], T', F'); module paths ``blocks.{i}.{j}.{conv,bn}``."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        blocks, c_in = [], 1
        for c in spec.vgg.channels:
            units = [ConvBN(c_in if j == 0 else c, c, 3, 1, spec) for j in range(spec.vgg.convs_per_block)]
            blocks.append(nn.ModuleList(units))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.time_strides = spec.vgg.time_strides()

    def forward(self, x, lengths=None, taps=None):
        """x (B, 1, T, F), lengths (B,) or None -> (B, C, T', F'), lengths (B,) or None.
        ``taps`` (a list) collects every block's output."""
        for block, st in zip(self.blocks, self.time_strides):
            for unit in block:
                x = relu_masked(unit(x), lengths)
            x = F.max_pool2d(x, (st, 2), ceil_mode=True)  # (B, C, T, F) -> (B, C, T/st, F/2)
            lengths = None if lengths is None else conv_output_length(lengths, st, st, 0, ceil_mode=True)
            x = mask_frames(x, lengths)
            if taps is not None:
                taps.append(x)
        return x, lengths
