"""Audio in: read, resample, mix down and cut into fixed patches.

Files are read with libsndfile (``soundfile``): wav/aiff (8/16/24/32-bit integer, 32/64-bit
float), flac, ogg/vorbis/opus and mp3. Samples come back as float32 in [-1, 1], shape
``(samples,)`` for mono or ``(channels, samples)`` with ``mono=False`` (librosa's layout).

Long files are guarded: :func:`load` refuses more than ``max_seconds`` of audio (one clear
error, nothing allocated) and reads only ``offset``/``duration`` when asked;
:func:`stream` walks any file block by block in constant memory.

Headers are not trusted: only regular files are opened (a pipe or a device would block);
decoding goes block by block and ends where the decoder's data ends, whatever length the
header promises; what a read may decode is bounded before anything is allocated by what the
file's bytes can hold (:func:`capacity_samples`) and by :data:`MAX_DECODED_BYTES`; :func:`info`
says when a header is implausible (``plausible``, ``warning``).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import AudioFileError, MusicLensError, ParameterError, regular_file
from musiclens.core.progress import Progress, run

#: Extensions we offer in file dialogs. Anything libsndfile can read is accepted.
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")

#: Default guard against reading hours of audio into memory (seconds).
DEFAULT_MAX_SECONDS = 30 * 60.0

#: The most one :func:`load` returns (float32 bytes after mixing and resampling), checked
#: before decoding: 30 min of stereo at 48 kHz is 0.69 GB.
MAX_DECODED_BYTES = 1 << 30

#: Samples (frames × channels) decoded at a time by :func:`load` and at most by one block
#: of :func:`stream`: 4 MB of float32.
BLOCK_SAMPLES = 1 << 20

#: Bytes per sample of the uncompressed and fixed-rate subtypes (libsndfile's names): a
#: file of such samples holds at most ``size / bytes`` samples.
BYTES_PER_SAMPLE = {
    "PCM_S8": 1.0,
    "PCM_U8": 1.0,
    "PCM_16": 2.0,
    "PCM_24": 3.0,
    "PCM_32": 4.0,
    "FLOAT": 4.0,
    "DOUBLE": 8.0,
    "ULAW": 1.0,
    "ALAW": 1.0,
    "IMA_ADPCM": 0.5,
    "MS_ADPCM": 0.5,
    "G721_32": 0.5,
    "G723_24": 0.375,
    "G723_40": 0.625,
}

#: Containers whose subtype names the decoded samples, not how they are stored (FLAC's PCM_16).
COMPRESSED_FORMATS = frozenset({"FLAC", "OGG", "MPEG", "MP3", "CAF"})

#: Compressed subtypes (Vorbis, Opus, FLAC, MP3, ...): at most this many samples per byte.
#: Measured on 120 s of digital silence at 48 kHz, the most compressible signal: FLAC 342,
#: Vorbis 371, Opus 205, MP3 12; six times the largest leaves room for any real file.
COMPRESSED_SAMPLES_PER_BYTE = 2048.0

#: What :func:`info` calls a plausible header.
PLAUSIBLE_RATES = (1000, 768_000)  # Hz
PLAUSIBLE_CHANNELS = 64
PLAUSIBLE_SECONDS = 24 * 3600.0


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
    size: int = 0  # the file's bytes
    plausible: bool = True  # False: the header claims what such a file cannot be (``warning`` says what)
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: libsndfile's messages in a reader's terms (first match wins); "File does not exist or is
#: not a regular file" is what its mp3 reader says of any mp3 it cannot open
_DECODER_SAYS: tuple[tuple[str, str], ...] = (
    ("does not exist or is not a regular file", "the decoder does not recognise its contents"),
    ("Format not recognised", "the decoder does not recognise its contents"),
    ("unimplemented format", "it holds audio in an encoding the decoder does not implement"),
    ("file is malformed", "its header is malformed"),
    ("SF_INFO struct incomplete", "its header is inconsistent (channels, rate or format)"),
    ("Too many channels", "its header claims more channels than the decoder reads"),
    ("Unspecified internal error", "the decoder stopped on damaged data"),
    ("lost sync", "the compressed stream is damaged (the decoder lost sync)"),
    ("unknown error in flac decoder", "the compressed stream is damaged"),
)


def _decoder_reason(path: Path, exc: Exception) -> str:
    """What a decoder's exception says, in the user's terms (libsndfile's own words when they are clear)."""
    detail = " ".join(str(exc).split())
    detail = detail.removeprefix("Error opening ").removeprefix(repr(str(path)) + ": ")
    for needle, reason in _DECODER_SAYS:
        if needle.lower() in detail.lower():
            return reason
    return detail.removeprefix("Error : ") or "the decoder does not recognise its contents"


def _open_error(path: Path, exc: Exception) -> AudioFileError:
    regular_file(path, "audio file", AudioFileError)
    return AudioFileError(
        f"{path} is not a readable audio file (supported: wav, flac, ogg, mp3, aiff): {_decoder_reason(path, exc)}"
    )


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
    """Header information of an audio file; raises :class:`AudioFileError` if unreadable.
    ``plausible`` is False (and ``warning`` says why) for a header claiming a rate outside
    :data:`PLAUSIBLE_RATES`, more than :data:`PLAUSIBLE_CHANNELS` channels, more than
    :data:`PLAUSIBLE_SECONDS`, or more samples than the file's bytes can hold."""
    import soundfile as sf

    path = Path(path)
    size = regular_file(path, "audio file", AudioFileError)
    try:
        with _decoder_quiet(path):
            i = sf.info(str(path))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise _open_error(path, exc) from None
    if i.samplerate <= 0 or i.channels <= 0:
        raise AudioFileError(f"{path}: invalid header (rate {i.samplerate}, channels {i.channels})")
    meta = AudioInfo(
        str(path),
        i.frames / i.samplerate,
        int(i.samplerate),
        int(i.channels),
        max(0, int(i.frames)),
        i.format,
        i.subtype,
        size,
    )
    problems = _implausible(meta)
    if problems:
        meta = AudioInfo(
            **(
                meta.to_dict()
                | {"plausible": False, "warning": f"implausible header (corrupt?): it claims {'; '.join(problems)}"}
            )
        )
    return meta


def capacity_samples(meta: AudioInfo) -> int:
    """The most samples (frames × channels) a file of ``meta.size`` bytes can hold:
    ``size / bytes per sample`` for uncompressed subtypes (:data:`BYTES_PER_SAMPLE`), ``size ×``
    :data:`COMPRESSED_SAMPLES_PER_BYTE` otherwise."""
    per = None if meta.format in COMPRESSED_FORMATS else BYTES_PER_SAMPLE.get(meta.subtype)
    return int(meta.size / per) if per else int(meta.size * COMPRESSED_SAMPLES_PER_BYTE)


def _implausible(meta: AudioInfo) -> list[str]:
    """What a header claims that such a file cannot be (empty: plausible)."""
    low, high = PLAUSIBLE_RATES
    problems = []
    if not low <= meta.sample_rate <= high:
        problems.append(f"a sample rate of {meta.sample_rate} Hz (audio has {low}–{high} Hz)")
    if meta.channels > PLAUSIBLE_CHANNELS:
        problems.append(f"{meta.channels} channels (more than {PLAUSIBLE_CHANNELS})")
    if meta.duration_s > PLAUSIBLE_SECONDS:
        problems.append(f"{meta.duration_s / 3600:.3g} hours (more than {PLAUSIBLE_SECONDS / 3600:.0f})")
    if meta.frames * meta.channels > capacity_samples(meta):
        problems.append(
            f"{meta.frames} frames of {meta.channels} channels, more than its {meta.size} bytes can hold "
            f"({capacity_samples(meta) // meta.channels} frames)"
        )
    return problems


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

    Raises :class:`AudioFileError` for a file that is not a regular file, cannot be decoded,
    is truncated, or would need more than :data:`MAX_DECODED_BYTES` (the decoded array and its
    resampled copy, computed from the header bounded by what the file's bytes can hold, before
    anything is decoded).
    """
    steps = load_steps(
        path,
        sr=sr,
        mono=mono,
        offset=offset,
        duration=duration,
        max_seconds=max_seconds,
        allow_truncated=allow_truncated,
    )
    return run(steps)


def load_steps(
    path: str | os.PathLike[str],
    *,
    sr: int | None = None,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_truncated: bool = False,
) -> Generator[Progress, None, tuple[np.ndarray, int]]:
    """:func:`load` in steps: yields a :class:`Progress` after each block it decodes
    (:data:`BLOCK_SAMPLES` samples) and before resampling; ``fraction``: the samples decoded
    over all, decoding and resampling (when the rates differ) each one pass over the
    samples; returns what :func:`load` returns."""
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
    # bound what is read before anything is decoded: no more frames than the file can hold
    frames = min(stop - start, capacity_samples(meta) // meta.channels)
    seconds = frames / meta.sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(
            f"{path} is {seconds / 60:.1f} min long, more than the {max_seconds / 60:.0f} min "
            "that are read at once; choose a part (offset/duration) or raise the limit"
            + (f" ({meta.warning})" if meta.warning else "")
        )
    rate = meta.sample_rate if sr is None else int(sr)
    decoded = 4.0 * (1 if mono else meta.channels) * frames  # the decoded array, then its resampled copy
    out_bytes = decoded + (decoded * rate / meta.sample_rate if rate != meta.sample_rate else 0.0)
    if out_bytes > MAX_DECODED_BYTES:
        raise AudioFileError(
            f"{path}: reading it would take {out_bytes / 2**30:.1f} GB ({meta.channels} channels of "
            f"{frames / meta.sample_rate:.0f} s at {meta.sample_rate} Hz"
            + (f" resampled to {rate} Hz" if rate != meta.sample_rate else "")
            + f"), more than the {MAX_DECODED_BYTES / 2**30:.0f} GB read at once"
            + (f"; {meta.warning}" if meta.warning else "; choose a part (offset/duration) or mix to mono")
        )
    share = 0.5 if rate != meta.sample_rate else 1.0  # of the passes over the samples: decoding
    yield Progress(fraction=0.0, message=f"reading {path.name}")
    data = yield from _decode(path, meta, start, frames, mono=mono, share=share)  # (channels or 1, frames decoded)
    # An mp3 header only estimates its length: allow it 5 % slack before calling it truncated.
    slack = 0.05 if meta.format in ("MP3", "MPEG") else 0.0
    if data.shape[1] == 0 or (data.shape[1] < (1 - slack) * (stop - start) and not allow_truncated):
        raise AudioFileError(
            f"{path} is truncated: its header promises {(stop - start) / meta.sample_rate:.2f} s, "
            f"only {data.shape[1] / meta.sample_rate:.2f} s could be decoded"
        )
    audio = data[0] if mono else data
    if rate != meta.sample_rate:
        yield Progress(fraction=share, message=f"resampling {path.name} to {rate} Hz")
        audio = resample(audio, orig_sr=meta.sample_rate, target_sr=rate)
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def _blocks(path: Path, meta: AudioInfo, start: int, frames: int) -> Iterator[np.ndarray]:
    """Decode ``frames`` frames from ``start``: yields (n, channels) float32 arrays of what was
    actually decoded (never a reused buffer), read in a fixed grid of
    :data:`BLOCK_SAMPLES` ``// channels`` frames (the mp3 decoder's last bit depends on where
    reads split: :func:`load` and :func:`stream` read the same grid, so they give the same
    samples), and ends where the decoder's data ends, whatever the header promised. Raises
    :class:`AudioFileError` when the decoder fails or decodes more than the file's bytes can
    hold (:func:`capacity_samples`), holds non-finite samples, or the header's sample rate is
    outside :data:`PLAUSIBLE_RATES` or its channels more than :data:`PLAUSIBLE_CHANNELS`."""
    import soundfile as sf

    low, high = PLAUSIBLE_RATES
    if not low <= meta.sample_rate <= high:
        raise AudioFileError(
            f"{path}: its header claims a sample rate of {meta.sample_rate} Hz; audio is read at "
            f"{low}–{high} Hz (a corrupt header?)"
        )
    if meta.channels > PLAUSIBLE_CHANNELS:
        raise AudioFileError(
            f"{path}: its header claims {meta.channels} channels; at most {PLAUSIBLE_CHANNELS} are read "
            "(a corrupt header?)"
        )
    limit = capacity_samples(meta)
    block = max(1, BLOCK_SAMPLES // meta.channels)
    done = 0
    try:
        with _decoder_quiet(path):
            f = sf.SoundFile(str(path))
        with f:
            if start:
                with _decoder_quiet(path):
                    f.seek(start)
            while done < frames:
                with _decoder_quiet(path):
                    data = f.read(min(block, frames - done), dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    return
                if not np.isfinite(data).all():
                    raise AudioFileError(
                        f"{path} contains non-finite samples (NaN or infinity) "
                        f"after {(start + done) / meta.sample_rate:.2f} s"
                    )
                done += data.shape[0]
                if (start + done) * meta.channels > limit:
                    raise AudioFileError(
                        f"{path} decodes to more audio than its {meta.size} bytes can hold "
                        f"({(start + done) * meta.channels} samples): the file is corrupt"
                    )
                yield data
    except MusicLensError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure becomes one AudioFileError
        raise AudioFileError(
            f"{path} could not be decoded after {(start + done) / meta.sample_rate:.2f} s: {_decoder_reason(path, exc)}"
        ) from None


def _decode(
    path: Path, meta: AudioInfo, start: int, frames: int, *, mono: bool, share: float = 1.0
) -> Generator[Progress, None, np.ndarray]:
    """Yields a :class:`Progress` after each block (``fraction``: ``share`` × frames decoded /
    ``frames``), returns ``frames`` frames from ``start`` as ``(channels, n)`` float32 (``(1, n)`` mixed down
    block by block when ``mono``), ``n`` the frames actually decoded. ``frames`` is bounded by
    the caller (what the file can hold, :data:`MAX_DECODED_BYTES`); the array is reserved
    once and filled as the decoder gives samples (pages the decoder never fills are never
    touched), so memory follows what is decoded, never the header's promise."""
    out = np.empty((1 if mono else meta.channels, frames), np.float32)
    n = 0
    for d in _blocks(path, meta, start, frames):
        k = d.shape[0]
        out[:, n : n + k] = to_mono(d.T) if mono else d.T
        n += k
        seconds = f"{n / meta.sample_rate:.0f} s of {frames / meta.sample_rate:.0f} s"
        yield Progress(fraction=share * min(1.0, n / frames), message=f"reading {path.name}: {seconds}")
    return out if n == frames else np.ascontiguousarray(out[:, :n])


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
    ``(samples,)`` (or ``(channels, samples)``), at the file's own rate, in constant memory.
    Blocks are ``block_seconds`` long (at most 4 × :data:`BLOCK_SAMPLES` samples), the last
    one shorter; the stream ends where the decoded data ends, so the blocks put together are
    exactly what :func:`load` returns (same rate, no ``max_seconds``)."""
    if block_seconds <= 0:
        raise ParameterError(f"block_seconds must be > 0, got {block_seconds}")
    path = Path(path)
    meta = info(path)
    block = max(1, min(int(block_seconds * meta.sample_rate), 4 * BLOCK_SAMPLES // meta.channels))
    position = 0
    held: list[np.ndarray] = []  # decoded frames not yet yielded, fewer than ``block`` + one read
    count = 0
    for data in _blocks(path, meta, 0, meta.frames):
        held.append(data)
        count += data.shape[0]
        while count >= block:
            joined = np.concatenate(held) if len(held) > 1 else held[0]
            out, rest = joined[:block], joined[block:]
            held, count = ([rest] if len(rest) else []), len(rest)
            yield position / meta.sample_rate, (to_mono(out.T) if mono else np.ascontiguousarray(out.T))
            position += block
    if count:
        out = np.concatenate(held) if len(held) > 1 else held[0]
        yield position / meta.sample_rate, (to_mono(out.T) if mono else np.ascontiguousarray(out.T))


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
