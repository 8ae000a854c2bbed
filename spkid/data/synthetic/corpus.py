"""The built-in synthetic corpus on disk: speakers from :mod:`spkid.data.synthetic.voices`, one folder
per speaker of 16-bit WAV clips (the folder-per-speaker layout every ``spkid`` command reads)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from spkid.data.synthetic.voices import make_speakers, synthesize_utterance
from spkid.errors import ConfigError

__all__ = ["make_corpus"]


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    """16-bit PCM WAV, written atomically."""
    import soundfile as sf

    from spkid.fileio import atomic_write_bytes

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())


def make_corpus(
    out_dir: str | os.PathLike,
    n_speakers: int = 8,
    utterances_per_speaker: int = 24,
    sr: int = 16000,
    seed: int = 0,
    *,
    duration: tuple[float, float] = (1.5, 3.0),
    spread: float = 1.5,
    channel_db: float = 6.0,
    progress: bool = False,
) -> list[Path]:
    """Write a folder-per-speaker corpus ``out_dir/spkNN/spkNN_UUU.wav`` (16-bit mono WAV) and return
    the paths (sorted). Deterministic for a given ``seed``; existing files are overwritten.

    ``duration`` is the (min, max) utterance length in seconds; ``spread`` and ``channel_db`` tune how
    far apart speakers are and how much each recording is coloured (see :func:`make_speakers`,
    :func:`synthesize_utterance`).
    """
    if utterances_per_speaker < 1:
        raise ConfigError(f"utterances_per_speaker must be >= 1, got {utterances_per_speaker}")
    lo, hi = duration
    if not 0.3 <= lo <= hi:
        raise ConfigError(f"duration must be a (min, max) range with 0.3 <= min <= max, got {duration}")
    out = Path(out_dir)
    speakers = make_speakers(n_speakers, seed=seed, spread=spread)
    jobs = [(p, j) for p in speakers for j in range(utterances_per_speaker)]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="synthesising", unit="utt")
    paths = []
    for prof, j in jobs:
        rng = np.random.default_rng([seed, int(prof.name[3:]), j])
        y = synthesize_utterance(prof, sr=sr, duration=float(rng.uniform(lo, hi)), seed=rng,
                                 channel_db=channel_db)
        folder = out / prof.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prof.name}_{j:03d}.wav"
        _write_wav(path, y, sr)
        paths.append(path)
    return sorted(paths)
