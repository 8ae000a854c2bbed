"""The seeded degradations of the robustness benchmark, shared by ``robustness.py`` (test audio) and
``accuracy.py --val-degraded`` (validation audio, for choosing a recipe on degraded copies).

A degradation is ``fn(y, sr, rng, others) -> y'`` where ``others(rng)`` returns :data:`BABBLE_TALKERS`
waveforms of speakers other than ``y``'s (:func:`talker_picker`). Each item draws from its own generator,
``np.random.default_rng([seed, condition, item])`` for the test (``condition`` its index in
:data:`CONDITIONS`), ``np.random.default_rng([seed, VAL_TAG, condition, item])`` for validation, so the
two never share draws, and neither shares any with training augmentation (which seeds
``[seed, epoch, batch, item, ITEM_TAG]``).

- white noise at 20 / 10 / 5 / 0 dB SNR (:func:`spkid.audio.noise.add_colored_noise`, whole-clip SNR);
- babble: 3 recordings of OTHER speakers, each at unit power, summed and mixed in at 10 dB
  (:func:`spkid.audio.noise.babble`);
- reverberation: a simulated room of RT60 0.3 / 0.6 / 0.9 s (:func:`spkid.audio.rooms.simulate_rir`,
  its DRR and early reflections drawn; :func:`spkid.audio.rooms.reverberate`);
- telephone: 300-3400 Hz band-pass, through 8 kHz with 8-bit mu-law (:func:`spkid.audio.channels.telephone`);
- mixture: the RT60 0.6 s room, then white noise at 10 dB, then the telephone channel.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spkid.audio.channels import telephone  # noqa: E402
from spkid.audio.noise import add_colored_noise, babble  # noqa: E402
from spkid.audio.rooms import reverberate, simulate_rir  # noqa: E402

BABBLE_TALKERS = 3
VAL_TAG = 0x56414C  # "VAL": validation copies draw from [seed, VAL_TAG, condition, item]


def _noise(snr_db):
    return lambda y, sr, rng, others: add_colored_noise(y, snr_db, rng, "white")


def _room(rt60):
    return lambda y, sr, rng, others: reverberate(y, simulate_rir(sr, rt60, rng))


def _babble(y, sr, rng, others):
    return babble(y, others(rng), 10.0, rng)


def _telephone(y, sr, rng, others):
    return telephone(y, sr, use_mu_law=True)


def _mixture(y, sr, rng, others):
    return telephone(add_colored_noise(reverberate(y, simulate_rir(sr, 0.6, rng)), 10.0, rng, "white"), sr,
                     use_mu_law=True)


# (name, degradation or None); a condition's index seeds its draws: append, never reorder
CONDITIONS: list[tuple[str, Callable | None]] = [
    ("clean", None),
    ("white noise 20 dB", _noise(20.0)),
    ("white noise 10 dB", _noise(10.0)),
    ("white noise 5 dB", _noise(5.0)),
    ("white noise 0 dB", _noise(0.0)),
    ("babble 3 talkers 10 dB", _babble),
    ("reverb RT60 0.3 s", _room(0.3)),
    ("reverb RT60 0.6 s", _room(0.6)),
    ("reverb RT60 0.9 s", _room(0.9)),
    ("telephone 8 kHz mu-law", _telephone),
    ("mix RT60 0.6+10 dB+tel", _mixture),
]
# the robustness goal's four conditions: what --val-degraded adds to the validation set
GOAL_CONDITIONS = ("white noise 5 dB", "babble 3 talkers 10 dB", "reverb RT60 0.6 s", "telephone 8 kHz mu-law")
NAMES = [name for name, _ in CONDITIONS]


def talker_picker(labels: Sequence[int], waves: Sequence[np.ndarray], query: int):
    """``others(rng)``: :data:`BABBLE_TALKERS` waveforms of ``waves`` whose label differs from ``query``'s
    (distinct speakers while there are enough), chosen with ``rng``."""
    labels = np.asarray(labels)
    others = [int(c) for c in np.unique(labels) if c != labels[query]]
    if not others:
        raise SystemExit("degrade.py: babble needs audio of at least two speakers")

    def pick(rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(len(others))
        out = []
        for k in range(BABBLE_TALKERS):
            pool = np.flatnonzero(labels == others[order[k % len(others)]])
            out.append(waves[int(pool[rng.integers(len(pool))])])
        return out

    return pick


def degrade(cond: int, waves: Sequence[np.ndarray], labels: Sequence[int], sr: int, seed: int, *,
            n: int | None = None, tag: Sequence[int] = ()) -> list[np.ndarray]:
    """The first ``n`` (default all) ``waves`` under condition ``cond`` (clean: the waves themselves), item
    ``i`` drawing from ``default_rng([seed, *tag, cond, i])``."""
    fn = CONDITIONS[cond][1]
    n = len(waves) if n is None else n
    if fn is None:
        return list(waves[:n])
    return [fn(waves[i], sr, np.random.default_rng([seed, *tag, cond, i]), talker_picker(labels, waves, i))
            for i in range(n)]
