"""Audio in: read, resample, mix down and cut into fixed patches.

Files are read with libsndfile (``soundfile``): wav/aiff (8/16/24/32-bit integer, 32/64-bit
float), flac, ogg/vorbis/opus and mp3. Samples come back as float32 in [-1, 1], shape
``(samples,)`` for mono or ``(channels, samples)`` with ``mono=False`` (librosa's layout).

Long files are guarded: :func:`load` refuses more than ``max_seconds`` of audio (one clear
error, nothing allocated) and reads only ``offset``/``duration`` when asked;
:func:`stream` walks any file block by block in constant memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import AudioFileError, ParameterError

#: Extensions we offer in file dialogs. Anything libsndfile can read is accepted.
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")

#: Default guard against reading hours of audio into memory (seconds).
DEFAULT_MAX_SECONDS = 30 * 60.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (no samples decoded)."""

    path: str
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _open_error(path: Path, exc: Exception) -> AudioFileError:
    if not path.exists():
        return AudioFileError(f"audio file not found: {path}")
    if path.is_dir():
        return AudioFileError(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        return AudioFileError(f"{path} is empty (0 bytes)")
    detail = " ".join(str(exc).split())
    return AudioFileError(f"{path} is not a readable audio file (supported: wav, flac, ogg, mp3, aiff): {detail}")


def _is_mpeg(path: Path) -> bool:
    """An mp3 by its name or its first bytes (an ID3 tag or an MPEG frame sync)."""
    if path.suffix.lower() in (".mp3", ".mp2", ".mpga", ".mpeg"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@contextmanager
def _decoder_quiet(path: Path) -> Iterator[None]:
    """Silence what the mp3 decoder (libmpg123 inside libsndfile) writes to file descriptor 2
    ("Note: Illegal Audio-MPEG-Header ...", "error: dequantization failed!"): our own
    one-line error says what is wrong. Other formats' decoders do not print; they run as is."""
    import sys

    if not _is_mpeg(path):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (e.g. a detached process)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header information of an audio file; raises :class:`AudioFileError` if unreadable."""
    import soundfile as sf

    path = Path(path)
    try:
        with _decoder_quiet(path):
            i = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise _open_error(path, exc) from None
    if i.samplerate <= 0 or i.channels <= 0:
        raise AudioFileError(f"{path}: invalid header (rate {i.samplerate}, channels {i.channels})")
    return AudioInfo(
        str(path), i.frames / i.samplerate, int(i.samplerate), int(i.channels), int(i.frames), i.format, i.subtype
    )


def load(
    path: str | os.PathLike[str],
    *,
    sr: int | None = None,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_truncated: bool = False,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32.

    Parameters
    ----------
    sr : resample to this rate in Hz (None keeps the file's rate).
    mono : average the channels (librosa's ``to_mono``); else return (channels, samples).
    offset, duration : read only this part, in seconds.
    max_seconds : refuse to read more than this many seconds (None: no limit).
    allow_truncated : read what is there of a file cut short instead of raising.

    Returns
    -------
    (audio, rate): ``(samples,)`` or ``(channels, samples)`` float32, and its rate in Hz.
    """
    import soundfile as sf

    path = Path(path)
    meta = info(path)
    if not allow_truncated:
        _check_not_truncated(path, meta)
    if offset < 0:
        raise ParameterError(f"offset must be >= 0 s, got {offset}")
    if duration is not None and duration <= 0:
        raise ParameterError(f"duration must be > 0 s, got {duration}")
    if meta.frames == 0:
        raise AudioFileError(f"{path} holds no audio (0 samples)")
    start = int(round(offset * meta.sample_rate))
    if start >= meta.frames:
        raise ParameterError(f"offset {offset} s is past the end of {path} ({meta.duration_s:.2f} s)")
    stop = meta.frames if duration is None else min(meta.frames, start + int(round(duration * meta.sample_rate)))
    seconds = (stop - start) / meta.sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(
            f"{path} is {seconds / 60:.1f} min long, more than the {max_seconds / 60:.0f} min "
            "that are read at once; choose a part (offset/duration) or raise the limit"
        )
    try:
        with _decoder_quiet(path):
            data = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)[0]
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one AudioFileError
        raise AudioFileError(
            f"{path} could not be decoded (truncated or corrupt?): {' '.join(str(exc).split())}"
        ) from None
    # An mp3 header only estimates its length: allow it 5 % slack before calling it truncated.
    slack = 0.05 if meta.format in ("MP3", "MPEG") else 0.0
    if data.shape[0] == 0 or (data.shape[0] < (1 - slack) * (stop - start) and not allow_truncated):
        raise AudioFileError(
            f"{path} is truncated: its header promises {(stop - start) / meta.sample_rate:.2f} s, "
            f"only {data.shape[0] / meta.sample_rate:.2f} s could be decoded"
        )
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioFileError(f"{path} contains {bad} non-finite samples (NaN or infinity)")
    audio = data.T  # (channels, samples)
    if mono:
        audio = to_mono(audio)
    rate = meta.sample_rate
    if sr is not None and sr != rate:
        audio = resample(audio, orig_sr=rate, target_sr=sr)
        rate = sr
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def _check_not_truncated(path: Path, meta: AudioInfo) -> None:
    """Raise if a WAV file's data chunk promises more bytes than the file holds.

    libsndfile silently shortens such files; a user should know their file is damaged.
    """
    if meta.format != "WAV":
        return
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                present = size - f.tell()
                if chunk_size != 0xFFFFFFFF and chunk_size > present:
                    raise AudioFileError(
                        f"{path} is truncated: its header promises {chunk_size} bytes of audio, "
                        f"the file holds {present} ({meta.duration_s:.2f} s readable)"
                    )
                return
            f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def stream(
    path: str | os.PathLike[str], *, block_seconds: float = 30.0, mono: bool = True
) -> Iterator[tuple[float, np.ndarray]]:
    """Read a file of any length in blocks: yields ``(start_s, block)``, block float32
    ``(samples,)`` (or ``(channels, samples)``), at the file's own rate, in constant memory."""
    import soundfile as sf

    meta = info(path)
    if block_seconds <= 0:
        raise ParameterError(f"block_seconds must be > 0, got {block_seconds}")
    block = max(1, int(block_seconds * meta.sample_rate))
    position = 0
    blocks = sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True)
    try:
        while True:
            with _decoder_quiet(Path(path)):
                data = next(blocks, None)
            if data is None:
                break
            out = data.T
            yield position / meta.sample_rate, (to_mono(out) if mono else out)
            position += data.shape[0]
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one AudioFileError
        raise AudioFileError(
            f"{path} could not be decoded after {position / meta.sample_rate:.2f} s: {' '.join(str(exc).split())}"
        ) from None


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) or (samples,) -> (samples,), the mean over channels."""
    audio = np.asarray(audio)
    return audio if audio.ndim == 1 else audio.mean(axis=0, dtype=np.float32)


def resample(audio: np.ndarray, *, orig_sr: int, target_sr: int, quality: str = "soxr_hq") -> np.ndarray:
    """Resample along the last axis with soxr (high quality by default).

    The output has ``ceil(n · target_sr / orig_sr)`` samples, like librosa's ``resample``
    with ``res_type="soxr_hq"`` (same library, same settings, same samples).
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return audio
    import soxr

    audio = np.asarray(audio, dtype=np.float32)
    out = soxr.resample(audio.T, orig_sr, target_sr, quality=quality).T
    n = int(np.ceil(audio.shape[-1] * float(target_sr) / orig_sr))
    if out.shape[-1] < n:
        out = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, n - out.shape[-1])])
    return np.ascontiguousarray(out[..., :n], dtype=np.float32)


def patch_starts(total: int, length: int, hop: int, *, pad_last: bool = False) -> list[int]:
    """Start indices of patches of ``length`` every ``hop`` over ``total`` items.

    Without ``pad_last`` the trailing partial patch is dropped (MusiCNN's and the GTZAN
    study's convention); with it, one more patch covers the remainder (zero-padded).
    """
    if length <= 0 or hop <= 0:
        raise ParameterError(f"patch length and hop must be positive, got {length}, {hop}")
    starts = list(range(0, max(total - length, -1) + 1, hop))
    if pad_last and total > 0:
        covered = starts[-1] + length if starts else 0
        if covered < total:
            starts.append(starts[-1] + hop if starts else 0)
    return starts


def segment(
    x: np.ndarray,
    *,
    length: float,
    hop: float | None = None,
    rate: float = 1.0,
    pad_last: bool = False,
) -> np.ndarray:
    """Cut the last axis of ``x`` into fixed patches.

    Parameters
    ----------
    x : (..., N) audio samples or spectrogram frames.
    length, hop : patch length and hop, in seconds when ``rate`` is given (samples or frames
        per second), in samples/frames when ``rate=1``. ``hop`` defaults to ``length``.
    pad_last : zero-pad and keep the trailing partial patch instead of dropping it.

    Returns
    -------
    (P, ..., L) array of P patches of L items. P may be 0 when ``x`` is shorter than a patch.
    Example: a 30 s GTZAN clip, ``segment(y, length=3, rate=22050)`` -> (10, 66150).
    """
    x = np.asarray(x)
    n_len = int(round(length * rate))
    n_hop = int(round((hop if hop is not None else length) * rate))
    starts = patch_starts(x.shape[-1], n_len, n_hop, pad_last=pad_last)
    patches = np.zeros((len(starts),) + x.shape[:-1] + (n_len,), dtype=x.dtype)
    for i, s in enumerate(starts):
        part = x[..., s : s + n_len]
        patches[i, ..., : part.shape[-1]] = part
    return patches


def save(path: str | os.PathLike[str], audio: np.ndarray, sr: int, *, subtype: str | None = None) -> Path:
    """Write float audio ``(samples,)`` or ``(channels, samples)`` to wav/flac/ogg, never clipped.

    Dreams and auralisations can exceed full scale. A WAV with such peaks is written as
    32-bit float (the level is kept exactly); formats without float samples (FLAC, 16-bit)
    get the whole signal scaled so its peak is 0.99 instead of the tops being cut off.
    """
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise ParameterError("refusing to write audio with NaN or infinite samples")
    path = Path(path)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        if subtype is None and path.suffix.lower() in (".wav", ".wave"):
            subtype = "FLOAT"
        elif subtype not in ("FLOAT", "DOUBLE", "VORBIS", "OPUS") and path.suffix.lower() not in (".ogg", ".oga"):
            audio = audio * (0.99 / peak)
    sf.write(str(path), audio.T if audio.ndim == 2 else audio, int(sr), subtype=subtype)
    return path
