"""PyTorch models: a registry over :data:`spkid.models.specs.MODEL_NAMES` (``vgg_attention``, ``resnet18``,
``resnet50``), built from :func:`spkid.models.specs.model_spec`; names and argument checks are the
framework-free :mod:`spkid.models.registry`. Same names in ``spkid_keras.models``."""
from __future__ import annotations

from spkid.models.registry import check_create_args, list_models

from .net import SpeakerNet, build_trunk

__all__ = ["SpeakerNet", "build_trunk", "create_model", "list_models", "count_params"]


def create_model(name: str, n_classes: int, **spec_overrides) -> SpeakerNet:
    """``create_model("resnet18", n_classes=1251, embedding_dim=128)``; overrides go to
    :func:`spkid.models.specs.model_spec` (unknown names or keys raise ConfigError listing the valid ones)."""
    spec = check_create_args(name, n_classes, **spec_overrides)
    return SpeakerNet(spec, n_classes, name=name)


def count_params(model) -> dict[str, int]:
    """{"trainable": ..., "total": ...}; total also counts BatchNorm running mean/var (as Keras does),
    not ``num_batches_tracked``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return {"trainable": trainable, "total": trainable + frozen + stats}
