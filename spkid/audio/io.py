"""Audio loading: decode, validate, mix down and resample.

:func:`load_audio` is the single entry point every other module uses to read speech. It decodes WAV,
FLAC, OGG (and the other formats libsndfile knows) with :mod:`soundfile` as float32, so integer PCM of
any width (8, 16, 24, 32 bit) is scaled to [-1, 1); it averages channels to mono and resamples with
libsoxr's high-quality filter when the file's rate differs from the one asked for. Formats libsndfile
cannot read (e.g. VoxCeleb2's AAC ``.m4a``) go through librosa/audioread when a decoder backend
(ffmpeg, GStreamer) is installed.

:func:`stream_audio` reads a long file block by block (mono, resampled as it goes with a libsoxr stream),
so an hour-long recording never sits in memory.

Every problem -- a missing or unreadable file, a corrupt header, no samples, digital silence, NaN/Inf
samples, a clip shorter than one analysis window -- raises :class:`~spkid.errors.AudioError` whose
message names the file, so batch jobs can report and skip it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from spkid.errors import AudioError, ConfigError

__all__ = ["AudioInfo", "info", "load_audio", "load_audio_with_rate", "resample", "stream_audio"]

# Extensions libsndfile decodes natively; anything else may go through audioread.
_SOUNDFILE_EXTS = {
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd",
    ".caf", ".w64", ".rf64", ".mp3", ".htk", ".nist", ".sph", ".voc", ".raw", ".paf", ".sf", ".xi",
}


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``sr`` (Hz), ``channels``, ``frames`` (samples per channel),
    ``duration`` (seconds), ``format`` and ``subtype`` (e.g. ``"WAV"``, ``"PCM_16"``)."""

    path: str
    sr: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _check_rate(sr: object, name: str = "sr", allow_none: bool = True) -> None:
    if sr is None and allow_none:
        return
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ConfigError(f"{name} must be a positive integer (Hz){' or None' if allow_none else ''}, got {sr!r}")


def _check_file(path: Path) -> None:
    """Raise AudioError for a missing path, a directory or a zero-byte file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError("file not found", path=path) from None
    except OSError as exc:
        raise AudioError(f"cannot access file: {exc.strerror or exc}", path=path) from None
    if path.is_dir():
        raise AudioError("is a directory, not an audio file", path=path)
    if st.st_size == 0:
        raise AudioError("empty file (0 bytes)", path=path)


def info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header without decoding the samples (soundfile formats only).

    Raises :class:`AudioError` naming the file when it is missing, empty or not decodable.
    """
    import soundfile as sf

    p = Path(path)
    _check_file(p)
    try:
        i = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot decode audio header: {_sf_reason(exc)}", path=p) from None
    return AudioInfo(
        str(p), int(i.samplerate), int(i.channels), int(i.frames),
        float(i.frames) / i.samplerate if i.samplerate else 0.0, i.format, i.subtype,
    )


def _sf_reason(exc: BaseException) -> str:
    msg = str(exc)
    # soundfile prefixes "Error opening '<path>': " -- the path is already in our message.
    return msg.split(": ", 1)[1] if msg.startswith("Error opening") and ": " in msg else msg


def _check_wav_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk is shorter than its header declares.

    libsndfile silently trusts the file size over the header, so a download cut short would otherwise
    load as a shorter clip. A declared size of 0 or 0xFFFFFFFF (streaming writers) is not checked.
    """
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (RF64, W64, ...): libsndfile's own checks apply
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_len = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                if chunk_len not in (0, 0xFFFFFFFF) and chunk_len > present:
                    raise AudioError(
                        f"truncated WAV: the data chunk declares {chunk_len} bytes but only {present} are "
                        "present (incomplete download or copy?)",
                        path=path,
                    )
                return
            pos += 8 + chunk_len + (chunk_len & 1)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode to a float32 (n, channels) array and the native rate."""
    import soundfile as sf

    if path.suffix.lower() in (".wav", ".wave"):
        _check_wav_complete(path)

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        sf_reason = _sf_reason(exc)
    if path.suffix.lower() in _SOUNDFILE_EXTS:
        raise AudioError(f"cannot decode audio: {sf_reason}", path=path)
    return _decode_audioread(path, sf_reason)


def _decode_audioread(path: Path, sf_reason: str) -> tuple[np.ndarray, int]:
    """Fallback for formats libsndfile lacks (m4a/aac, ...), via audioread (ffmpeg/GStreamer)."""
    try:
        import audioread
    except ImportError:
        raise AudioError(
            f"cannot decode audio ({sf_reason}); formats like .m4a need the optional audioread "
            "package with ffmpeg or GStreamer installed",
            path=path,
        ) from None
    try:
        with audioread.audio_open(str(path)) as f:
            rate, channels = int(f.samplerate), int(f.channels)
            raw = b"".join(f)
    except (audioread.DecodeError, OSError, EOFError) as exc:
        hint = "" if not isinstance(exc, audioread.NoBackendError) else (
            "no audioread backend could open it; install ffmpeg or GStreamer to read this format"
        )
        raise AudioError(f"cannot decode audio ({sf_reason}); {hint or exc}", path=path) from None
    pcm = np.frombuffer(raw, dtype="<i2")
    usable = (pcm.size // channels) * channels if channels else 0
    data = pcm[:usable].reshape(-1, max(channels, 1)).astype(np.float32) / 32768.0
    return data, rate


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with libsoxr (HQ): ``(n,)`` or ``(n, channels)`` float32 in, same out."""
    _check_rate(orig_sr, "orig_sr", allow_none=False)
    _check_rate(target_sr, "target_sr", allow_none=False)
    if orig_sr == target_sr:
        return np.asarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(
        np.float32, copy=False
    )


def load_audio_with_rate(
    path: str | os.PathLike,
    sr: int | None = 16000,
    mono: bool = True,
    *,
    min_duration: float = 0.025,
) -> tuple[np.ndarray, int]:
    """Like :func:`load_audio` but also return the rate of the returned samples.

    With ``sr=None`` the file's native rate is kept and returned.
    """
    _check_rate(sr)
    if not (isinstance(min_duration, (int, float)) and not isinstance(min_duration, bool)
            and math.isfinite(min_duration) and min_duration >= 0):
        raise ConfigError(f"min_duration must be a finite number of seconds >= 0, got {min_duration!r}")
    p = Path(path)
    _check_file(p)
    data, rate = _decode(p)
    n = data.shape[0]
    if n == 0:
        raise AudioError("empty audio (0 samples)", path=p)
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate} in header", path=p)
    if not np.isfinite(data).all():
        raise AudioError("contains NaN or Inf samples", path=p)
    if not data.any():
        raise AudioError("silent: every sample is zero", path=p)
    if n / rate < min_duration:
        raise AudioError(
            f"too short: {n} samples = {n / rate:.4f} s at {rate} Hz, need >= {min_duration} s",
            path=p,
        )
    if mono:
        y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    else:
        y = data
    if sr is not None and sr != rate:
        y, rate = resample(y, rate, int(sr)), int(sr)
    y = np.ascontiguousarray(y if mono else y.T, dtype=np.float32)
    if not np.isfinite(y).all():  # finite but absurd float samples (e.g. 1e38) overflow when mixed/resampled
        raise AudioError(f"samples overflow to NaN/Inf when mixed down or resampled (peak "
                         f"{float(np.abs(data).max()):.3g}; corrupt float data?)", path=p)
    return y, rate


def load_audio(
    path: str | os.PathLike,
    sr: int | None = 16000,
    mono: bool = True,
    *,
    min_duration: float = 0.025,
) -> np.ndarray:
    """Load an audio file as float32 samples in [-1, 1].

    Parameters
    ----------
    path : file to read (WAV/FLAC/OGG/...; m4a etc. need audioread with ffmpeg).
    sr : target rate in Hz; the file is resampled (libsoxr, HQ) when it differs. ``None`` keeps the
        native rate (use :func:`load_audio_with_rate` to learn it).
    mono : average all channels into one.
    min_duration : shortest acceptable clip in seconds (default: one 25 ms analysis window).

    Returns
    -------
    y : ``(n,)`` float32 when ``mono``, else ``(channels, n)`` float32.

    Raises
    ------
    AudioError : the file is missing, a directory, empty, undecodable, silent, non-finite or too short.
    ConfigError : ``sr`` is not a positive integer or ``min_duration`` is invalid.
    """
    return load_audio_with_rate(path, sr, mono, min_duration=min_duration)[0]


def stream_audio(path: str | os.PathLike, sr: int = 16000, block_seconds: float = 1.0):
    """Yield ``(n,)`` float32 mono blocks of about ``block_seconds`` at rate ``sr``, read and resampled
    incrementally: memory stays bounded by one block whatever the file's length.

    Formats libsndfile cannot read are decoded whole by :func:`load_audio` and then cut into blocks. A
    missing, empty or undecodable file raises AudioError, as do NaN/Inf samples (when the block holding them
    is read); digital silence is not an error here (a long recording may be silent).
    """
    import soundfile as sf

    _check_rate(sr, allow_none=False)
    if not (isinstance(block_seconds, (int, float)) and block_seconds > 0):
        raise ConfigError(f"block_seconds must be positive, got {block_seconds!r}")
    p = Path(path)
    _check_file(p)
    if p.suffix.lower() in (".wav", ".wave"):
        _check_wav_complete(p)
    try:
        handle = sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if p.suffix.lower() in _SOUNDFILE_EXTS:
            raise AudioError(f"cannot decode audio: {_sf_reason(exc)}", path=p) from None
        y = load_audio(p, sr=sr)
        step = max(1, int(block_seconds * sr))
        yield from (y[i:i + step] for i in range(0, len(y), step))
        return
    with handle:
        rate = int(handle.samplerate)
        stream = None
        if rate != sr:
            import soxr

            stream = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")
        step, total = max(1, int(block_seconds * rate)), 0
        while True:
            try:
                data = handle.read(step, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"cannot decode audio at sample {total}: {_sf_reason(exc)}", path=p) from None
            last = data.shape[0] < step
            total += data.shape[0]
            if not np.isfinite(data).all():
                raise AudioError(f"contains NaN or Inf samples (before sample {total})", path=p)
            y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
            if stream is not None:
                y = stream.resample_chunk(np.ascontiguousarray(y), last=last)
            if y.size:
                yield np.ascontiguousarray(y, dtype=np.float32)
            if last:
                break
        if total == 0:
            raise AudioError("empty audio (0 samples)", path=p)
