"""Strict, frozen configuration dataclasses.

Every config in spkid derives from :class:`StrictConfig`: it is a frozen dataclass, ``from_dict`` rejects
unknown keys and wrong types with a :class:`~spkid.errors.ConfigError` that names the key, and each
subclass validates its values in ``__post_init__``. Configs round-trip through plain dicts (``to_dict``)
and YAML, so they can be stored next to caches, checkpoints and galleries.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["StrictConfig", "FeatureConfig", "TrainConfig", "load_yaml_config"]


def _is_instance(value: Any, tp: Any) -> bool:
    """isinstance for the small set of annotations spkid configs use."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (tuple,):
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_instance(v, args[0]) for v in value)
        return len(args) == len(value) and all(_is_instance(v, a) for v, a in zip(value, args))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type) and issubclass(tp, StrictConfig):
        return isinstance(value, (tp, Mapping))
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _coerce(value: Any, tp: Any) -> Any:
    """Coerce lists to tuples, ints to floats and nested dicts to nested configs, after type checking."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            if a is not type(None) and _is_instance(value, a):
                return _coerce(value, a)
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if tp is float and isinstance(value, int):
        return float(value)
    if isinstance(tp, type) and issubclass(tp, StrictConfig) and isinstance(value, Mapping):
        return tp.from_dict(value)
    return value


@dataclasses.dataclass(frozen=True)
class StrictConfig:
    """Base class: frozen, typed, strict about keys. Subclasses add fields and a ``validate`` method."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            tp = hints[f.name]
            if not _is_instance(value, tp):
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}: expected {_type_name(tp)}, got {value!r}"
                )
            object.__setattr__(self, f.name, _coerce(value, tp))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        """Raise ConfigError on impossible values. Called after type checks."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, **overrides: Any):
        """Build from a mapping; unknown keys raise ConfigError listing the valid ones."""
        merged = dict(data or {})
        merged.update(overrides)
        if not isinstance(merged, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(merged) - set(valid))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(valid)}"
            )
        try:
            return cls(**merged)
        except TypeError as exc:  # e.g. a missing required field
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    def replace(self, **changes: Any):
        """A copy with some fields changed (validated like ``from_dict``)."""
        return type(self).from_dict(self.to_dict(), **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (tuples become lists, nested configs become dicts)."""

        def plain(v: Any) -> Any:
            if isinstance(v, StrictConfig):
                return v.to_dict()
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def describe(self) -> str:
        """One-line human description, used in 'built with another config' errors."""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def round_half_up(x: float) -> int:
    """Seconds x rate -> samples, rounding halves up like python_speech_features (0.5 -> 1), not
    Python's banker's rounding. The one rule for frame lengths in spkid."""
    return int(decimal.Decimal(x).to_integral_value(rounding=decimal.ROUND_HALF_UP))  # no precision limit


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader) and return it; errors name the file."""
    import yaml

    from .fileio import read_file_bytes

    p = Path(path)
    try:
        text = read_file_bytes(p, "config file", ConfigError).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config: not UTF-8 text ({exc.reason} at byte {exc.start})", path=p) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=p) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at top level, got {type(data).__name__}", path=p)
    return data


@dataclasses.dataclass(frozen=True)
class FeatureConfig(StrictConfig):
    """Log-mel filterbank parameters (the H. Fayek recipe; defaults are the paper's).

    ``sr`` is the rate audio is resampled to before feature extraction.
    """

    sr: int = 16000
    n_mels: int = 40
    frame_length: float = 0.025  # seconds
    frame_shift: float = 0.010  # seconds
    n_fft: int = 512
    preemphasis: float = 0.97
    window: typing.Literal["hamming", "hann", "rectangular"] = "hamming"
    fmin: float = 0.0
    fmax: float | None = None
    log: typing.Literal["natural", "db"] = "natural"
    normalize: typing.Literal["mean", "meanvar"] | None = "mean"

    def validate(self) -> None:
        name = type(self).__name__
        if self.sr <= 0:
            raise ConfigError(f"{name}.sr must be > 0, got {self.sr}")
        if not (math.isfinite(self.frame_length) and self.frame_length > 0):
            raise ConfigError(f"{name}.frame_length must be > 0 seconds, got {self.frame_length}")
        if not (math.isfinite(self.frame_shift) and self.frame_shift > 0):
            raise ConfigError(f"{name}.frame_shift (hop) must be > 0 seconds, got {self.frame_shift}")
        if self.n_fft <= 0:
            raise ConfigError(f"{name}.n_fft must be > 0, got {self.n_fft}")
        if self.win_length < 1 or self.hop_length < 1:
            raise ConfigError(
                f"{name}: frame_length/frame_shift of {self.frame_length}/{self.frame_shift} s give "
                f"{self.win_length}/{self.hop_length} samples at sr={self.sr}; both must be >= 1"
            )
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"{name}: frame of {self.win_length} samples is longer than n_fft={self.n_fft}"
            )
        if not 1 <= self.n_mels <= self.n_fft // 2 + 1:
            raise ConfigError(
                f"{name}.n_mels must be in 1..n_fft/2+1={self.n_fft // 2 + 1}, got {self.n_mels}"
            )
        if not 0.0 <= self.preemphasis < 1.0:
            raise ConfigError(f"{name}.preemphasis must be in [0, 1), got {self.preemphasis}")
        top = self.sr / 2 if self.fmax is None else self.fmax
        if not 0.0 <= self.fmin < top <= self.sr / 2:
            raise ConfigError(
                f"{name}: need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sr={self.sr}"
            )

    @property
    def win_length(self) -> int:
        """Frame length in samples."""
        return round_half_up(self.frame_length * self.sr)

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return round_half_up(self.frame_shift * self.sr)


@dataclasses.dataclass(frozen=True)
class TrainConfig(StrictConfig):
    """Training recipe shared by both backends (the paper's defaults where it has them).

    An et al. (2019) train with Adam at lr 2e-4 and halve the learning rate after 10 epochs without
    validation improvement; inputs are 3 s crops (300 frames at a 10 ms hop), shorter clips repeat-padded.
    ``lr_schedule="plateau"`` is that rule (on the training loss when there is no validation set);
    ``"cosine"`` anneals per epoch from ``lr`` to ``min_lr`` over ``epochs`` (no validation needed,
    e.g. for a final run on all the training data). ``warmup_epochs = W`` scales either schedule's rate by
    ``(e + 1) / (W + 1)`` in 0-based epochs ``e < W``: a linear ramp that keeps Adam's first, largest
    steps from stalling a freshly initialised network (on libri251, 1 seed in 5 barely learned in its
    first epochs at full rate and ended under-trained).

    ``penalty_coef`` weights Lin et al.'s (2017) attention penalty ``||A A^T - I||_F^2``; 0.1 is the low
    end of the 0.1-1.0 range of public code: enough to keep the hops from collapsing onto the same frames
    without fighting the classification loss on small data sets.

    Augmentation (all off by default, ``augment_prob`` is the per-example probability of each kind):
    ``gain_db`` adds a random constant to the log-mel features (a gain in dB, converted to the feature's
    log base); ``time_masks``/``freq_masks`` SpecAugment masks (Park et al. 2019) of at most
    ``time_mask_frames``/``freq_mask_bins`` wide; ``noise_snr`` white noise mixed into waveforms at a
    random SNR in dB, used where raw audio is at hand (``noise_copies`` noisy copies of each training
    utterance are added before feature extraction; ignored for pre-computed caches).

    Scale-out (``spkid.distributed``): ``batch_size`` is always the global batch of one optimizer step.
    ``devices="N"`` trains data-parallel on N devices (torch DistributedDataParallel under torchrun, keras
    MirroredStrategy); the batch is cut into ``N * grad_accumulation`` contiguous micro-batches, device
    ``r`` computing micro-batches ``r * grad_accumulation ...`` and the gradients averaged over the whole
    batch, so only BatchNorm statistics (per micro-batch unless synchronised) depend on these settings.

    Evaluation: ``eval_mode="full"`` feeds each utterance whole (repeat-padded to ``crop_frames`` when
    shorter, like training); ``"windows"`` cuts it into windows of ``window_frames`` every ``hop_frames``
    and averages the logits and embeddings of the windows.
    """

    model: str = "vgg_attention"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    optimizer: typing.Literal["adam", "sgd"] = "adam"
    lr: float = 2e-4
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # decoupled (AdamW-style) in both backends
    epochs: int = 30
    batch_size: int = 32
    crop_frames: int = 300
    crops_per_utterance: int = 1  # each utterance is cropped this many times per epoch
    lr_schedule: typing.Literal["plateau", "cosine"] = "plateau"
    warmup_epochs: int = 0
    plateau_patience: int = 10
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    penalty_coef: float = 0.1
    label_smoothing: float = 0.0
    seed: int = 0
    mixed_precision: bool = False  # GPU only; ignored (with a warning) on CPU
    augment_prob: float = 0.5
    gain_db: tuple[float, float] | None = None
    time_masks: int = 0
    time_mask_frames: int = 20
    freq_masks: int = 0
    freq_mask_bins: int = 5
    noise_snr: tuple[float, float] | None = None
    noise_copies: int = 0
    val_fraction: float = 0.0  # part of the training utterances held out for validation (0 = none)
    eval_mode: typing.Literal["full", "windows"] = "full"
    window_frames: int = 300
    hop_frames: int = 150
    eval_batch_size: int = 32
    num_workers: int = 0
    devices: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "gpu", or a count "N" (data-parallel on N devices)
    grad_accumulation: int = 1  # each device computes its share of a batch in this many micro-batches

    def validate(self) -> None:
        name = type(self).__name__
        from .specs import MODEL_NAMES

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ConfigError(f"{name}.{what}")

        need(self.model in MODEL_NAMES, f"model must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        for key in ("lr", "min_lr"):
            v = getattr(self, key)
            need(math.isfinite(v) and v > 0, f"{key} must be a finite number > 0, got {v}")
        need(self.min_lr <= self.lr, f"min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        need(0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}")
        need(0.0 <= self.weight_decay < 1.0, f"weight_decay must be in [0, 1), got {self.weight_decay}")
        for key in ("epochs", "batch_size", "crop_frames", "crops_per_utterance", "plateau_patience",
                    "window_frames", "hop_frames", "eval_batch_size"):
            need(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        need(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        need(0.0 < self.lr_factor < 1.0, f"lr_factor must be in (0, 1), got {self.lr_factor}")
        need(self.penalty_coef >= 0 and math.isfinite(self.penalty_coef),
             f"penalty_coef must be >= 0, got {self.penalty_coef}")
        need(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        need(0.0 <= self.augment_prob <= 1.0, f"augment_prob must be in [0, 1], got {self.augment_prob}")
        need(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("gain_db", "noise_snr"):
            rng = getattr(self, key)
            need(rng is None or (rng[0] <= rng[1] and all(math.isfinite(v) for v in rng)),
                 f"{key} must be a (low, high) range with low <= high, got {rng}")
        for key in ("time_masks", "freq_masks", "noise_copies", "num_workers", "seed"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        need(self.time_mask_frames >= 1 and self.freq_mask_bins >= 1, "mask widths must be >= 1")
        need(self.noise_copies == 0 or self.noise_snr is not None, "noise_copies > 0 needs a noise_snr range")
        need(self.hop_frames <= self.window_frames,
             f"hop_frames ({self.hop_frames}) must be <= window_frames ({self.window_frames})")
        need(self.devices == "auto" or self.devices in ("cpu", "gpu") or self.devices.startswith("cuda")
             or (self.devices.isdigit() and int(self.devices) >= 1),
             f"devices must be 'auto', 'cpu', 'gpu', 'cuda[:N]' or a device count >= 1, got {self.devices!r}")
        need(self.grad_accumulation >= 1, f"grad_accumulation must be >= 1, got {self.grad_accumulation}")
        try:  # the overrides must describe a valid architecture
            from .specs import model_spec

            model_spec(self.model, **self.model_overrides)
        except ConfigError as exc:
            raise ConfigError(f"{name}.model_overrides: {exc}") from None

    @property
    def augments(self) -> bool:
        """Whether any on-line feature augmentation is switched on."""
        return self.augment_prob > 0 and (self.gain_db is not None or self.time_masks > 0 or self.freq_masks > 0)
