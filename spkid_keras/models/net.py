"""The whole speaker model in Keras: trunk -> fold -> self-attention pooling -> embedding -> classifier.

An, Thanh & Liu, "Deep CNNs With Self-Attention for Speaker Identification", IEEE Access 7 (2019).
Numerically the twin of ``spkid_torch.models.net.SpeakerNet`` (weights port with
:mod:`spkid_keras.convert`): the embedding is a Dense output (no BN / activation), the linear classifier
sees ReLU(embedding), the AAM head (:class:`~spkid_keras.models.layers.CosineClassifier`) the embedding.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from spkid.models.specs import ModelSpec, attention_input_dim

from .layers import CosineClassifier, ResNetTrunk, SelfAttentionPooling, mask_frames
from .resnet18 import BasicBlock
from .resnet50 import Bottleneck
from .vgg_attention import VGGTrunk

__all__ = ["SpeakerNet", "build_trunk"]

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def build_trunk(spec: ModelSpec):
    """The CNN trunk of ``spec``: (B, T, n_mels, 1) -> (B, T', F', C)."""
    if spec.arch == "vgg":
        return VGGTrunk(spec)
    return ResNetTrunk(spec, _BLOCKS[spec.resnet.block])


@keras.saving.register_keras_serializable(package="spkid")
class SpeakerNet(keras.Model):
    """Speaker-identification network built from a :class:`~spkid.models.specs.ModelSpec`.

    ``call(x, lengths=None, training=False)``: x (B, T, n_mels) float32 (any T), lengths (B,) valid
    frames per example (None = all valid) -> dict(logits (B, n_classes), embedding (B, embedding_dim),
    attention (B, hops, T'), penalty (B,)). Built (all weights created) on construction.
    """

    def __init__(self, spec: ModelSpec | dict, n_classes: int, name: str = "speakernet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        self.n_classes = n_classes
        self.input_norm = (layers.BatchNormalization(epsilon=self.spec.bn_eps, momentum=1.0 - self.spec.bn_momentum,
                                                     name="input_norm") if self.spec.input_norm else None)
        self.trunk = build_trunk(self.spec)
        a = self.spec.attention
        self.pool = SelfAttentionPooling(attention_input_dim(self.spec), a.d_a, a.hops, a.pool)
        self.embedding = layers.Dense(self.spec.embedding_dim, name="embedding")
        head = self.spec.head
        if head.type == "aam":
            self.classifier = CosineClassifier(self.spec.embedding_dim, n_classes, head.subcenters, head.scale)
        else:
            self.classifier = layers.Dense(n_classes, name="classifier")
        self.build((None, None, self.spec.n_mels))

    def build(self, input_shape):
        # one eager pass on a short dummy input creates every weight (shapes do not depend on T)
        self.call(ops.zeros((1, 64, self.spec.n_mels)))

    def frames(self, x, lengths=None, taps: list | None = None, training=False):
        """The trunk's output sequence H (B, T', C*F') and its valid lengths (B,) (or None).

        ``taps`` (a list) collects intermediate feature maps (B, T, F, C) (for cross-backend checks).
        """
        x = ops.convert_to_tensor(x, "float32")
        T = ops.shape(x)[1]
        if lengths is not None:
            lengths = ops.clip(ops.cast(ops.convert_to_tensor(lengths), "int32"), 1, T)
        if self.input_norm is not None:  # over mel bins (last axis)
            x = self.input_norm(x, training=training)
        x = mask_frames(x[..., None], lengths)  # (B, T, F) -> (B, T, F, 1)
        if taps is None:
            h, lengths = self.trunk(x, lengths, training=training)  # (B, T', F', C)
        else:  # bypass __call__, which may copy list arguments
            h, lengths = self.trunk.call(x, lengths, taps=taps, training=training)
        _, _, f, c = h.shape  # F', C are static; T' may not be
        h = ops.transpose(h, (0, 1, 3, 2))  # (B, T', F', C) -> (B, T', C, F'), PyTorch's order
        h = ops.reshape(h, (ops.shape(h)[0], -1, c * f))  # -> (B, T', C*F')
        return h, lengths

    def call(self, x, lengths=None, training=False):
        h, lengths = self.frames(x, lengths, training=training)
        pooled, attention, penalty = self.pool(h, lengths)
        embedding = self.embedding(pooled)
        logits = self.classifier(embedding if self.spec.head.type == "aam" else ops.relu(embedding))
        return {"logits": logits, "embedding": embedding, "attention": attention, "penalty": penalty}

    def get_config(self) -> dict:
        return {"spec": self.spec.to_dict(), "n_classes": self.n_classes, "name": self.name}
