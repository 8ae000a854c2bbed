"""Port weights between the PyTorch and Keras models (numpy state dicts; this module never imports torch).

The name map is mechanical: every Keras leaf layer is named with the PyTorch module path of its twin, so

====================================  ==========================  ==========================================
PyTorch state-dict key                Keras weight                transform (torch -> keras)
====================================  ==========================  ==========================================
``{path}.weight`` (Conv2d)            ``{path}`` Conv2D kernel    (out, in, kh, kw) -> (kh, kw, in, out)
``{path}.weight`` / ``.bias`` (Linear) ``{path}`` Dense kernel/bias (out, in) -> (in, out); bias as is
``classifier.weight`` (AAM head)      ``classifier`` weight       as is: (C*K, E) in both (CosineClassifier)
``{path}.weight`` / ``.bias``         ``{path}`` BatchNorm        gamma / beta
``{path}.running_mean`` / ``_var``    ``{path}`` BatchNorm        moving_mean / moving_variance
``{path}.num_batches_tracked``        --                          ignored (only used when momentum=None)
====================================  ==========================  ==========================================

Both directions check the whole map and raise :class:`~spkid.errors.CheckpointError` listing every
missing, unexpected or mis-shaped tensor before changing anything.

    >>> sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    >>> torch_to_keras(sd, keras_model)
    >>> torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in keras_to_torch(keras_model).items()})
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from keras import layers

from spkid.errors import CheckpointError
from spkid_keras.models.layers import CosineClassifier

__all__ = ["torch_to_keras", "keras_to_torch", "weight_map"]

_CONV = ((2, 3, 1, 0), (3, 2, 0, 1))  # torch->keras and keras->torch axis orders of a conv kernel
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_IGNORED = "num_batches_tracked"


def _transpose(axes):
    return lambda a: np.ascontiguousarray(np.transpose(a, axes))


def _identity(a):
    return a


def weight_map(model) -> dict[str, tuple[object, Callable, Callable]]:
    """PyTorch state-dict key -> (Keras variable, torch->keras transform, keras->torch transform)."""
    out: dict[str, tuple[object, Callable, Callable]] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.Conv2D):
            pairs = {"weight": (layer.kernel, _transpose(_CONV[0]), _transpose(_CONV[1]))}
        elif isinstance(layer, layers.Dense):
            pairs = {"weight": (layer.kernel, _transpose((1, 0)), _transpose((1, 0)))}
        elif isinstance(layer, CosineClassifier):
            pairs = {"weight": (layer.weight, _identity, _identity)}
        elif isinstance(layer, layers.BatchNormalization):
            pairs = {t: (getattr(layer, k), _identity, _identity) for t, k in _BN.items()}
        elif layer.weights and not getattr(layer, "_layers", None):
            raise CheckpointError(f"no PyTorch name rule for Keras layer {layer.name!r} ({type(layer).__name__})")
        else:
            continue
        if getattr(layer, "use_bias", False):
            pairs["bias"] = (layer.bias, _identity, _identity)
        for suffix, entry in pairs.items():
            key = f"{layer.name}.{suffix}"
            if key in out:
                raise CheckpointError(f"two Keras layers are named {layer.name!r}")
            out[key] = entry
    return out


def _problems(kind: str, names) -> list[str]:
    names = sorted(names)
    return [f"{kind} ({len(names)}): {', '.join(names)}"] if names else []


def torch_to_keras(state_dict: Mapping[str, np.ndarray], model) -> None:
    """Load a PyTorch ``state_dict`` (values: numpy arrays, or anything ``np.asarray`` takes) into the
    Keras twin ``model`` in place. ``*.num_batches_tracked`` entries are ignored."""
    wmap = weight_map(model)
    given = {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith("." + _IGNORED)}
    converted, misshaped = {}, []
    for key in sorted(set(given) & set(wmap)):
        var, to_keras, _ = wmap[key]
        value = to_keras(given[key])
        if tuple(value.shape) != tuple(var.shape):
            misshaped.append(f"{key} {tuple(given[key].shape)} -> {tuple(value.shape)} vs Keras {tuple(var.shape)}")
        converted[key] = value
    problems = (_problems("missing", set(wmap) - set(given)) + _problems("unexpected", set(given) - set(wmap))
                + _problems("mis-shaped", misshaped))
    if problems:
        raise CheckpointError(f"state dict does not fit Keras model {model.name!r}: " + "; ".join(problems))
    for key, value in converted.items():
        var = wmap[key][0]
        var.assign(value.astype(var.dtype))


def keras_to_torch(model) -> dict[str, np.ndarray]:
    """The PyTorch ``state_dict`` (numpy arrays) of the Keras ``model``; load with
    ``load_state_dict({k: torch.from_numpy(v) ...}, strict=True)``. BatchNorm layers get
    ``num_batches_tracked = 0`` (PyTorch only reads it when momentum is None)."""
    out: dict[str, np.ndarray] = {}
    for key, (var, _, to_torch) in weight_map(model).items():
        out[key] = to_torch(np.asarray(var.numpy()))
        if key.endswith(".running_var"):
            out[key[: -len("running_var")] + _IGNORED] = np.array(0, dtype=np.int64)
    return out
