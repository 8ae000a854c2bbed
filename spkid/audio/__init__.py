"""Audio: decode, mix down, resample and validate recordings (soundfile, soxr), and seeded waveform
augmentation (noise, babble, rooms, channels, gain, speed); streaming reads and an energy VAD.

Public names are imported lazily: ``import spkid.audio`` stays cheap.
"""
from __future__ import annotations

from spkid._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "AudioInfo": "io",
    "info": "io",
    "load_audio": "io",
    "load_audio_with_rate": "io",
    "resample": "io",
    "stream_audio": "io",
    "VadConfig": "vad",
    "SpeechRegion": "vad",
    "speech_regions": "vad",
    "speech_intervals": "vad",
    "AugmentConfig": "augment",
    "Augmenter": "augment",
    "colored_noise": "noise",
    "add_noise": "noise",
    "add_colored_noise": "noise",
    "babble": "noise",
    "reverberate": "rooms",
    "simulate_rir": "rooms",
    "schroeder_rt60": "rooms",
    "bandpass": "channels",
    "telephone": "channels",
    "mu_law": "channels",
    "random_eq": "channels",
    "gain": "channels",
    "speed_perturb": "channels",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
