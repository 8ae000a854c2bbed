"""Datasets to batches: layouts and manifests, label maps, feature caches, feature sets and the seeded sampler.

Public names are imported lazily: ``import spkid.data`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "Utterance": "splits",
    "Manifest": "splits",
    "LabelMap": "splits",
    "load_dataset": "splits",
    "detect_layout": "splits",
    "parse_iden_split": "splits",
    "scan_voxceleb": "splits",
    "scan_vctk": "splits",
    "scan_folders": "splits",
    "scan_pattern": "splits",
    "read_speaker_info": "splits",
    "assign_splits": "splits",
    "split_by": "splits",
    "split_by_regex": "splits",
    "fsdd_split": "splits",
    "read_manifest": "splits",
    "write_manifest": "splits",
    "check_closed_set": "splits",
    "check_relpath": "splits",
    "BuildReport": "cache",
    "VerifyReport": "cache",
    "FeatureCache": "cache",
    "RestrictedUnpickler": "cache",
    "build_cache": "cache",
    "verify_cache": "cache",
    "merge_caches": "cache",
    "load_entry": "cache",
    "dump_entry": "cache",
    "restricted_loads": "cache",
    "in_shard": "cache",
    "entry_path": "cache",
    "FeatureSet": "sampler",
    "load_feature_set": "sampler",
    "cache_feature_sets": "sampler",
    "repeat_pad": "sampler",
    "TrainSampler": "sampler",
    "augment_features": "sampler",
    "add_noise": "sampler",
    "eval_pieces": "sampler",
    "eval_batches": "sampler",
    "split_holdout": "sampler",
    "SpeakerProfile": "synthetic.voices",
    "make_speakers": "synthetic.voices",
    "synthesize_utterance": "synthetic.voices",
    "make_corpus": "synthetic.corpus",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
