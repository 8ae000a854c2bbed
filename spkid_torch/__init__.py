"""spkid_torch: the spkid models in PyTorch (same public names as ``spkid_keras``).

``create_model(name, n_classes, **spec_overrides)`` and ``list_models()``, the training API (``fit``,
``evaluate``, ``embed``, ``load_model``, ``load_checkpoint``); submodules are imported on first use so
``import spkid_torch`` stays light.

The same members behind one typed interface: ``spkid.backends.get_backend("torch")``, the object
``spkid_torch.backend.BACKEND`` (a :class:`spkid.backends.Backend`).
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it (the same names in spkid_torch and spkid_keras)
_LAZY = {
    **{n: "models" for n in ("create_model", "list_models", "count_params", "SpeakerNet")},
    **{n: "train" for n in ("fit", "load_model", "load_checkpoint")},
    **{n: "backend" for n in ("evaluate", "embed")},
}
__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
