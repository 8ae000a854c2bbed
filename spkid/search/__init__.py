"""Embeddings to names: k-nearest-neighbour speaker search (``index``) and enrolment galleries
(``gallery``, answering with ``results``, searched through ``live_index``; written through by ``stored`` to a
SQLite database (``sqlite_store``, opened through the memory-mapped ``snapshot``) or a LanceDB directory
(``lance_store``), or saved whole as the older npz + json pair of ``storage``; bound to a model in ``binding``);
verification trial lists (``trials``) and their scoring and normalisation (``scoring``); who speaks when (``timeline``).

Public names are imported lazily: ``import spkid.search`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "SpeakerIndex": "index",
    "as_embeddings": "index",
    "l2_normalize": "index",
    "Gallery": "gallery",
    "Identification": "results",
    "Match": "results",
    "Neighbour": "results",
    "LiveIndex": "live_index",
    "SQLiteStore": "sqlite_store",
    "LanceStore": "lance_store",
    "open_gallery": "binding",
    "check_gallery": "binding",
    "gallery_metadata": "binding",
    "fingerprint": "binding",
    "TrialList": "trials",
    "read_trials": "trials",
    "parse_trials": "trials",
    "write_scores": "trials",
    "read_scores": "trials",
    "cosine_trials": "scoring",
    "cohort_stats": "scoring",
    "s_norm": "scoring",
    "normalize_trials": "scoring",
    "score_trial_list": "scoring",
    "Calibration": "scoring",
    "TimelineConfig": "timeline",
    "Segment": "timeline",
    "timeline_of_blocks": "timeline",
    "timeline_of_file": "timeline",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
