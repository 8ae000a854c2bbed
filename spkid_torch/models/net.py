"""The whole speaker model: trunk -> fold -> self-attention pooling -> embedding -> classifier.

An, Thanh & Liu, "Deep CNNs With Self-Attention for Speaker Identification", IEEE Access 7 (2019).
The embedding is the output of a Linear layer (no BN, no activation: the plain affine output, as an
x-vector's "segment 6" pre-activation); the linear classifier sees ReLU(embedding), the AAM head
(``ModelSpec.head.type == "aam"``, :class:`~spkid_torch.models.layers.CosineClassifier`) the embedding
itself (a ReLU would confine the cosines to one orthant). Both backends do the same.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spkid.models.specs import ModelSpec, attention_input_dim

from .layers import CosineClassifier, ResNetTrunk, SelfAttentionPooling, mask_frames
from .resnet18 import BasicBlock
from .resnet50 import Bottleneck
from .vgg_attention import VGGTrunk

__all__ = ["SpeakerNet", "build_trunk"]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def build_trunk(spec: ModelSpec) -> nn.Module:
    """The CNN trunk of ``spec``: (B, 1, T, n_mels) -> (B, C, T', F')."""
    if spec.arch == "vgg":
        return VGGTrunk(spec)
    return ResNetTrunk(spec, _BLOCKS[spec.resnet.block])


class SpeakerNet(nn.Module):
    """Speaker-identification network built from a :class:`~spkid.models.specs.ModelSpec`.

    ``forward(x, lengths=None)``: x (B, T, n_mels) float32, lengths (B,) valid frames per example (frames
    past it are ignored; None = all valid) -> dict(logits (B, n_classes), embedding (B, embedding_dim),
    attention (B, hops, T'), penalty (B,)).
    """

    def __init__(self, spec: ModelSpec, n_classes: int, name: str = "speakernet"):
        super().__init__()
        self.spec, self.n_classes, self.name = spec, n_classes, name
        self.input_norm = (nn.BatchNorm1d(spec.n_mels, eps=spec.bn_eps, momentum=spec.bn_momentum)
                           if spec.input_norm else None)
        self.trunk = build_trunk(spec)
        a = spec.attention
        self.pool = SelfAttentionPooling(attention_input_dim(spec), a.d_a, a.hops, a.pool)
        self.embedding = nn.Linear(self.pool.output_dim, spec.embedding_dim)
        head = spec.head
        if head.type == "aam":
            self.classifier = CosineClassifier(spec.embedding_dim, n_classes, head.subcenters, head.scale)
        else:
            self.classifier = nn.Linear(spec.embedding_dim, n_classes)

    def frames(self, x: torch.Tensor, lengths=None, taps: list | None = None):
        """The trunk's output sequence H (B, T', C*F') and its valid lengths (B,) (or None).

        ``taps`` (a list) collects intermediate feature maps (B, C, T, F) (for cross-backend checks).
        """
        T = x.shape[1]
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device).long().clamp(1, T)
        if self.input_norm is not None:  # (B, T, F) -> (B, F, T) for BatchNorm1d over mel bins
            x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        x = mask_frames(x.unsqueeze(1), lengths)  # (B, T, F) -> (B, 1, T, F)
        h, lengths = self.trunk(x, lengths, taps)  # (B, C, T', F')
        b, c, t, f = h.shape
        h = h.permute(0, 2, 1, 3).reshape(b, t, c * f)  # (B, T', C, F') -> (B, T', C*F')
        return h, lengths

    def forward(self, x: torch.Tensor, lengths=None) -> dict[str, torch.Tensor]:
        h, lengths = self.frames(x, lengths)
        pooled, attention, penalty = self.pool(h, lengths)
        embedding = self.embedding(pooled)
        logits = self.classifier(embedding if self.spec.head.type == "aam" else F.relu(embedding))
        return {"logits": logits, "embedding": embedding, "attention": attention, "penalty": penalty}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_classes={self.n_classes}"
