"""The training recipe both backends share: :class:`TrainConfig` (An, Thanh & Liu 2019 defaults)."""
from __future__ import annotations

import dataclasses
import math
import typing

from spkid._strict import StrictConfig
from spkid.audio.augment import AugmentConfig
from spkid.errors import ConfigError
from spkid.models.specs import MODEL_NAMES, model_spec

__all__ = ["TrainConfig", "split_recipe"]


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
    ``time_mask_frames``/``freq_mask_bins`` wide. Waveform augmentation (``waveform_augment``, a
    :class:`spkid.audio.augment.AugmentConfig`: noise, babble, rooms, channels, gain, each with its own
    probability; ``noise_dir`` / ``rir_dir`` folders of noise files and impulse responses, else synthetic
    noise and simulated rooms) needs waveforms: training from a wave store (``spkid train --waves``); with
    a feature cache it is refused, never ignored. (The ``noise_snr``/``noise_copies`` fields of earlier
    versions were withdrawn because only one benchmark honoured them; checkpoints that carry them at their
    old defaults still load.)

    Long corpora: ``steps_per_epoch = S`` makes an epoch (one validation, checkpoint and scheduler step) S
    optimizer steps of the endless stream of batches instead of one pass over the data; ``max_steps = N``
    stops after N steps in all, mid-epoch if need be, with a checkpoint a later ``--resume`` (and a larger
    or no ``max_steps``) continues from exactly there (:class:`spkid.data.sampler.EpochSteps`).

    Scale-out (``spkid.training.distributed``): ``batch_size`` is always the global batch of one optimizer step.
    ``devices="N"`` trains data-parallel on N devices (torch DistributedDataParallel under torchrun, keras
    MirroredStrategy); the batch is cut into ``N * grad_accumulation`` contiguous micro-batches, device
    ``r`` computing micro-batches ``r * grad_accumulation ...`` and the gradients averaged over the whole
    batch, so only BatchNorm statistics (per micro-batch unless synchronised) depend on these settings.

    Loss: ``loss="softmax"`` is cross-entropy on the model's logits (any head); ``"aam"`` is additive
    angular margin softmax (Deng et al., ArcFace, CVPR 2019; :mod:`spkid.training.losses`) and needs an
    AAM head (``model_overrides={"head": {"type": "aam", "subcenters": K}}``, K > 1: Sub-center ArcFace,
    ECCV 2020): the target logit ``s cos(theta)`` becomes ``s cos(theta + m)`` with ``s = aam_scale``
    (also the head's ``scale``, set from it) and ``m = aam_margin``, ramped linearly per epoch from 0 over
    ``aam_margin_warmup_epochs`` (:func:`spkid.training.losses.margin_at`). Label smoothing and the
    attention penalty apply to either loss.

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
    steps_per_epoch: int | None = None  # optimizer steps between validations / checkpoints (None: one pass)
    max_steps: int | None = None  # stop after this many steps in all (a later --resume with more goes on)
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
    loss: typing.Literal["softmax", "aam"] = "softmax"
    aam_scale: float = 30.0  # s; loss "aam" only
    aam_margin: float = 0.2  # m (radians); loss "aam" only
    aam_margin_warmup_epochs: int = 2  # m ramps 0 -> aam_margin over these epochs; loss "aam" only
    seed: int = 0
    mixed_precision: bool = False  # GPU only; ignored (with a warning) on CPU
    augment_prob: float = 0.5
    gain_db: tuple[float, float] | None = None
    time_masks: int = 0
    time_mask_frames: int = 20
    freq_masks: int = 0
    freq_mask_bins: int = 5
    waveform_augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    noise_dir: str | None = None  # folder of noise recordings (e.g. MUSAN) for waveform_augment
    rir_dir: str | None = None  # folder of room impulse responses (e.g. RIRS_NOISES) for waveform_augment
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
        for key in ("steps_per_epoch", "max_steps"):
            v = getattr(self, key)
            need(v is None or v >= 1, f"{key} must be None or >= 1, got {v}")
        need(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        need(0.0 < self.lr_factor < 1.0, f"lr_factor must be in (0, 1), got {self.lr_factor}")
        need(self.penalty_coef >= 0 and math.isfinite(self.penalty_coef),
             f"penalty_coef must be >= 0, got {self.penalty_coef}")
        need(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        need(0.0 <= self.augment_prob <= 1.0, f"augment_prob must be in [0, 1], got {self.augment_prob}")
        need(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("gain_db",):
            rng = getattr(self, key)
            need(rng is None or (rng[0] <= rng[1] and all(math.isfinite(v) for v in rng)),
                 f"{key} must be a (low, high) range with low <= high, got {rng}")
        for key in ("time_masks", "freq_masks", "num_workers", "seed"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        need(self.time_mask_frames >= 1 and self.freq_mask_bins >= 1, "mask widths must be >= 1")
        need(self.hop_frames <= self.window_frames,
             f"hop_frames ({self.hop_frames}) must be <= window_frames ({self.window_frames})")
        need(self.devices == "auto" or self.devices in ("cpu", "gpu") or self.devices.startswith("cuda")
             or (self.devices.isdigit() and int(self.devices) >= 1),
             f"devices must be 'auto', 'cpu', 'gpu', 'cuda[:N]' or a device count >= 1, got {self.devices!r}")
        need(self.grad_accumulation >= 1, f"grad_accumulation must be >= 1, got {self.grad_accumulation}")
        need(math.isfinite(self.aam_scale) and self.aam_scale > 0, f"aam_scale must be a finite number > 0, "
             f"got {self.aam_scale}")
        need(math.isfinite(self.aam_margin) and 0.0 <= self.aam_margin < math.pi / 2,
             f"aam_margin must be in [0, pi/2) radians, got {self.aam_margin}")
        need(self.aam_margin_warmup_epochs >= 0,
             f"aam_margin_warmup_epochs must be >= 0, got {self.aam_margin_warmup_epochs}")
        try:  # the overrides must describe a valid architecture
            spec = model_spec(self.model, **self.model_overrides)
        except ConfigError as exc:
            raise ConfigError(f"{name}.model_overrides: {exc}") from None
        if self.loss == "aam":
            need(spec.head.type == "aam", f"loss 'aam' needs an AAM head: set model_overrides "
                 f"{{'head': {{'type': 'aam'}}}} (the model {self.model!r} has head type {spec.head.type!r})")
            given = (self.model_overrides.get("head") or {}).get("scale")
            need(given is None or given == self.aam_scale,
                 f"aam_scale ({self.aam_scale}) disagrees with model_overrides head scale ({given}): "
                 f"set only aam_scale")

    def model_spec_overrides(self) -> dict:
        """``model_overrides`` with, for ``loss="aam"``, the head's scale set to ``aam_scale`` (the one
        scale of the logits and of the margin loss)."""
        over = dict(self.model_overrides)
        if self.loss == "aam":
            over["head"] = {**(over.get("head") or {}), "scale": self.aam_scale}
        return over

    @property
    def augments(self) -> bool:
        """Whether any on-line feature augmentation is switched on."""
        return self.augment_prob > 0 and (self.gain_db is not None or self.time_masks > 0 or self.freq_masks > 0)

    @classmethod
    def from_dict(cls, data=None, **overrides):
        """:meth:`StrictConfig.from_dict`, also reading configs written before ``noise_snr`` and
        ``noise_copies`` were withdrawn: at their old defaults they are dropped, otherwise refused."""
        if isinstance(data, dict) and _WITHDRAWN.keys() & data.keys():
            for key, default in _WITHDRAWN.items():
                if key in data and data[key] != default:
                    raise ConfigError(f"TrainConfig.{key} was withdrawn (waveform noise augmentation is not a "
                                      f"TrainConfig option); remove it (got {data[key]!r})")
            data = {k: v for k, v in data.items() if k not in _WITHDRAWN}
        return super().from_dict(data, **overrides)


# Fields of earlier versions and the value at which old checkpoints and YAML files still load.
_WITHDRAWN = {"noise_snr": None, "noise_copies": 0}


def split_recipe(path) -> tuple[dict, dict]:
    """A recipe file (``benchmarks/recipes/*.yaml``): TrainConfig fields plus an optional ``features:``
    mapping of FeatureConfig fields, as ``(TrainConfig fields, FeatureConfig overrides)``; ``path`` None:
    two empty mappings. An unknown feature field, or a ``features:`` that is not a mapping, is a
    ConfigError naming the file (TrainConfig's own fields are checked when the config is built)."""
    from spkid._strict import load_yaml_config
    from spkid.features.config import FeatureConfig

    if path is None:
        return {}, {}
    data = load_yaml_config(path)
    features = data.pop("features", None)
    if features is None:
        return data, {}
    if not isinstance(features, dict):
        raise ConfigError(f"{path}: features: must be a mapping of FeatureConfig fields, got {features!r}")
    unknown = sorted(set(features) - {f.name for f in dataclasses.fields(FeatureConfig)})
    if unknown:
        raise ConfigError(f"{path}: features: unknown FeatureConfig field(s) {', '.join(map(str, unknown))}")
    return data, dict(features)
