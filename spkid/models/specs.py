"""Architecture specs: the single source of truth both backends build their models from.

An, Thanh & Liu, "Deep CNNs With Self-Attention for Speaker Identification", IEEE Access 7 (2019):
VGG-style and ResNet CNNs over log-mel filterbanks, with temporal pooling replaced by structured
multi-hop self-attention (Lin et al., ICLR 2017). The defaults follow the public re-implementation
(input 300 frames x 40 mels, VGG 64/128/256/512, ResNet18 stem 32 channels, r = 4 hops, d_a = 256,
embedding 256).

Input convention in both backends: features of shape (batch, time, n_mels), float32.
Model outputs in both backends (same names): ``logits`` (B, n_classes), ``embedding`` (B, embedding_dim),
``attention`` (B, hops, T'), ``penalty`` (B,) -- the per-example ||A A^T - I||_F^2; training adds
``penalty_coef * mean(penalty)`` to the loss.

Classifier head (:class:`HeadSpec`): ``"linear"`` (the default: a Linear layer on ReLU(embedding), as in
every model before margin losses) or ``"aam"``, the cosine classifier of additive angular margin softmax
(Deng et al., "ArcFace", CVPR 2019) with optional sub-centres (Deng et al., "Sub-center ArcFace", ECCV
2020): ``logits = scale * cos(theta)``, the cosine between the L2-normalised embedding and the
L2-normalised class weights (the closest of ``subcenters`` centres per class). The margin itself is a
training-time change of the target logit (:mod:`spkid.training.losses`), so ``logits`` stays margin-free.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from spkid._strict import StrictConfig
from spkid.errors import ConfigError

__all__ = [
    "AttentionSpec",
    "HeadSpec",
    "VGGSpec",
    "ResNetSpec",
    "ModelSpec",
    "MODEL_NAMES",
    "model_spec",
    "TINY_OVERRIDES",
    "conv_output_length",
    "output_frames",
    "trunk_channels",
    "attention_input_dim",
    "pooled_dim",
    "STATS_VAR_FLOOR",
    "NORM_EPS",
    "head_outputs",
]


@dataclasses.dataclass(frozen=True)
class AttentionSpec(StrictConfig):
    """Structured self-attention pooling (Lin et al. 2017): A = softmax_T(W2 tanh(W1 H^T))."""

    hops: int = 4  # r
    d_a: int = 256  # hidden size of W1
    # How the r hops are combined: "mean" of the hop vectors M = A H (u), their "concat" (r*u), or
    # attentive "stats": the mean over hops of each hop's weighted mean and weighted standard deviation
    # of H (2u; Okabe, Koshinaka & Shinoda, "Attentive Statistics Pooling", Interspeech 2018).
    pool: typing.Literal["mean", "concat", "stats"] = "mean"

    def validate(self) -> None:
        if self.hops < 1 or self.d_a < 1:
            raise ConfigError(f"AttentionSpec: hops and d_a must be >= 1, got {self.hops}, {self.d_a}")


@dataclasses.dataclass(frozen=True)
class VGGSpec(StrictConfig):
    """VGG-like trunk: one block per entry of ``channels``; each block is ``convs_per_block`` x
    (3x3 conv, BatchNorm, ReLU) then a max-pool of 2 over frequency and ``time_pool[i]`` (2 or 1) over
    time. ``time_pool=None`` pools time by 2 in every block (the paper's 2x2 pools); 1s keep more frames
    for the attention to weigh (e.g. ``(2, 2, 1, 1)``: T/4 instead of T/16)."""

    channels: tuple[int, ...] = (64, 128, 256, 512)
    convs_per_block: int = 2
    time_pool: tuple[int, ...] | None = None

    def validate(self) -> None:
        if not self.channels or min(self.channels) < 1 or self.convs_per_block < 1:
            raise ConfigError(f"VGGSpec: bad channels/convs_per_block: {self.channels}, {self.convs_per_block}")
        if self.time_pool is not None and (
            len(self.time_pool) != len(self.channels) or not set(self.time_pool) <= {1, 2}
        ):
            raise ConfigError(
                f"VGGSpec: time_pool needs one 1 or 2 per block ({len(self.channels)}), got {self.time_pool}"
            )

    def time_strides(self) -> tuple[int, ...]:
        """Each block's pooling stride over time."""
        return tuple(self.time_pool) if self.time_pool is not None else (2,) * len(self.channels)


@dataclasses.dataclass(frozen=True)
class ResNetSpec(StrictConfig):
    """ResNet trunk adapted to 1-channel spectrograms: a ``stem_kernel`` conv (stride 2) + BN + ReLU +
    3x3/2 max-pool, then stages of ``block`` blocks; stage i has ``width * 2**i`` channels (x4 output
    for bottlenecks) and stride 2 in its first block for i > 0."""

    block: typing.Literal["basic", "bottleneck"] = "basic"
    depths: tuple[int, ...] = (2, 2, 2, 2)
    width: int = 32
    stem_kernel: int = 7

    def validate(self) -> None:
        if not self.depths or min(self.depths) < 1 or self.width < 1 or self.stem_kernel < 1:
            raise ConfigError(f"ResNetSpec: bad depths/width/stem_kernel: {self.depths}, {self.width}, {self.stem_kernel}")

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1


@dataclasses.dataclass(frozen=True)
class HeadSpec(StrictConfig):
    """The classifier on top of the embedding.

    ``"linear"``: ``logits = W ReLU(e) + b`` (W: (C, E)). ``"aam"``: no bias, no ReLU, weight (C*K, E)
    with K = ``subcenters`` (rows ``c*K .. c*K+K-1`` are class c's centres); ``logits[c] = scale *
    max_k cos(e, w_{c,k})`` with both vectors L2-normalised (Deng et al., ArcFace, CVPR 2019; K > 1:
    Sub-center ArcFace, ECCV 2020, K = 3 there). ``scale`` (s) is also the scale of the margin loss
    (training sets it from ``TrainConfig.aam_scale``).
    """

    type: typing.Literal["linear", "aam"] = "linear"
    subcenters: int = 1
    scale: float = 30.0

    def validate(self) -> None:
        if self.subcenters < 1:
            raise ConfigError(f"HeadSpec.subcenters must be >= 1, got {self.subcenters}")
        if self.type == "linear" and self.subcenters != 1:
            raise ConfigError(f"HeadSpec.subcenters needs type 'aam' (a linear head has one row per class), "
                              f"got {self.subcenters}")
        if not (self.scale > 0 and self.scale < float("inf")):
            raise ConfigError(f"HeadSpec.scale must be a finite number > 0, got {self.scale}")


#: Floor on the norms in the L2 normalisation of the AAM head (both backends and the numpy reference):
#: ``v / max(||v||, NORM_EPS)``, as ``torch.nn.functional.normalize``.
NORM_EPS = 1e-12


def head_outputs(head: HeadSpec, n_classes: int) -> int:
    """Rows of the classifier weight: ``n_classes`` (x ``subcenters`` for an AAM head)."""
    return n_classes * (head.subcenters if head.type == "aam" else 1)


@dataclasses.dataclass(frozen=True)
class ModelSpec(StrictConfig):
    """A whole model: trunk + attention pooling + embedding layer + classifier head (linear by default)."""

    arch: typing.Literal["vgg", "resnet"] = "vgg"
    n_mels: int = 40
    vgg: VGGSpec = VGGSpec()
    resnet: ResNetSpec = ResNetSpec()
    attention: AttentionSpec = AttentionSpec()
    embedding_dim: int = 256
    head: HeadSpec = HeadSpec()
    # BatchNorm over the mel bins of the input (learned affine, running statistics): standardises
    # features that were not mean-normalised per utterance, keeping the long-term spectrum as a cue.
    input_norm: bool = False
    bn_eps: float = 1e-5  # PyTorch defaults; Keras layers are built with the same numbers
    bn_momentum: float = 0.1  # PyTorch convention (Keras momentum = 1 - this)

    def validate(self) -> None:
        if self.n_mels < 1 or self.embedding_dim < 1:
            raise ConfigError(f"ModelSpec: n_mels and embedding_dim must be >= 1, got {self.n_mels}, {self.embedding_dim}")
        if not 0.0 < self.bn_momentum < 1.0 or self.bn_eps <= 0:
            raise ConfigError(f"ModelSpec: bad BatchNorm eps/momentum {self.bn_eps}/{self.bn_momentum}")


_DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg_attention": {"arch": "vgg"},
    "resnet18": {"arch": "resnet", "resnet": {"block": "basic", "depths": (2, 2, 2, 2), "width": 32}},
    "resnet50": {"arch": "resnet", "resnet": {"block": "bottleneck", "depths": (3, 4, 6, 3), "width": 32}},
}

MODEL_NAMES: tuple[str, ...] = tuple(_DEFAULTS)

# Small configs for fast tests (same structure, fewer channels).
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "vgg_attention": {"vgg": {"channels": (4, 8, 8, 16)}, "attention": {"hops": 2, "d_a": 8}, "embedding_dim": 16},
    "resnet18": {"resnet": {"width": 4}, "attention": {"hops": 2, "d_a": 8}, "embedding_dim": 16},
    "resnet50": {"resnet": {"width": 2}, "attention": {"hops": 2, "d_a": 8}, "embedding_dim": 16},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def model_spec(name: str, **overrides: Any) -> ModelSpec:
    """The spec of a registered model, with (nested) overrides.

    ``model_spec("resnet18", embedding_dim=128, resnet={"width": 16})``. Unknown names list the valid ones.
    """
    if name not in _DEFAULTS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    base = ModelSpec().to_dict()
    merged = _merge(_merge(base, _DEFAULTS[name]), overrides)
    return ModelSpec.from_dict(merged)


def conv_output_length(n: Any, kernel: int, stride: int = 1, padding: int = 0, ceil_mode: bool = False) -> Any:
    """Length of one axis after a conv / pooling window: ``floor((n + 2p - k) / s) + 1`` (``ceil`` with
    ``ceil_mode``, as PyTorch's ``MaxPool2d(ceil_mode=True)``; valid for ``padding=0``, all we use).

    Uses only ``+``, ``-`` and ``//``, so ``n`` may be an int, a numpy array or an integer tensor of either
    backend (both models compute the valid frames of padded batches with this one function).
    """
    span = n + 2 * padding - kernel
    if ceil_mode:
        return (span + stride - 1) // stride + 1
    return span // stride + 1


def _size_ops(spec: ModelSpec, axis: str = "time") -> list[tuple[int, int, int, bool]]:
    """The (kernel, stride, padding, ceil_mode) of every trunk layer that changes the size of ``axis``
    (``"time"`` or ``"freq"``). ResNet kernels are square and paddings symmetric, so its list applies to
    both axes; VGG blocks may skip pooling over time (``VGGSpec.time_pool``).
    """
    if spec.arch == "vgg":  # the 3x3 pad-1 convs keep the size; pools are (s, s, 0, ceil)
        strides = spec.vgg.time_strides() if axis == "time" else (2,) * len(spec.vgg.channels)
        return [(s, s, 0, True) for s in strides]
    r = spec.resnet
    ops = [(r.stem_kernel, 2, r.stem_kernel // 2, False), (3, 2, 1, False)]  # stem conv, max-pool
    ops += [(3, 2, 1, False)] * (len(r.depths) - 1)  # first 3x3 conv of stages 1.. (the 1x1 shortcut agrees)
    return ops


def output_frames(spec: ModelSpec, T: Any, axis: str = "time") -> Any:
    """Frames T' the trunk of ``spec`` outputs for T input frames (``axis="freq"``: bins F' for T input
    bins). ``T`` may be an int, array or integer tensor (e.g. per-example valid lengths).

    >>> output_frames(model_spec("vgg_attention"), 300), output_frames(model_spec("resnet18"), 300)
    (19, 10)
    """
    for kernel, stride, padding, ceil_mode in _size_ops(spec, axis):
        T = conv_output_length(T, kernel, stride, padding, ceil_mode)
    return T


def trunk_channels(spec: ModelSpec) -> int:
    """Channels C of the trunk's last feature map."""
    if spec.arch == "vgg":
        return spec.vgg.channels[-1]
    return spec.resnet.width * 2 ** (len(spec.resnet.depths) - 1) * spec.resnet.expansion


def attention_input_dim(spec: ModelSpec) -> int:
    """Size u of each frame of H (T' x u) fed to the attention: channels x frequency bins, C * F'."""
    return trunk_channels(spec) * output_frames(spec, spec.n_mels, axis="freq")


#: Floor on the attentive variance before its square root (both backends), so silent or constant
#: inputs give a finite standard deviation and gradient.
STATS_VAR_FLOOR = 1e-6


def pooled_dim(input_dim: int, attention: AttentionSpec) -> int:
    """Size of the attention pooling's output for frames of size ``input_dim`` (u): u for ``"mean"``,
    r*u for ``"concat"``, 2u for ``"stats"``."""
    return input_dim * {"mean": 1, "concat": attention.hops, "stats": 2}[attention.pool]
