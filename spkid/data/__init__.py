"""Datasets to batches: manifests and dataset layouts, split rules, label maps, feature caches, feature sets,
the seeded sampler, and the memory-mapped waveform store with its on-the-fly (augmented) waveform sampler.

Public names are imported lazily: ``import spkid.data`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "SPLITS": "manifest",
    "AUDIO_EXTENSIONS": "manifest",
    "MANIFEST_HEADER": "manifest",
    "Utterance": "manifest",
    "Manifest": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "check_relpath": "manifest",
    "LabelMap": "labels",
    "FSDD_PATTERN": "splitting",
    "assign_splits": "splitting",
    "split_by": "splitting",
    "split_by_regex": "splitting",
    "fsdd_split": "splitting",
    "check_closed_set": "splitting",
    "LAYOUTS": "layouts.registry",
    "load_dataset": "layouts.registry",
    "detect_layout": "layouts.registry",
    "IDEN_SPLIT_CODES": "layouts.voxceleb",
    "parse_iden_split": "layouts.voxceleb",
    "scan_voxceleb": "layouts.voxceleb",
    "scan_vctk": "layouts.vctk",
    "read_speaker_info": "layouts.vctk",
    "scan_folders": "layouts.folders",
    "PATTERN_PRESETS": "layouts.pattern",
    "scan_pattern": "layouts.pattern",
    "FORMAT_VERSION": "entries",
    "MAGIC": "entries",
    "RestrictedUnpickler": "entries",
    "restricted_loads": "entries",
    "dump_entry": "entries",
    "load_entry": "entries",
    "BuildReport": "cache",
    "VerifyReport": "cache",
    "FeatureCache": "cache",
    "build_cache": "cache",
    "verify_cache": "cache",
    "merge_caches": "cache",
    "in_shard": "cache",
    "entry_path": "cache",
    "FeatureSet": "featuresets",
    "split_holdout": "featuresets",
    "load_feature_set": "featuresets",
    "cache_feature_sets": "featuresets",
    "repeat_pad": "sampler",
    "TrainSampler": "sampler",
    "augment_features": "sampler",
    "add_noise": "sampler",
    "eval_pieces": "sampler",
    "eval_batches": "sampler",
    "SpeakerProfile": "synthetic.voices",
    "make_speakers": "synthetic.voices",
    "synthesize_utterance": "synthetic.voices",
    "make_corpus": "synthetic.corpus",
    "WaveSource": "wavesampler",
    "InMemoryWaves": "wavesampler",
    "WaveSet": "wavesampler",
    "WaveSampler": "wavesampler",
    "WaveStore": "waves",
    "verify_wave_store": "waves",
    "build_wave_store": "waves_build",
    "merge_wave_stores": "waves_build",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
