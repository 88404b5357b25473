"""Fuzzing the audio and MIDI loaders with mutated real files, each case in a child process.

    .venv/bin/python tests/fuzz_loaders.py --audio 10000 --midi 3000 [--seed 0] [--timeout 10]
        [--memory-mb 1024] [--no-shared] [--show 5]

Seeds: small files written here (WAV 16-bit and float, AIFF, FLAC, Ogg Vorbis, MP3; MIDI
tunes, a multi-track piece, a RIFF-RMID wrapper) plus, when ``../shared/data`` is present,
its small audio and MIDI files. Mutators (own, format-aware, deterministic per case): bit
flips, byte overwrites, truncation, inserted or deleted bytes, header fields set to extremes
(WAV ``fmt``, AIFF ``COMM``, FLAC STREAMINFO, the Ogg Vorbis identification header and page
granules with the page CRC recomputed, the MP3 Xing frame count, MIDI ``MThd``), chunk sizes
corrupted (RIFF, AIFF, MTrk, Ogg segments), duplicated chunks, huge MIDI variable-length
quantities, and garbage behind a real magic number.

Each case is run in a forked child (the parent has imported the loaders already, so a case
costs milliseconds) with ``RLIMIT_AS`` set to what the parent uses plus 1.5 × ``--memory-mb``
(address space the loaders reserve is not all touched), a CPU-time limit of ``--timeout``
seconds and a wall-clock alarm at six times that (a blocked read); a case whose peak
resident memory exceeds ``--memory-mb`` fails as ``memory``; the child's standard error is
captured. Audio cases call ``info``, ``load``, ``load(sr=16000, mono=False)`` and walk ``stream``; when a lenient
``load`` succeeds, the stream put together must equal it. MIDI cases call ``read_midi`` and
``note_window``. A case passes when every call returns or raises a ``MusicLensError`` whose
message is one line without Python internals (no ``SomethingError:`` text), nothing was
written to standard error, and the child neither crashed, hung, nor ran out of its memory.
Prints the counts per outcome, the peak memory of the children and examples of failures;
exits 1 when any case failed. ``tests/test_fuzz_loaders.py`` runs a few hundred cases.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

#: a case's wall-clock limit in CPU-time limits: on a machine shared with other work a case
#: waits for the processor; a loop that never ends is caught by the CPU limit first
WALL_FACTOR = 6

#: outcomes that fail a case
FAILURES = ("foreign", "internal", "chatter", "crash", "hang", "memory", "mismatch")

#: a message that shows Python internals: an exception type name followed by a colon
INTERNAL = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b:|Traceback|object has no attribute|arg is an empty")


# ------------------------------------------------------------------ seeds
def write_seeds(folder: Path) -> dict[str, list[Path]]:
    """Small audio and MIDI files of every kind the loaders read -> {"audio": [...], "midi": [...]}."""
    import pretty_midi
    import soundfile as sf

    from midi_tunes import folk_tune, write_piece

    folder.mkdir(parents=True, exist_ok=True)
    sr = 8000
    t = np.arange(int(0.4 * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 97 * t)).astype(np.float32)
    stereo = np.stack([y, y[::-1]], axis=1)
    audio = []
    for name, data, kw in (
        ("pcm16.wav", y, {"subtype": "PCM_16"}),
        ("float.wav", stereo, {"subtype": "FLOAT"}),
        ("u8.wav", y, {"subtype": "PCM_U8"}),
        ("pcm24.aiff", stereo, {"subtype": "PCM_24"}),
        ("flac.flac", stereo, {"subtype": "PCM_16"}),
        ("vorbis.ogg", stereo, {"subtype": "VORBIS"}),
        ("mono.mp3", y, {"subtype": "MPEG_LAYER_III"}),
    ):
        p = folder / name
        sf.write(str(p), data, sr, **kw)
        audio.append(p)
    midi = [folk_tune(folder / "folk.mid", n=40), folk_tune(folder / "drums.mid", n=30, drums=True)]
    write_piece(folder / "low.mid", low=True, n_notes=20, seed=1)
    midi.append(folder / "low.mid")
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=100.0)
    for prog in (0, 33):
        inst = pretty_midi.Instrument(program=prog)
        for i in range(12):
            inst.notes.append(
                pretty_midi.Note(velocity=70 + i, pitch=48 + prog % 12 + i, start=i * 0.3, end=i * 0.3 + 0.5)
            )
        pm.instruments.append(inst)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(2, 0.0))
    pm.write(str(folder / "two.mid"))
    midi.append(folder / "two.mid")
    smf = (folder / "folk.mid").read_bytes()  # the same tune in a RIFF-RMID wrapper
    body = b"RMID" + b"data" + struct.pack("<I", len(smf)) + smf
    (folder / "wrapped.rmi").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    midi.append(folder / "wrapped.rmi")
    return {"audio": audio, "midi": midi}


def shared_seeds(root: Path | None, per_kind: int = 40) -> dict[str, list[Path]]:
    """Up to ``per_kind`` small files of each kind from ../shared/data (sorted, evenly picked)."""
    found: dict[str, list[Path]] = {"audio": [], "midi": []}
    if root is None or not root.is_dir():
        return found
    audio_ext = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in audio_ext and p.stat().st_size <= 400_000:
            found["audio"].append(p)
        elif ext in (".mid", ".midi") and p.stat().st_size <= 60_000:
            found["midi"].append(p)
    for kind, files in found.items():
        if len(files) > per_kind:
            idx = np.linspace(0, len(files) - 1, per_kind).round().astype(int)
            found[kind] = [files[i] for i in sorted(set(idx))]
    return found


# ------------------------------------------------------------------ mutators
def ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, no reflection)."""
    crc = 0
    for b in page:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def ogg_pages(buf: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of each Ogg page."""
    pages, i = [], 0
    while True:
        i = buf.find(b"OggS", i)
        if i < 0 or i + 27 > len(buf):
            return pages
        n = buf[i + 26]
        end = i + 27 + n + sum(buf[i + 27 : i + 27 + n])
        pages.append((i, min(end, len(buf))))
        i = max(end, i + 4)


def fix_ogg_crcs(buf: bytearray) -> bytearray:
    for start, end in ogg_pages(buf):
        buf[start + 22 : start + 26] = b"\0\0\0\0"
        buf[start + 22 : start + 26] = struct.pack("<I", ogg_crc(bytes(buf[start:end])))
    return buf


def riff_chunks(buf: bytes | bytearray, start: int, big: bool) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of the chunks of a RIFF (little-endian) or IFF/MIDI (big-endian) body."""
    out, i = [], start
    while i + 8 <= len(buf) and len(out) < 64:
        cid, size = bytes(buf[i : i + 4]), int.from_bytes(buf[i + 4 : i + 8], "big" if big else "little")
        out.append((i, cid, size))
        i += 8 + size + (size & 1 if not big else 0)
    return out


EXTREMES32 = (0, 1, 2, 3, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
EXTREMES16 = (0, 1, 2, 3, 8, 32, 64, 240, 255, 0x7FFF, 0x8000, 0xFFFF)


def _extreme(rng: np.random.Generator, bits: int) -> int:
    pool = EXTREMES16 if bits <= 16 else EXTREMES32
    v = int(rng.choice(pool)) if rng.random() < 0.8 else int(rng.integers(0, 2**bits))
    return v & ((1 << bits) - 1)


def mutate_header(buf: bytearray, rng: np.random.Generator) -> str:
    """Set a header field of the file's format to an extreme value -> what was done."""
    if buf[:4] == b"RIFF" and buf[8:12] == b"WAVE":
        chunks = riff_chunks(buf, 12, big=False)
        fmt = next((c for c in chunks if c[1] == b"fmt "), None)
        if fmt is not None:
            field_, off, bits = [
                ("channels", 10, 16),
                ("rate", 12, 32),
                ("byte rate", 16, 32),
                ("align", 20, 16),
                ("bits", 22, 16),
                ("format tag", 8, 16),
            ][int(rng.integers(6))]
            v = _extreme(rng, bits)
            buf[fmt[0] + off : fmt[0] + off + bits // 8] = v.to_bytes(bits // 8, "little")
            return f"wav {field_}={v}"
    if buf[:4] == b"FORM" and buf[8:12] in (b"AIFF", b"AIFC"):
        chunks = riff_chunks(buf, 12, big=True)
        comm = next((c for c in chunks if c[1] == b"COMM"), None)
        if comm is not None:
            o = comm[0] + 8
            which = int(rng.integers(4))
            if which == 0:
                v = _extreme(rng, 16)
                buf[o : o + 2] = v.to_bytes(2, "big")
                return f"aiff channels={v}"
            if which == 1:
                v = _extreme(rng, 32)
                buf[o + 2 : o + 6] = v.to_bytes(4, "big")
                return f"aiff frames={v}"
            if which == 2:
                v = _extreme(rng, 16)
                buf[o + 6 : o + 8] = v.to_bytes(2, "big")
                return f"aiff sample size={v}"
            exponent = int(rng.choice([0, 16383, 16383 + 3, 16383 + 14, 16383 + 31, 16383 + 63, 0x7FFF]))
            buf[o + 8 : o + 18] = struct.pack(">HQ", exponent, 1 << 63)
            return f"aiff rate exponent={exponent}"
    if buf[:4] == b"fLaC" and len(buf) > 42:
        which = int(rng.integers(3))
        if which == 0:  # sample rate: 20 bits at byte 18
            v = int(rng.choice([0, 1, 0xFFFFF, int(rng.integers(0, 1 << 20))]))
            buf[18] = v >> 12 & 0xFF
            buf[19] = v >> 4 & 0xFF
            buf[20] = (buf[20] & 0x0F) | (v & 0x0F) << 4
            return f"flac rate={v}"
        if which == 1:  # channels - 1: 3 bits
            buf[20] = (buf[20] & 0xF1) | int(rng.integers(8)) << 1
            return "flac channels"
        v = int(rng.integers(0, 1 << 36))  # total samples: 36 bits
        buf[21] = (buf[21] & 0xF0) | v >> 32
        buf[22:26] = (v & 0xFFFFFFFF).to_bytes(4, "big")
        return f"flac total samples={v}"
    if buf[:4] == b"OggS":
        pages = ogg_pages(buf)
        which = int(rng.integers(3))
        k = buf.find(b"\x01vorbis")
        if which == 0 and k >= 0:
            if rng.random() < 0.5:
                v = int(rng.choice([0, 1, 3, 8, 64, 240, 255]))
                buf[k + 11] = v
                what = f"vorbis channels={v}"
            else:
                v = _extreme(rng, 32)
                buf[k + 12 : k + 16] = v.to_bytes(4, "little")
                what = f"vorbis rate={v}"
        elif which == 1 and pages:
            start = pages[-1 if rng.random() < 0.7 else int(rng.integers(len(pages)))][0]
            v = int(rng.choice([2**40, 2**62, -1, 0, int(rng.integers(0, 2**33))]))
            buf[start + 6 : start + 14] = struct.pack("<q", v)
            what = f"ogg granule={v}"
        elif pages:
            start = pages[int(rng.integers(len(pages)))][0]
            n = buf[start + 26]
            if n:
                j = start + 27 + int(rng.integers(n))
                buf[j] = int(rng.choice([0, 255, int(rng.integers(256))]))
            what = "ogg segment size"
        else:
            return "ogg (nothing)"
        if rng.random() < 0.8:
            fix_ogg_crcs(buf)
            what += " (crc fixed)"
        return what
    at = buf.find(b"Xing")
    if at < 0:
        at = buf.find(b"Info")
    if at >= 0 and at + 12 <= len(buf):
        v = _extreme(rng, 32)
        buf[at + 8 : at + 12] = v.to_bytes(4, "big")
        return f"mp3 xing frames={v}"
    if buf[:3] == b"ID3" and len(buf) > 10:
        buf[6:10] = bytes(int(b) & 0x7F for b in rng.integers(0, 128, 4))
        return "id3 size"
    if buf[:4] == b"MThd" or buf.find(b"MThd") >= 0:
        o = buf.find(b"MThd")
        which = int(rng.integers(4))
        if which == 0:
            v = _extreme(rng, 32)
            buf[o + 4 : o + 8] = v.to_bytes(4, "big")
            return f"mthd length={v}"
        field_, off = [("format", 8), ("tracks", 10), ("division", 12)][which - 1]
        v = _extreme(rng, 16)
        buf[o + off : o + off + 2] = v.to_bytes(2, "big")
        return f"mthd {field_}={v}"
    i = int(rng.integers(0, max(1, min(len(buf), 64))))
    buf[i] = int(rng.integers(256))
    return "header byte"


def mutate_chunk_size(buf: bytearray, rng: np.random.Generator) -> str:
    """Corrupt one chunk size (RIFF, AIFF, MIDI MTrk; Ogg: a segment) -> what was done."""
    if buf[:4] == b"RIFF" or buf[:4] == b"FORM":
        big = buf[:4] == b"FORM"
        chunks = [(0, buf[:4], 0)] + riff_chunks(buf, 12, big=big)
        off, cid, size = chunks[int(rng.integers(len(chunks)))]
        v = int(
            rng.choice([0, 1, size + 1, max(0, size - 1), size * 2, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(2**32))])
        )
        buf[off + 4 : off + 8] = (v & 0xFFFFFFFF).to_bytes(4, "big" if big else "little")
        return f"chunk {cid!r} size={v}"
    o = buf.find(b"MThd")
    if o >= 0:
        chunks = riff_chunks(buf, o, big=True)
        if chunks:
            off, cid, size = chunks[int(rng.integers(len(chunks)))]
            v = int(rng.choice([0, 1, size + 1, max(0, size - 1), size * 2, 0x7FFFFFFF, 0xFFFFFFFF]))
            buf[off + 4 : off + 8] = (v & 0xFFFFFFFF).to_bytes(4, "big")
            return f"chunk {cid!r} size={v}"
    return mutate_header(buf, rng)


def duplicate_chunk(buf: bytearray, rng: np.random.Generator) -> bytearray:
    """Insert a copy of a chunk (or an Ogg page, or a slice) somewhere else."""
    spans: list[tuple[int, int]] = []
    if buf[:4] in (b"RIFF", b"FORM"):
        spans = [(o, o + 8 + s) for o, _, s in riff_chunks(buf, 12, big=buf[:4] == b"FORM")]
    elif buf[:4] == b"OggS":
        spans = ogg_pages(buf)
    elif buf.find(b"MThd") >= 0:
        spans = [(o, o + 8 + s) for o, _, s in riff_chunks(buf, buf.find(b"MThd"), big=True)]
    if not spans:
        a = int(rng.integers(0, len(buf)))
        spans = [(a, min(len(buf), a + int(rng.integers(1, 4096))))]
    a, b = spans[int(rng.integers(len(spans)))]
    where = int(rng.choice([b, int(rng.integers(0, len(buf) + 1))]))
    return buf[:where] + buf[a:b] + buf[where:]


def midi_events(buf: bytearray, rng: np.random.Generator) -> bytearray:
    """MIDI-specific: a huge variable-length quantity, a data byte over 127, a sysex or meta
    event with a huge length, or a status byte where data should be."""
    o = buf.find(b"MTrk")
    if o < 0:
        return buf
    i = o + 8 + int(rng.integers(0, max(1, len(buf) - o - 8)))
    which = int(rng.integers(4))
    if which == 0:
        return buf[:i] + b"\x8f\xff\xff\xff\x7f" + buf[i:]  # a delta time of 2**32 - 1 ticks
    if which == 1 and i < len(buf):
        buf[i] = int(rng.integers(128, 256))
        return buf
    if which == 2:
        return buf[:i] + (b"\xf0\x8f\xff\xff\x7f" if rng.random() < 0.5 else b"\xff\x01\x8f\xff\xff\x7f") + buf[i:]
    return buf[:i] + bytes([int(rng.choice([0x80, 0x90, 0xB0, 0xC0, 0xE0, 0xF2, 0xFF]))]) + buf[i:]


MUTATORS = (
    "bitflip",
    "bytes",
    "truncate",
    "insert",
    "delete",
    "header",
    "chunksize",
    "duplicate",
    "garbage",
    "midievents",
    "combo",
)


def mutate(data: bytes, rng: np.random.Generator, kind: str) -> tuple[bytes, str]:
    """One mutated copy of ``data`` -> (bytes, what was done)."""
    buf = bytearray(data)
    name = str(rng.choice([m for m in MUTATORS if kind == "midi" or m != "midievents"]))
    n = len(buf)
    if name == "bitflip":
        k = int(rng.integers(1, 9))
        for _ in range(k):
            i = int(rng.integers(0, n))
            buf[i] ^= 1 << int(rng.integers(8))
        return bytes(buf), f"bitflip x{k}"
    if name == "bytes":
        k = int(rng.integers(1, 17))
        head = rng.random() < 0.5  # half the time inside the first 256 bytes (the headers)
        for _ in range(k):
            i = int(rng.integers(0, min(n, 256) if head else n))
            buf[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
        return bytes(buf), f"bytes x{k}"
    if name == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(buf[:cut]), f"truncate to {cut}"
    if name == "insert":
        i = int(rng.integers(0, n + 1))
        extra = rng.integers(0, 256, int(rng.integers(1, 512)), dtype=np.uint8).tobytes()
        return bytes(buf[:i] + extra + buf[i:]), f"insert {len(extra)} at {i}"
    if name == "delete":
        i = int(rng.integers(0, n))
        k = int(rng.integers(1, max(2, n // 8)))
        return bytes(buf[:i] + buf[i + k :]), f"delete {k} at {i}"
    if name == "header":
        what = mutate_header(buf, rng)
        return bytes(buf), what
    if name == "chunksize":
        what = mutate_chunk_size(buf, rng)
        return bytes(buf), what
    if name == "duplicate":
        return bytes(duplicate_chunk(buf, rng)), "duplicate chunk"
    if name == "garbage":
        size = int(rng.integers(0, 8192))
        magic = bytes(buf[: int(rng.choice([4, 12, 44]))])
        return magic + rng.integers(0, 256, size, dtype=np.uint8).tobytes(), f"garbage {size} behind magic"
    if name == "midievents":
        return bytes(midi_events(buf, rng)), "midi events"
    first, what1 = mutate(data, rng, kind)
    second, what2 = mutate(first or data, rng, kind)
    return second, f"{what1} + {what2}"


# ------------------------------------------------------------------ one case in a child
def _check_message(exc: BaseException) -> dict:
    from musiclens.core.errors import MusicLensError

    text = str(exc)
    if not isinstance(exc, MusicLensError):
        return {
            "outcome": "foreign",
            "type": type(exc).__name__,
            "message": text[:300],
            "where": "".join(traceback.format_tb(exc.__traceback__)[-2:])[-600:],
        }
    if "\n" in text.strip() or INTERNAL.search(text):
        return {"outcome": "internal", "type": type(exc).__name__, "message": text[:300]}
    return {"outcome": "error", "type": type(exc).__name__, "message": text[:300]}


def audio_case(path: str) -> dict:
    """info, load, load(sr=16000, mono=False) and the whole stream of one file."""
    from musiclens.core import audio

    result: dict = {"outcome": "ok"}
    for call in (
        lambda: audio.info(path),
        lambda: audio.load(path),
        lambda: audio.load(path, sr=16000, mono=False),
    ):
        try:
            call()
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted by _check_message
            result = _check_message(exc)
            if result["outcome"] != "error":
                return result
    try:
        streamed = [b for _, b in audio.stream(path, block_seconds=0.3)]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        r = _check_message(exc)
        return r if r["outcome"] != "error" else result
    try:
        whole, _ = audio.load(path, max_seconds=None, allow_truncated=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        r = _check_message(exc)
        return r if r["outcome"] != "error" else result
    joined = np.concatenate(streamed) if streamed else np.zeros(0, np.float32)
    if joined.shape != whole.shape or not np.array_equal(joined, whole, equal_nan=True):
        return {"outcome": "mismatch", "message": f"stream gave {joined.shape[0]} samples, load {whole.shape[0]}"}
    return result


def midi_case(path: str) -> dict:
    """read_midi (all tracks, and drums left out) and the first 100-note window."""
    from musiclens.core import midi

    result: dict = {"outcome": "ok"}
    for kw in ({}, {"drop_drums": True}):
        try:
            notes = midi.read_midi(path, **kw)
            midi.note_window(notes, 100)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            result = _check_message(exc)
            if result["outcome"] != "error":
                return result
    return result


def vm_size(field: str = "VmSize") -> int:
    """This process's virtual memory size in bytes (/proc/self/status VmSize; ``field="VmRSS"``:
    its resident memory now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Limits:
    timeout_s: float = 10.0  # CPU seconds a case may use; wall clock: WALL_FACTOR times that
    memory_mb: int = 1024


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_case: str = ""
    slowest_s: float = 0.0
    cases: int = 0
    seconds: float = 0.0
    messages: Counter = field(default_factory=Counter)  # the project's errors, paths and numbers left out

    def failed(self) -> int:
        return sum(self.counts[o] for o in FAILURES)


def run_case(kind: str, path: Path, limits: Limits, base_vm: int) -> tuple[dict, float, float]:
    """Fork a child that runs the case -> (result, the child's peak RSS in MB beyond what it
    inherited at the fork, seconds). A forked child's resident set starts as the parent's
    (shared pages count), so the parent's RSS at the fork is subtracted: under pytest, with
    torch and models loaded, that is most of a gigabyte that the case did not use."""
    inherited_mb = vm_size("VmRSS") / 2**20
    r_fd, w_fd = os.pipe()
    err = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the child as its fd 2, closed below
    t0 = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            import faulthandler

            faulthandler.disable()  # a crash is the parent's to report (pytest enables it)
            os.close(r_fd)
            os.dup2(err.fileno(), 2)
            limit = base_vm + int(limits.memory_mb * 1.5) * 2**20  # address space: reserved, not all touched
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            cpu = max(1, int(limits.timeout_s))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # a busy loop: SIGXCPU
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * limits.timeout_s)  # blocked: SIGALRM
            try:
                result = audio_case(str(path)) if kind == "audio" else midi_case(str(path))
            except MemoryError:
                result = {"outcome": "memory", "message": f"MemoryError (over {limits.memory_mb} MB)"}
            os.write(w_fd, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w_fd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    with os.fdopen(r_fd, "rb") as r:
        raw = r.read()
    err.seek(0)
    chatter = err.read().decode("utf-8", "replace").strip()
    err.close()
    rss_mb = max(0.0, usage.ru_maxrss / 1024 - inherited_mb)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name
        if sig in (signal.SIGALRM, signal.SIGXCPU, signal.SIGKILL):
            what = "CPU" if sig == signal.SIGXCPU else "wall clock"
            return {"outcome": "hang", "message": f"over its {what} limit ({name})"}, rss_mb, seconds
        return {"outcome": "crash", "message": f"killed by {name}"}, rss_mb, seconds
    try:
        result = json.loads(raw)
    except json.JSONDecodeError:
        return {"outcome": "crash", "message": f"no result (exit status {status})"}, rss_mb, seconds
    if rss_mb > limits.memory_mb and result["outcome"] in ("ok", "error"):
        result = {"outcome": "memory", "message": f"peak RSS {rss_mb:.0f} MB (over {limits.memory_mb} MB)"}
    if chatter and result["outcome"] in ("ok", "error"):
        result = {"outcome": "chatter", "message": chatter[:300]}
    return result, rss_mb, seconds


def fuzz(
    kind: str,
    seeds: list[Path],
    cases: int,
    *,
    seed: int = 0,
    limits: Limits | None = None,
    work: Path | None = None,
    progress: int = 0,
) -> Report:
    """``cases`` mutated files of ``kind`` ("audio" or "midi") made from ``seeds``, each run
    in a child process -> :class:`Report`; ``progress``: print the counts every that many cases."""
    # the loaders and their libraries imported once here, so each forked case is cheap
    import mido  # noqa: F401
    import pretty_midi  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    from musiclens.core import audio, midi  # noqa: F401

    limits = limits or Limits()
    base_vm = vm_size()
    report = Report()
    originals = [(p, p.read_bytes()) for p in seeds]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{kind}-", dir=work) as tmp:
        for i in range(cases):
            rng = np.random.default_rng([seed, i, 0 if kind == "audio" else 1])
            src, data = originals[i % len(originals)]
            mutated, what = mutate(data, rng, kind)
            target = Path(tmp) / f"case{i % 16}{src.suffix}"
            target.write_bytes(mutated)
            result, rss, seconds = run_case(kind, target, limits, base_vm)
            outcome = result["outcome"]
            report.counts[outcome] += 1
            report.cases += 1
            if rss > report.peak_rss_mb:
                report.peak_rss_mb, report.peak_case = rss, f"{src.name}: {what}"
            report.slowest_s = max(report.slowest_s, seconds)
            if progress and (i + 1) % progress == 0:
                so_far = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
                print(f"  {kind}: {i + 1} cases, {time.perf_counter() - t0:.0f} s: {so_far}", flush=True)
            if outcome == "error":
                text = re.sub(r"\S*" + re.escape(tmp) + r"\S*", "FILE", result["message"])
                report.messages[re.sub(r"-?\d[\d.e+]*", "N", text)[:110]] += 1
            if outcome in FAILURES:
                keep = Path(tmp).parent / f"fuzz-failures-{kind}"
                keep.mkdir(exist_ok=True)
                saved = keep / f"case{i}{src.suffix}"
                saved.write_bytes(mutated)
                report.examples.setdefault(outcome, []).append(
                    {"case": i, "seed_file": src.name, "mutation": what, "saved": str(saved)} | result
                )
    report.seconds = time.perf_counter() - t0
    return report


def describe(kind: str, report: Report, show: int = 5) -> str:
    lines = [
        f"{kind}: {report.cases} cases in {report.seconds:.1f} s; "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
        + f"; failed {report.failed()}; peak child RSS {report.peak_rss_mb:.0f} MB ({report.peak_case}); "
        f"slowest case {report.slowest_s:.2f} s"
    ]
    if show:
        lines.append("  most frequent errors:")
        lines += [f"    {n:5d}  {m}" for m, n in report.messages.most_common(2 * show)]
    for outcome, items in report.examples.items():
        for ex in items[:show]:
            what = f"{ex['seed_file']} [{ex['mutation']}]"
            lines.append(f"  {outcome}: {what} -> {ex.get('type', '')} {ex['message']} ({ex['saved']})")
            if ex.get("where"):
                lines.append("    " + ex["where"].strip().replace("\n", "\n    "))
    return "\n".join(lines)


def seeds_for(folder: Path, use_shared: bool = True) -> dict[str, list[Path]]:
    from conftest import shared_data_dir

    seeds = write_seeds(folder)
    if use_shared:
        extra = shared_seeds(shared_data_dir())
        for kind in seeds:
            seeds[kind] += extra[kind]
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=int, default=10000, help="audio cases")
    ap.add_argument("--midi", type=int, default=3000, help="MIDI cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="CPU seconds per case (wall clock: 6 times)")
    ap.add_argument("--memory-mb", type=int, default=1024, help="address space a case may add")
    ap.add_argument("--no-shared", action="store_true", help="only the generated seed files")
    ap.add_argument("--show", type=int, default=5, help="examples shown per failure kind")
    ap.add_argument("--progress", type=int, default=500, help="print the counts every that many cases")
    args = ap.parse_args(argv)
    limits = Limits(args.timeout, args.memory_mb)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as tmp:
        seeds = seeds_for(Path(tmp), not args.no_shared)
        print(f"seeds: {len(seeds['audio'])} audio, {len(seeds['midi'])} MIDI files", flush=True)
        for kind, n in (("audio", args.audio), ("midi", args.midi)):
            if n <= 0:
                continue
            report = fuzz(
                kind,
                seeds[kind],
                n,
                seed=args.seed,
                limits=limits,
                work=Path(tempfile.gettempdir()),
                progress=args.progress,
            )
            print(describe(kind, report, args.show), flush=True)
            failed += report.failed()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
