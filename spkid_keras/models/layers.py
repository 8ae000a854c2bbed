"""Building blocks shared by the Keras models (mirrored name for name in ``spkid_torch.models.layers``).

Layout is NHWC: feature maps are (B, T, F, C). Every leaf layer (Conv2D, BatchNormalization, Dense) is
named with the PyTorch module path of its twin (e.g. ``trunk.stages.0.1.c2.conv``): that is the whole
weight-name map used by :mod:`spkid_keras.convert`.

- :class:`ConvBN`: explicit symmetric zero padding k // 2 + "valid" conv (no bias) + BatchNorm. Keras'
  ``padding="same"`` pads asymmetrically for stride 2 (nothing before, one after), PyTorch pads both
  sides; explicit padding makes the numbers equal.
- :class:`ResNetTrunk`, parametrised by its block class; :class:`SelfAttentionPooling` (Lin et al.,
  ICLR 2017), as used by An, Thanh & Liu, IEEE Access 2019.
- :class:`CosineClassifier`: the AAM head, ``scale * max_k cos(e, w_{c,k})`` (Deng et al., ArcFace, CVPR
  2019; sub-centres: Sub-center ArcFace, ECCV 2020); its weight keeps PyTorch's (C*K, E) layout.

Variable-length batches: as in PyTorch, frames past ``lengths`` are zeroed after every ReLU and pooling.
"""
from __future__ import annotations

from keras import layers, ops

from spkid.models.specs import (NORM_EPS, STATS_VAR_FLOOR, AttentionSpec, ModelSpec, conv_output_length,
                                pooled_dim)

__all__ = ["ConvBN", "ResNetTrunk", "SelfAttentionPooling", "CosineClassifier", "length_mask", "mask_frames",
           "relu_masked"]


def length_mask(lengths, T):
    """(B, T) bool, True where frame t < lengths[b]."""
    return ops.arange(T, dtype="int32")[None, :] < ops.cast(lengths, "int32")[:, None]


def mask_frames(x, lengths):
    """Zero the frames t >= lengths of x (B, T, F, C); identity when lengths is None."""
    if lengths is None:
        return x
    return x * ops.cast(length_mask(lengths, ops.shape(x)[1]), x.dtype)[:, :, None, None]


def relu_masked(x, lengths):
    return mask_frames(ops.relu(x), lengths)


def pad_frames(x, p: int):
    """Symmetric zero padding of p on time and frequency of x (B, T, F, C)."""
    return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]) if p else x


class Block(layers.Layer):
    """Base of the composite layers: sublayers build on their first call."""

    def build(self, input_shape):
        pass


class ConvBN(Block):
    """``kernel`` x ``kernel`` conv (stride ``stride``, symmetric padding kernel // 2, no bias) + BatchNorm.
    Leaf names ``{name}.conv`` and ``{name}.bn``."""

    def __init__(self, filters: int, kernel: int, stride: int, spec: ModelSpec, name: str):
        super().__init__(name=name)
        self.kernel, self.stride = kernel, stride
        self.conv = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}.conv")
        self.bn = layers.BatchNormalization(epsilon=spec.bn_eps, momentum=1.0 - spec.bn_momentum, name=f"{name}.bn")

    def call(self, x, training=False):
        return self.bn(self.conv(pad_frames(x, self.kernel // 2)), training=training)

    def out_lengths(self, lengths):
        """Valid output frames for ``lengths`` valid input frames."""
        if lengths is None:
            return None
        return conv_output_length(lengths, self.kernel, self.stride, self.kernel // 2)


class ResNetTrunk(Block):
    """Stem (``stem_kernel`` conv stride 2 + BN + ReLU + 3x3/2 max-pool), then stages of ``block``, as
    ``spkid_torch.models.layers.ResNetTrunk``. (B, T, n_mels, 1) -> (B, T', F', C)."""

    def __init__(self, spec: ModelSpec, block, name: str = "trunk"):
        super().__init__(name=name)
        r = spec.resnet
        self.stem = ConvBN(r.width, r.stem_kernel, 2, spec, name=f"{name}.stem")
        self.stages, c_in = [], r.width
        for i, depth in enumerate(r.depths):
            planes, stage = r.width * 2**i, []
            for j in range(depth):
                stage.append(block(c_in, planes, 2 if i > 0 and j == 0 else 1, spec, name=f"{name}.stages.{i}.{j}"))
                c_in = planes * block.expansion
            self.stages.append(stage)

    def call(self, x, lengths=None, taps=None, training=False):
        lengths = self.stem.out_lengths(lengths)
        x = relu_masked(self.stem(x, training=training), lengths)
        # PyTorch pads its max-pool with -inf; after ReLU (and masking) every value is >= 0, so zero
        # padding gives the same maxima.
        x = ops.max_pool(pad_frames(x, 1), 3, strides=2, padding="valid")
        lengths = None if lengths is None else conv_output_length(lengths, 3, 2, 1)
        x = mask_frames(x, lengths)
        if taps is not None:
            taps.append(x)
        for stage in self.stages:
            for blk in stage:
                x, lengths = blk(x, lengths, training=training)
            if taps is not None:
                taps.append(x)
        return x, lengths


class SelfAttentionPooling(Block):
    """Structured self-attention (Lin et al., ICLR 2017): A = softmax_T(W2 tanh(W1 H^T)), M = A H.

    ``h`` (B, T, u), ``lengths`` (B,) or None -> pooled (B, u) (``pool="mean"``), (B, r*u)
    (``"concat"``) or (B, 2u) (``"stats"``: hop-averaged weighted means and standard deviations), attention (B, r, T) (softmax over time; padded frames get exactly 0), penalty (B,)
    = ||A A^T - I||_F^2. Leaf names ``{name}.w1``, ``{name}.w2`` (Dense without bias).
    """

    def __init__(self, input_dim: int, d_a: int, hops: int, pool: str = "mean", name: str = "pool"):
        super().__init__(name=name)
        self.hops, self.pool = hops, pool
        self.w1 = layers.Dense(d_a, use_bias=False, name=f"{name}.w1")
        self.w2 = layers.Dense(hops, use_bias=False, name=f"{name}.w2")
        self.output_dim = pooled_dim(input_dim, AttentionSpec(hops=hops, d_a=d_a, pool=pool))

    def call(self, h, lengths=None):
        scores = ops.transpose(self.w2(ops.tanh(self.w1(h))), (0, 2, 1))  # (B, T, r) -> (B, r, T)
        if lengths is not None:
            valid = length_mask(lengths, ops.shape(h)[1])[:, None, :]
            scores = ops.where(valid, scores, ops.full_like(scores, float("-inf")))
        # softmax over time, written out: ops.softmax warns when T' == 1 (short clips), where A = 1 is right
        e = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        a = e / ops.sum(e, axis=-1, keepdims=True)
        m = ops.matmul(a, h)  # (B, r, u)
        if self.pool == "stats":
            var = ops.matmul(a, ops.square(h)) - ops.square(m)
            std = ops.sqrt(ops.maximum(var, STATS_VAR_FLOOR))  # (B, r, u)
            pooled = ops.concatenate([ops.mean(m, axis=1), ops.mean(std, axis=1)], axis=-1)  # (B, 2u)
        elif self.pool == "mean":
            pooled = ops.mean(m, axis=1)  # (B, u)
        else:
            pooled = ops.reshape(m, (-1, self.output_dim))  # (B, r*u)
        gram = ops.matmul(a, ops.transpose(a, (0, 2, 1))) - ops.eye(self.hops, dtype=a.dtype)
        penalty = ops.sum(ops.square(gram), axis=(1, 2))  # (B,)
        return pooled, a, penalty


def l2_normalize(v):
    """``v / max(||v||, NORM_EPS)`` over the last axis (as ``torch.nn.functional.normalize``)."""
    return v / ops.maximum(ops.sqrt(ops.sum(ops.square(v), axis=-1, keepdims=True)), NORM_EPS)


class CosineClassifier(layers.Layer):
    """The AAM head, twin of ``spkid_torch.models.layers.CosineClassifier`` (Deng et al., ArcFace, CVPR
    2019; Sub-center ArcFace, ECCV 2020): variable ``weight`` (C*K, E) in PyTorch's layout (rows
    ``c*K .. c*K+K-1`` are class c's centres; Glorot-uniform init). ``e`` (B, E) -> ``scale * max_k
    cos(e, w_{c,k})`` (B, C); no margin here (training applies it: ``spkid_keras.losses``)."""

    def __init__(self, embedding_dim: int, n_classes: int, subcenters: int = 1, scale: float = 30.0,
                 name: str = "classifier"):
        super().__init__(name=name)
        self.embedding_dim, self.n_classes, self.subcenters, self.scale = embedding_dim, n_classes, subcenters, scale
        self.use_bias = False

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(self.n_classes * self.subcenters, self.embedding_dim),
                                      initializer="glorot_uniform", name="weight")

    def call(self, e):
        cos = ops.matmul(l2_normalize(e), ops.transpose(l2_normalize(self.weight)))  # (B, C*K)
        if self.subcenters > 1:
            cos = ops.max(ops.reshape(cos, (-1, self.n_classes, self.subcenters)), axis=-1)
        return self.scale * cos
