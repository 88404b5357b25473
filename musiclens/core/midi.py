"""MIDI files <-> note arrays: robust reading, note features, writing, piano rolls.

A piece is a :class:`Notes`: parallel arrays, one entry per note, sorted by start time
(then pitch). The features a sequence model sees are ``(pitch, step, duration)``:

* ``pitch``: MIDI note number, integer 0..127;
* ``step``: seconds since the previous note's *start* (0 for the first note of the window);
* ``duration``: seconds from note-on to note-off.

Reading (:func:`read_midi`) tries, in order: pretty_midi on the bytes; a lenient mido read
(``clip=True``, which clamps data bytes > 127); the same with malformed key-signature meta
events repaired. RIFF-RMID wrappers are unwrapped first. Anything else raises
:class:`MidiFileError` (a :class:`~musiclens.core.errors.MusicLensError`) with one clear
message. What the lenient path repaired is listed in ``Notes.repairs``.

All times are seconds, rounded to 1e-9 s (far below one MIDI tick), so notes read from a
file, written with :func:`write_midi` and read again come back identical.

The file is the document, the notes are a view of it. :func:`read_midi` keeps the whole
file it read as ``Notes.document`` (a :class:`MidiDocument`: every track and event, the
tempo map) and each instrument of the view remembers which of the file's instruments it
is (``Instrument.track``). A model may read only some tracks (e.g. no drums), an editor
may change some notes; :func:`write_midi` writes the document back with only the view's
instruments' notes replaced. Tracks the view does not hold (drums, other programs), tempo
changes, time and key signatures, program changes, controllers, pitch bends, sysex and
markers are copied event for event, and notes that were not edited keep their exact ticks.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from musiclens.core.errors import MusicLensError, ParameterError, regular_file

FEATURES: tuple[str, ...] = ("pitch", "step", "duration")
MIDI_EXTENSIONS: tuple[str, ...] = (".mid", ".midi", ".rmi", ".kar")
_TIME_DECIMALS = 9
MAX_FILE_BYTES = 64 * 1024 * 1024
#: pretty_midi's limit on a file's last tick (it allocates a tick -> time table)
MAX_TICKS = 10_000_000
#: a note in ticks: (start tick, end tick, pitch, velocity)
_Ticks = tuple[int, int, int, int]
#: an event to place in a track: (absolute tick, order at that tick, sequence number, mido message)
_Event = tuple[int, int, int, Any]


class MidiFileError(MusicLensError):
    """A MIDI file cannot be read (missing, empty, not MIDI, truncated, corrupt)."""


class TooFewNotesError(MusicLensError):
    """A piece has fewer notes than a model's window needs and padding was not allowed."""


@dataclass(frozen=True)
class Instrument:
    """One track/instrument of a piece: General MIDI ``program`` 0..127 and drum flag.

    ``track``: which instrument of the source file (``Notes.document``) this is, as an index
    into ``document.pm.instruments`` (pretty_midi splits a MIDI track by channel and program);
    None for an instrument that is not from the file.
    """

    program: int = 0
    is_drum: bool = False
    name: str = ""
    track: int | None = None


@dataclass
class Notes:
    """Notes of a piece, sorted by ``start`` (then pitch). All arrays have shape ``(N,)``.

    pitch : int16, MIDI note number 0..127.
    start, duration : float64, seconds.
    velocity : int16, 1..127.
    instrument : int16, index into ``instruments``.
    instruments : the piece's instruments (program, drum flag, name).
    tempo : initial tempo in beats per minute (written back by :func:`write_midi`).
    resolution : ticks per beat (written back by :func:`write_midi`).
    document : the whole file these notes were read from (:class:`MidiDocument`), or None.
        Shared, never modified; :func:`write_midi` writes it back with these notes in place
        of its notes on the instruments in ``instruments``.
    """

    pitch: np.ndarray
    start: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray
    instrument: np.ndarray
    instruments: list[Instrument] = field(default_factory=lambda: [Instrument()])
    tempo: float = 120.0
    resolution: int = 220
    source: Path | None = None
    repairs: list[str] = field(default_factory=list)
    document: MidiDocument | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.pitch = np.asarray(self.pitch, dtype=np.int16).reshape(-1)
        self.start = np.asarray(self.start, dtype=np.float64).reshape(-1)
        self.duration = np.asarray(self.duration, dtype=np.float64).reshape(-1)
        self.velocity = np.asarray(self.velocity, dtype=np.int16).reshape(-1)
        self.instrument = np.asarray(self.instrument, dtype=np.int16).reshape(-1)
        n = len(self.pitch)
        for name in ("start", "duration", "velocity", "instrument"):
            if len(getattr(self, name)) != n:
                raise ParameterError(f"Notes.{name} has {len(getattr(self, name))} entries, pitch has {n}")

    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def end(self) -> np.ndarray:
        end: np.ndarray = self.start + self.duration
        return end

    @property
    def step(self) -> np.ndarray:
        """Seconds since the previous note's start, ``(N,)``; the first note's step is 0."""
        if len(self) == 0:
            return np.zeros(0)
        return np.round(np.diff(self.start, prepend=self.start[0]), _TIME_DECIMALS)

    @property
    def is_drum(self) -> np.ndarray:
        flags = np.array([i.is_drum for i in self.instruments], dtype=bool)
        return flags[self.instrument] if len(self) else np.zeros(0, dtype=bool)

    @property
    def program(self) -> np.ndarray:
        programs = np.array([i.program for i in self.instruments], dtype=np.int16)
        return programs[self.instrument] if len(self) else np.zeros(0, dtype=np.int16)

    def features(self, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
        """``(N, 3)`` ``[pitch, step (s), duration (s)]`` per note (float32 unless ``dtype``)."""
        return np.stack([self.pitch.astype(np.float64), self.step, self.duration], axis=1).astype(dtype)

    def select(self, index: np.ndarray | slice) -> Notes:
        """A copy holding only the notes at ``index`` (boolean mask, indices or slice)."""
        return replace(
            self,
            pitch=self.pitch[index],
            start=self.start[index],
            duration=self.duration[index],
            velocity=self.velocity[index],
            instrument=self.instrument[index],
            repairs=list(self.repairs),
        )

    def first(self, n: int) -> Notes:
        return self.select(slice(0, max(int(n), 0)))

    def sorted(self) -> Notes:
        order = np.lexsort((self.pitch, self.start))
        return self.select(order)

    def equals(self, other: Notes) -> bool:
        """Same notes (pitch, times, velocity, program and drum flag of each note)."""
        return (
            len(self) == len(other)
            and np.array_equal(self.pitch, other.pitch)
            and np.array_equal(self.start, other.start)
            and np.array_equal(self.duration, other.duration)
            and np.array_equal(self.velocity, other.velocity)
            and np.array_equal(self.program, other.program)
            and np.array_equal(self.is_drum, other.is_drum)
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per note (``pitch, start, step, duration, velocity, program, drum``)."""
        step = self.step
        return [
            {
                "pitch": int(self.pitch[i]),
                "start": float(self.start[i]),
                "step": float(step[i]),
                "duration": float(self.duration[i]),
                "velocity": int(self.velocity[i]),
                "program": int(self.program[i]),
                "drum": bool(self.is_drum[i]),
            }
            for i in range(len(self))
        ]


# ---------------------------------------------------------------------------- the document
def _is_note(msg: Any) -> bool:  # a mido message
    return bool(msg.type == "note_on" or msg.type == "note_off")


def _instrument_keys(mf: Any) -> list[tuple[int, int, int]]:  # a mido.MidiFile
    """``(program, channel, track)`` of each instrument pretty_midi makes of ``mf``, in its order.

    ``mf`` has absolute tick times. This replays pretty_midi's ``_load_instruments``: an
    instrument is created when a note-off closes a note-on, keyed by the channel's program
    at that moment, the channel and the track.
    """
    keys: dict[tuple[int, int, int], None] = {}
    for t, track in enumerate(mf.tracks):
        program = [0] * 16
        open_notes: dict[tuple[int, int], list[int]] = defaultdict(list)
        for ev in track:
            if ev.type == "program_change":
                program[ev.channel] = ev.program
            elif ev.type == "note_on" and ev.velocity > 0:
                open_notes[(ev.channel, ev.note)].append(ev.time)
            elif ev.type == "note_off" or (ev.type == "note_on" and ev.velocity == 0):
                key = (ev.channel, ev.note)
                if key in open_notes:
                    starts = open_notes[key]
                    close = [s for s in starts if s != ev.time]
                    keep = [s for s in starts if s == ev.time]
                    if close:
                        keys.setdefault((int(program[ev.channel]), int(ev.channel), t), None)
                    if close and keep:
                        open_notes[key] = keep
                    else:
                        del open_notes[key]
    return list(keys)


class MidiDocument:
    """The whole MIDI file a piece was read from: what saving must keep.

    pm : the ``pretty_midi.PrettyMIDI`` of the file (tempo map; its instruments are the
        file's tracks split by channel and program).
    midi : the ``mido.MidiFile`` as parsed, every event of every track, with *absolute*
        tick times (pretty_midi converts them in place).
    keys : ``(program, channel, track)`` of each of ``pm.instruments``: where its notes are
        in ``midi``; None if they could not be matched (then writing goes through pretty_midi).
    sha256 : of the file's bytes.

    Never modified after reading (it is shared by every copy of the notes).
    """

    def __init__(self, pm: Any, midi: Any, sha256: str = "") -> None:  # PrettyMIDI, mido.MidiFile
        self.pm, self.midi, self.sha256 = pm, midi, sha256
        keys = _instrument_keys(midi)
        ok = len(keys) == len(pm.instruments) and all(
            k[0] == inst.program and (k[1] == 9) == bool(inst.is_drum) for k, inst in zip(keys, pm.instruments)
        )
        self.keys: list[tuple[int, int, int]] | None = keys if ok else None
        self._note_ticks: dict[int, list[tuple[int, int, int, int]]] = {}

    @property
    def resolution(self) -> int:
        return int(self.midi.ticks_per_beat)

    def _tick_times(self) -> np.ndarray:
        """pretty_midi's tick -> seconds table (ticks 0 .. the file's last tick)."""
        return np.asarray(self.pm._PrettyMIDI__tick_to_time, dtype=np.float64)

    def to_ticks(self, times: npt.ArrayLike) -> np.ndarray:
        """Seconds -> nearest tick under the file's tempo map (as pretty_midi's ``time_to_tick``)."""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        table = self._tick_times()
        _, last_scale = self.pm._tick_scales[-1]
        n = len(table)
        idx = np.searchsorted(table, t, side="left")
        out = np.empty(len(t), dtype=np.int64)
        beyond = idx >= n
        out[beyond] = np.rint((n - 1) + (t[beyond] - table[n - 1]) / last_scale).astype(np.int64)
        i = idx[~beyond]
        ti = t[~beyond]
        prev = np.maximum(i - 1, 0)
        closer = (i > 0) & (np.abs(ti - table[prev]) < np.abs(ti - table[i]))
        out[~beyond] = np.where(closer, i - 1, i)
        return np.maximum(out, 0)

    def to_times(self, ticks: npt.ArrayLike) -> np.ndarray:
        """Ticks -> seconds, exactly as :func:`read_midi` gives the time of a note on that tick."""
        k = np.maximum(np.atleast_1d(np.asarray(ticks, dtype=np.int64)), 0)
        table = self._tick_times()
        n = len(table)
        _, last_scale = self.pm._tick_scales[-1]
        inside = np.minimum(k, n - 1)
        beyond = table[n - 1] + (k - (n - 1)) * last_scale  # past the file's end: its last tempo
        return np.round(np.where(k < n, table[inside], beyond), _TIME_DECIMALS)

    def note_ticks(self, j: int) -> list[tuple[int, int, int, int]]:
        """``(start tick, end tick, pitch, velocity)`` of the notes of instrument ``j`` in the file, sorted."""
        if j not in self._note_ticks:
            notes = self.pm.instruments[j].notes
            s: np.ndarray | list[int] = self.to_ticks([n.start for n in notes]) if notes else []
            e: np.ndarray | list[int] = self.to_ticks([n.end for n in notes]) if notes else []
            self._note_ticks[j] = sorted(
                (int(a), int(b), int(n.pitch), int(n.velocity)) for a, b, n in zip(s, e, notes)
            )
        return self._note_ticks[j]


# ---------------------------------------------------------------------------- reading
def _unwrap(data: bytes, name: str) -> tuple[bytes, list[str]]:
    """Strip a RIFF-RMID wrapper; check for the ``MThd`` header."""
    repairs: list[str] = []
    if data[:4] == b"RIFF":
        if data[8:12] != b"RMID":
            raise MidiFileError(f"{name} is a RIFF file but not RIFF-RMID MIDI (type {data[8:12]!r})")
        pos = 12
        smf = None
        while pos + 8 <= len(data):
            tag, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
            if tag == b"data":
                smf = data[pos + 8 : pos + 8 + size]
                break
            pos += 8 + size + (size & 1)
        if smf is None:  # some writers get the chunk sizes wrong: look for the header
            at = data.find(b"MThd")
            smf = data[at:] if at >= 0 else None
        if not smf:
            raise MidiFileError(f"{name} is a RIFF-RMID file without MIDI data")
        data = smf
        repairs.append("unwrapped RIFF-RMID container")
    if data[:4] != b"MThd":
        shown = data[:8]
        raise MidiFileError(
            f"{name} is not a MIDI file (it starts with {shown!r}); expected a Standard MIDI File "
            "(.mid/.midi, starting with 'MThd') or a RIFF-RMID wrapper"
        )
    return data, repairs


def _fix_key_signatures(data: bytes) -> tuple[bytes, int]:
    """Replace out-of-range key-signature meta events (FF 59 02 sf mi) by C major."""
    buf = bytearray(data)
    fixed = 0
    at = buf.find(b"\xff\x59\x02")
    while at >= 0 and at + 5 <= len(buf):
        sf = buf[at + 3] - 256 if buf[at + 3] > 127 else buf[at + 3]
        if not -7 <= sf <= 7 or buf[at + 4] not in (0, 1):
            buf[at + 3] = 0
            buf[at + 4] = 0
            fixed += 1
        at = buf.find(b"\xff\x59\x02", at + 3)
    return bytes(buf), fixed


def _coarsen_ticks(mf: Any, limit: int = 4_000_000) -> None:  # a mido.MidiFile
    """Divide a mido file's ticks by a divisor of its resolution so the longest track fits ``limit``.

    Absolute times are rounded (no drift); with a divisor of ``ticks_per_beat`` the beat
    grid is kept exactly.
    """
    longest = max((sum(msg.time for msg in track) for track in mf.tracks), default=0)
    tpb = int(mf.ticks_per_beat)
    d = next((d for d in range(2, tpb + 1) if tpb % d == 0 and longest / d <= limit), None)
    if d is None:
        raise ValueError("cannot reduce the resolution enough")
    for track in mf.tracks:
        absolute = prev = 0
        for msg in track:
            absolute += msg.time
            new = int(round(absolute / d))
            msg.time = new - prev
            prev = new
    mf.ticks_per_beat = tpb // d


def load_pretty_midi(
    path_or_bytes: str | os.PathLike[str] | bytes, *, name: str | None = None
) -> tuple[Any, list[str]]:
    """Parse MIDI robustly; returns ``(pretty_midi.PrettyMIDI, repairs: list[str])``."""
    doc, repairs = load_document(path_or_bytes, name=name)
    return doc.pm, repairs


def load_document(
    path_or_bytes: str | os.PathLike[str] | bytes, *, name: str | None = None
) -> tuple[MidiDocument, list[str]]:
    """Parse MIDI robustly; returns ``(MidiDocument, repairs: list[str])``."""
    import mido
    import pretty_midi

    def parsed(mf: Any, digest: str) -> MidiDocument:
        return MidiDocument(pretty_midi.PrettyMIDI(mido_object=mf), mf, digest)

    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
        name = name or "<bytes>"
    else:
        path = Path(path_or_bytes)
        name = name or str(path)
        size = regular_file(path, "MIDI file", MidiFileError)  # a pipe or /dev/zero would never end
        if size > MAX_FILE_BYTES:
            raise MidiFileError(
                f"{name} is {size / 2**20:.0f} MB; MIDI files over {MAX_FILE_BYTES // 2**20} MB are refused"
            )
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    if not data:
        raise MidiFileError(f"{name} is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    data, repairs = _unwrap(data, name)

    first_error: Exception | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mf = mido.MidiFile(file=io.BytesIO(data))
            longest = max((sum(msg.time for msg in track) for track in mf.tracks), default=0)
            if longest + 1 > MAX_TICKS:
                # pretty_midi refuses > 1e7 ticks (it allocates a tick -> time table); long pieces
                # at a fine resolution (music21 writes 10080 ticks per beat) are valid MIDI though:
                # coarsened here, before pretty_midi, so the file is parsed once
                old_tpb = mf.ticks_per_beat
                _coarsen_ticks(mf)
                repairs = repairs + [
                    f"reduced the resolution from {old_tpb} to {mf.ticks_per_beat} "
                    "ticks per beat (the file has more than 10 million ticks)"
                ]
            return parsed(mf, digest), repairs
        except Exception as exc:  # noqa: BLE001 - any parser failure goes to the lenient path
            first_error = exc
        attempts = [(data, ["clamped out-of-range data bytes (mido clip=True)"])]
        fixed_data, n_fixed = _fix_key_signatures(data)
        if n_fixed:
            attempts.append(
                (
                    fixed_data,
                    [
                        f"replaced {n_fixed} invalid key signature(s) by C major",
                        "clamped out-of-range data bytes (mido clip=True)",
                    ],
                )
            )
        last_error: Exception | None = None
        for attempt, what in attempts:
            try:
                mf = mido.MidiFile(file=io.BytesIO(attempt), clip=True)
                doc = parsed(mf, digest)
            except Exception as exc:  # noqa: BLE001
                last_error = exc
                continue
            return doc, repairs + what
    raise MidiFileError(f"{name} cannot be read as MIDI, even leniently: {_why_unreadable(last_error or first_error)}")


#: what the MIDI parsers' messages mean, in a reader's terms (first match wins)
_MIDI_REASONS: tuple[tuple[str, str], ...] = (
    ("EOF", "the file is truncated (it ends in the middle of a track)"),
    ("end of file", "the file is truncated (it ends in the middle of a track)"),
    ("data byte must be in range", "an event holds a data byte over 127"),
    ("no MTrk header", "a track does not start where the previous one's length says (missing MTrk header)"),
    ("MThd not found", "the MThd header is missing"),
    ("running status without last_status", "a track starts with data bytes and no status byte"),
    ("exceeds maximum length", "an event claims more bytes than a MIDI event can hold"),
    ("undefined status byte", "an event has an undefined status byte"),
    ("end time must be greater than start time", "a note ends before it starts"),
    ("cannot reduce the resolution", "its timing needs more than 10 million ticks even at the coarsest resolution"),
    ("largest tick", "its timing needs more than 10 million ticks even at the coarsest resolution"),
)


def _why_unreadable(exc: Exception | None) -> str:
    """Why a MIDI file could not be parsed, in the user's terms (never a Python exception's text)."""
    text = str(exc) if exc is not None else ""
    if isinstance(exc, EOFError):
        return _MIDI_REASONS[0][1]
    for needle, reason in _MIDI_REASONS:
        if needle.lower() in text.lower():
            return reason
    return "its events are corrupt where the parser stopped"


def read_midi(
    path: str | os.PathLike[str] | bytes,
    *,
    drop_drums: bool = False,
    instruments: Sequence[int] | None = None,
    programs: Sequence[int] | None = None,
    name: str | None = None,
) -> Notes:
    """Read a .mid/.midi file (or its bytes) into :class:`Notes`, sorted by start time.

    Parameters
    ----------
    path : file path or the raw bytes of a MIDI file.
    drop_drums : leave out drum tracks (General MIDI channel 10).
    instruments : keep only these instrument (track) indices, as listed by pretty_midi.
    programs : keep only instruments with these General MIDI programs (0..127).

    Raises
    ------
    MidiFileError : the file is missing, empty, not MIDI, truncated or corrupt beyond repair.
    """
    doc, repairs = load_document(path, name=name)
    pm = doc.pm
    n_inst = len(pm.instruments)
    if instruments is not None:
        bad = [i for i in instruments if not 0 <= int(i) < n_inst]
        if bad:
            raise ParameterError(
                f"instrument indices {bad} are out of range; this file has {n_inst} instrument(s), 0..{n_inst - 1}"
            )
    chosen = []
    for idx, inst in enumerate(pm.instruments):
        if drop_drums and inst.is_drum:
            continue
        if instruments is not None and idx not in {int(i) for i in instruments}:
            continue
        if programs is not None and (inst.is_drum or inst.program not in {int(p) for p in programs}):
            continue
        chosen.append(idx)
    return _document_notes(
        doc, chosen, source=None if isinstance(path, (bytes, bytearray)) else Path(path), repairs=repairs
    )


def _document_notes(
    doc: MidiDocument, chosen: Sequence[int], *, source: Path | None = None, repairs: Sequence[str] = ()
) -> Notes:
    """The notes of the document's instruments ``chosen`` (indices into ``doc.pm.instruments``)."""
    pm = doc.pm
    insts: list[Instrument] = []
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    for idx in chosen:
        inst = pm.instruments[idx]
        if not inst.notes:
            continue
        k = len(insts)
        insts.append(Instrument(int(inst.program), bool(inst.is_drum), str(inst.name or ""), int(idx)))
        arr = np.array([(n.pitch, n.start, n.end, n.velocity) for n in inst.notes], dtype=np.float64)
        cols[0].append(arr[:, 0])
        cols[1].append(arr[:, 1])
        cols[2].append(arr[:, 2])
        cols[3].append(arr[:, 3])
        cols[4].append(np.full(len(arr), k))
    if insts:
        pitch, start, end, vel, which = (np.concatenate(c) for c in cols)
    else:
        pitch = start = end = vel = which = np.zeros(0)
    start = np.round(start, _TIME_DECIMALS)
    end = np.round(end, _TIME_DECIMALS)
    tempo_times, tempi = pm.get_tempo_changes()
    notes = Notes(
        pitch=np.clip(pitch, 0, 127),
        start=start,
        duration=np.round(np.maximum(end - start, 0.0), _TIME_DECIMALS),
        velocity=np.clip(vel, 1, 127),
        instrument=which,
        instruments=insts or [Instrument()],
        tempo=float(tempi[0]) if len(tempi) else 120.0,
        resolution=int(pm.resolution),
        source=source,
        repairs=list(repairs),
        document=doc,
    )
    return notes.sorted()


def covered_tracks(notes: Notes) -> set[int]:
    """Indices of the document's instruments that ``notes`` holds (whose notes it replaces on writing)."""
    doc = notes.document
    if doc is None:
        return set()
    n = len(doc.pm.instruments)
    return {int(i.track) for i in notes.instruments if i.track is not None and 0 <= i.track < n}


def other_notes(notes: Notes) -> Notes:
    """The notes of ``notes.document`` on the instruments ``notes`` does not hold (e.g. the drums
    a model leaves out): kept by :func:`write_midi`, not read by the model. Empty without a document."""
    doc = notes.document
    if doc is None:
        return notes.select(slice(0, 0))
    covered = covered_tracks(notes)
    rest = [j for j in range(len(doc.pm.instruments)) if j not in covered]
    return _document_notes(doc, rest, source=notes.source)


# ---------------------------------------------------------------------------- windows
def note_window(
    notes: Notes,
    n_notes: int,
    *,
    short: Literal["drop", "pad"] = "pad",
    min_notes: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_notes`` notes as model input.

    Returns
    -------
    features : ``(n_notes, 3)`` float32 ``[pitch, step (s), duration (s)]``; padding rows are 0.
    mask : ``(n_notes,)`` bool, True for real notes (always a prefix).

    Raises :class:`TooFewNotesError` when the piece has fewer than ``n_notes`` notes and
    ``short="drop"``, or fewer than ``min_notes`` notes with ``short="pad"``.
    """
    if n_notes <= 0:
        raise ParameterError(f"n_notes must be positive, got {n_notes}")
    if short not in ("drop", "pad"):
        raise ParameterError(f"short must be 'drop' or 'pad', got {short!r}")
    have = len(notes)
    need = n_notes if short == "drop" else max(1, min_notes)
    if have < need:
        where = f" ({notes.source.name})" if notes.source else ""
        raise TooFewNotesError(f"the piece{where} has {have} notes; this model needs at least {need}")
    feats = np.zeros((n_notes, 3), dtype=np.float32)
    mask = np.zeros(n_notes, dtype=bool)
    k = min(have, n_notes)
    feats[:k] = notes.first(k).features()
    mask[:k] = True
    return feats, mask


def notes_from_features(features: np.ndarray, template: Notes, *, mask: np.ndarray | None = None) -> Notes:
    """Rebuild notes from ``(n, 3)`` ``[pitch, step, duration]`` rows.

    Velocity, instrument, tempo and resolution of note ``i`` come from ``template``'s note
    ``i`` (the notes the features were taken from); the first note starts where the
    template's first note started. Rows where ``mask`` is False are left out. Pitches are
    rounded and clipped to 0..127, steps and durations clipped to >= 0.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != 3:
        raise ParameterError(f"features must have shape (n, 3), got {features.shape}")
    if mask is not None:
        features = features[np.asarray(mask, dtype=bool)]
    n = len(features)
    if n > len(template):
        raise ParameterError(f"{n} feature rows but the template has only {len(template)} notes")
    base = template.first(n)
    offset = float(template.start[0]) if len(template) else 0.0
    step = np.maximum(features[:, 1], 0.0)
    if n:
        step[0] = 0.0
    start = np.round(offset + np.cumsum(step), _TIME_DECIMALS)
    return replace(
        base,
        pitch=np.clip(np.rint(features[:, 0]), 0, 127),
        start=start,
        duration=np.round(np.maximum(features[:, 2], 0.0), _TIME_DECIMALS),
        repairs=[],
    )


def replace_window(notes: Notes, window: Notes) -> Notes:
    """``notes`` with its first ``len(window)`` notes replaced by ``window``.

    Later notes keep their order and are shifted in time by how much the window's last
    start moved, so the rest of the piece follows the edited opening.
    """
    k = len(window)
    if k > len(notes):
        raise ParameterError(f"the window has {k} notes, the piece only {len(notes)}")
    if k == 0:
        return notes.select(slice(None))
    shift = float(window.start[-1] - notes.start[k - 1])
    rest = notes.select(slice(k, None))
    return replace(
        notes,
        pitch=np.concatenate([window.pitch, rest.pitch]),
        start=np.round(np.concatenate([window.start, rest.start + shift]), _TIME_DECIMALS),
        duration=np.concatenate([window.duration, rest.duration]),
        velocity=np.concatenate([window.velocity, rest.velocity]),
        instrument=np.concatenate([window.instrument, rest.instrument]),
        repairs=list(notes.repairs),
    )


def merge_notes(a: Notes, b: Notes) -> Notes:
    """All notes of ``a`` and ``b`` in one piece (``a``'s tempo and resolution), sorted.

    ``b``'s instruments are appended to ``a``'s (an instrument equal in program, drum flag,
    name and source track is shared). ``a``'s document is kept; ``b``'s instruments keep
    their place in it only if ``b`` was read from the same file.
    """
    instruments = list(a.instruments)
    remap = []
    same_file = b.document is a.document or (
        a.document is not None and b.document is not None and a.document.sha256 == b.document.sha256 != ""
    )
    for inst in b.instruments:
        if not same_file and inst.track is not None:  # not an instrument of a's file
            inst = replace(inst, track=None)
        if inst not in instruments:
            instruments.append(inst)
        remap.append(instruments.index(inst))
    b_inst = np.asarray(remap, dtype=np.int16)[b.instrument] if len(b) else b.instrument
    return replace(
        a,
        pitch=np.concatenate([a.pitch, b.pitch]),
        start=np.concatenate([a.start, b.start]),
        duration=np.concatenate([a.duration, b.duration]),
        velocity=np.concatenate([a.velocity, b.velocity]),
        instrument=np.concatenate([a.instrument, b_inst]),
        instruments=instruments,
        repairs=list(a.repairs),
    ).sorted()


def snap_to_ticks(
    notes: Notes, start: npt.ArrayLike, end: npt.ArrayLike, *, min_ticks: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Snap ``start`` and ``end`` (seconds, same order as given) to the tick grid of ``notes``' file.

    The grid is the document's tempo map when ``notes`` has one, else one tick of
    ``60 / (tempo · resolution)`` s. Ends are at least ``min_ticks`` ticks after starts.
    Returns ``(start, end)`` in seconds, as reading the written file gives them.
    """
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    doc = notes.document
    if doc is not None:
        s_t = doc.to_ticks(start)
        e_t = np.maximum(doc.to_ticks(end), s_t + min_ticks)
        return doc.to_times(s_t).reshape(start.shape), doc.to_times(e_t).reshape(end.shape)
    tick = 60.0 / (notes.tempo * notes.resolution)
    start_t = np.rint(start / tick)
    end_t = np.maximum(np.rint(end / tick), start_t + min_ticks)
    return np.round(start_t * tick, _TIME_DECIMALS), np.round(end_t * tick, _TIME_DECIMALS)


def quantise(notes: Notes, *, min_ticks: int = 1) -> Notes:
    """Snap start and end times to the tick grid :func:`write_midi` will use.

    Durations become at least ``min_ticks`` ticks, so every note survives writing. The
    result is what reading the written file gives back. With a document, the grid is the
    file's own (its tempo map), so notes read from the file are left exactly as they are.
    """
    start, end = snap_to_ticks(notes, notes.start, notes.end, min_ticks=min_ticks)
    return replace(
        notes, start=start, duration=np.round(end - start, _TIME_DECIMALS), repairs=list(notes.repairs)
    ).sorted()


# ---------------------------------------------------------------------------- writing
def _check_writable(notes: Notes) -> None:
    if not np.all((notes.pitch >= 0) & (notes.pitch <= 127)):
        raise ParameterError("pitches must be 0..127 to write MIDI")
    if np.any(notes.duration < 0) or np.any(notes.start < 0):
        raise ParameterError("note starts and durations must be >= 0 to write MIDI")


def _to_pretty_midi(notes: Notes) -> Any:  # a pretty_midi.PrettyMIDI
    import pretty_midi

    _check_writable(notes)
    pm = pretty_midi.PrettyMIDI(resolution=int(notes.resolution), initial_tempo=float(notes.tempo))
    tracks: dict[int, pretty_midi.Instrument] = {}
    for i, inst in enumerate(notes.instruments):
        if np.any(notes.instrument == i):
            tracks[i] = pretty_midi.Instrument(program=int(inst.program), is_drum=bool(inst.is_drum), name=inst.name)
            pm.instruments.append(tracks[i])
    for p, s, d, v, i in zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.instrument):
        tracks[int(i)].notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(s + d)))
    return pm


def _document(notes: Notes) -> MidiDocument:
    """``notes.document``, for the writers that run only when there is one."""
    if notes.document is None:
        raise MusicLensError("internal error: these notes were not read from a file")
    return notes.document


def _file_track(inst: Instrument) -> int:
    """The track of an instrument read from a file (read_midi always sets it)."""
    if inst.track is None:
        raise MusicLensError("internal error: an instrument read from a file has no track")
    return inst.track


def _view_ticks(notes: Notes) -> tuple[dict[int, list[_Ticks]], dict[int, list[_Ticks]]]:
    """The notes in ticks of the document, ``(by document instrument, by view instrument not from it)``."""
    doc = _document(notes)
    covered = covered_tracks(notes)
    starts = doc.to_ticks(notes.start)
    ends = np.maximum(doc.to_ticks(notes.end), starts + 1)  # a zero-tick note would vanish
    by_track: dict[int, list[_Ticks]] = {j: [] for j in covered}
    extra: dict[int, list[_Ticks]] = {}
    for s, e, p, v, k in zip(
        starts.tolist(), ends.tolist(), notes.pitch.tolist(), notes.velocity.tolist(), notes.instrument.tolist()
    ):
        track = notes.instruments[k].track
        (by_track[track] if track in covered else extra.setdefault(k, [])).append((s, e, int(p), int(v)))
    return by_track, extra


def _note_events(notes: Sequence[_Ticks], channel: int) -> list[_Event]:
    import mido

    events: list[_Event] = []
    for s, e, p, v in notes:
        events.append((e, 0, 0, mido.Message("note_off", channel=channel, note=p, velocity=0)))
        events.append((s, 2, 0, mido.Message("note_on", channel=channel, note=p, velocity=v)))
    return events


def _track_from_events(events: Sequence[_Event], end_tick: int = 0) -> Any:  # a mido.MidiTrack
    """``(absolute tick, order, seq, message)`` sorted -> a MidiTrack with delta times and end of track."""
    import mido

    track = mido.MidiTrack()
    now = 0
    for tick, _, _, msg in events:
        track.append(msg.copy(time=int(tick) - now))
        now = int(tick)
    track.append(mido.MetaMessage("end_of_track", time=max(int(end_tick) - now, 0)))
    return track


def _free_channel(used: set[int], drum: bool) -> int:
    if drum:
        return 9
    return next((c for c in range(16) if c != 9 and c not in used), 0)


def _document_midi(notes: Notes, *, keep_other_tracks: bool = True) -> Any:  # a mido.MidiFile
    """The document of ``notes`` with the notes of ``notes``' instruments replaced: a ``mido.MidiFile``.

    Only the (track, channel) pairs whose notes differ from the file's are rewritten; every
    other event of every track is copied as it was (same tick, same order). Instruments of
    ``notes`` that are not from the file get a track of their own.
    """
    import mido

    _check_writable(notes)
    doc = _document(notes)
    keys = doc.keys
    if keys is None:  # _save sends these documents to _document_pretty_midi
        raise MusicLensError("internal error: the file's instruments are not matched to its tracks")
    by_track, extra = _view_ticks(notes)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for j, (_, channel, t) in enumerate(keys):
        groups[(t, channel)].append(j)
    rewrite: dict[tuple[int, int], list[_Ticks]] = {}
    for g, members in groups.items():
        changed = any(j in by_track and sorted(by_track[j]) != doc.note_ticks(j) for j in members)
        dropped = not keep_other_tracks and any(j not in by_track for j in members)
        if changed or dropped:
            rewrite[g] = [
                n
                for j in members
                for n in (by_track[j] if j in by_track else (doc.note_ticks(j) if keep_other_tracks else []))
            ]
    out = mido.MidiFile(
        type=1 if extra and doc.midi.type == 0 else doc.midi.type,
        ticks_per_beat=doc.midi.ticks_per_beat,
        charset=doc.midi.charset,
    )
    for t, track in enumerate(doc.midi.tracks):
        channels = {c for (tt, c) in rewrite if tt == t}
        end_tick = 0
        events: list[_Event] = []
        for i, msg in enumerate(track):
            if msg.type == "end_of_track":
                end_tick = max(end_tick, msg.time)
            elif not (channels and _is_note(msg) and msg.channel in channels):
                events.append((msg.time, 1, i, msg))
        if channels:
            for c in sorted(channels):
                events += _note_events(rewrite[(t, c)], c)
            events.sort(key=lambda e: e[:3])  # note-offs, then the file's events, then note-ons
        last = events[-1][0] if events else 0
        out.tracks.append(_track_from_events(events, max(end_tick, last)))
    used = {c for _, c, _ in keys}
    for k, rows in extra.items():
        inst = notes.instruments[k]
        channel = _free_channel(used, inst.is_drum)
        used.add(channel)
        head = [(0, 1, 0, mido.MetaMessage("track_name", name=inst.name))] if inst.name else []
        head.append((0, 1, 1, mido.Message("program_change", channel=channel, program=int(inst.program))))
        events = sorted(head + _note_events(rows, channel), key=lambda e: e[:3])
        out.tracks.append(_track_from_events(events, events[-1][0]))
    return out


def _document_pretty_midi(notes: Notes, *, keep_other_tracks: bool = True) -> Any:  # a PrettyMIDI
    """Fallback when the file's instruments cannot be matched to its tracks: through pretty_midi.

    Keeps every instrument (program, drum flag, name, controllers, pitch bends) and the tempo
    map; loses events pretty_midi does not model (sysex, markers) and the channel numbers.
    """
    import copy

    import pretty_midi

    _check_writable(notes)
    doc = _document(notes)
    pm = copy.copy(doc.pm)
    covered = covered_tracks(notes)
    pm.instruments = []
    for j, old in enumerate(doc.pm.instruments):
        inst = pretty_midi.Instrument(program=old.program, is_drum=old.is_drum, name=old.name)
        inst.control_changes, inst.pitch_bends = list(old.control_changes), list(old.pitch_bends)
        if j not in covered and keep_other_tracks:
            inst.notes = list(old.notes)
        pm.instruments.append(inst)
    extra: dict[int, pretty_midi.Instrument] = {}
    for p, s, d, v, k in zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.instrument):
        info = notes.instruments[int(k)]
        if info.track in covered:
            target = pm.instruments[info.track]
        else:
            if int(k) not in extra:
                extra[int(k)] = pretty_midi.Instrument(program=info.program, is_drum=info.is_drum, name=info.name)
                pm.instruments.append(extra[int(k)])
            target = extra[int(k)]
        target.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(s + d)))
    return pm


def _save(notes: Notes, target: str | os.PathLike[str] | BinaryIO, *, keep_other_tracks: bool = True) -> None:
    """Write the file of ``notes`` to a path or a binary file object."""
    doc = notes.document
    if doc is None:
        pm = _to_pretty_midi(notes)
    elif doc.keys is None:
        pm = _document_pretty_midi(notes, keep_other_tracks=keep_other_tracks)
    else:
        mf = _document_midi(notes, keep_other_tracks=keep_other_tracks)
        if isinstance(target, (str, os.PathLike)):
            mf.save(filename=str(target))
        else:
            mf.save(file=target)
        return
    pm.write(str(target) if isinstance(target, (str, os.PathLike)) else target)


def write_midi(notes: Notes, path: str | os.PathLike[str], *, keep_other_tracks: bool = True) -> Path:
    """Write ``notes`` as a Standard MIDI File. Returns the path.

    Notes read from a file (``notes.document`` set) are written back *into that file*: its
    tracks, tempo map, time and key signatures, programs, controllers, pitch bends, sysex
    and markers are kept event for event, and so are the notes of the instruments ``notes``
    does not hold (e.g. the drums a model leaves out; ``keep_other_tracks=False`` leaves
    their notes out). Times are rounded to the file's ticks, so unedited notes keep their
    exact ticks.

    Notes without a document are written as a type-1 file, one track per instrument that
    has notes, at ``notes.tempo`` and ``notes.resolution``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _save(notes, path, keep_other_tracks=keep_other_tracks)
    except OSError as exc:
        raise MusicLensError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def midi_bytes(notes: Notes, *, keep_other_tracks: bool = True) -> bytes:
    """The Standard MIDI File :func:`write_midi` would write, as bytes."""
    buf = io.BytesIO()
    _save(notes, buf, keep_other_tracks=keep_other_tracks)
    return buf.getvalue()


def _view_midi(notes: Notes) -> tuple[Any, list[int]]:  # (a mido.MidiFile, view instrument per track)
    """A small file with the tempo map of ``notes``' document and only ``notes``, one track per
    instrument (on its channel in the file), and the view instrument index of each track."""
    import mido

    doc = _document(notes)
    conductor = sorted(
        ((msg.time, 1, i, msg) for tr in doc.midi.tracks for i, msg in enumerate(tr) if msg.type == "set_tempo"),
        key=lambda e: e[:3],
    )
    mf = mido.MidiFile(type=1, ticks_per_beat=doc.midi.ticks_per_beat)
    mf.tracks.append(_track_from_events(conductor, conductor[-1][0] if conductor else 0))
    starts = doc.to_ticks(notes.start)
    ends = np.maximum(doc.to_ticks(notes.end), starts + 1)
    order: list[int] = []
    keys = doc.keys or []
    for k, inst in enumerate(notes.instruments):
        rows = np.flatnonzero(notes.instrument == k)
        if not len(rows):
            continue
        if inst.track is not None and inst.track < len(keys):
            channel = keys[inst.track][1]
        else:
            channel = 9 if inst.is_drum else _free_channel(set(), False)
        events = [(0, 1, 0, mido.Message("program_change", channel=channel, program=int(inst.program)))]
        events += _note_events(
            [(int(starts[r]), int(ends[r]), int(notes.pitch[r]), int(notes.velocity[r])) for r in rows], channel
        )
        events.sort(key=lambda e: e[:3])
        mf.tracks.append(_track_from_events(events, events[-1][0]))
        order.append(k)
    return mf, order


def through_file(notes: Notes) -> Notes:
    """What reading back the file written from ``notes`` gives: MIDI's own rules applied.

    Times snap to ticks (of the document's tempo map when there is one), and notes of the
    same pitch that overlap on one instrument are cut where MIDI cuts them (one key cannot
    sound twice on a channel). Only ``notes`` are written (not the document's other tracks);
    instrument indices refer to ``notes.instruments`` again and the document is kept.
    """
    if notes.document is None:
        back = read_midi(midi_bytes(notes))
        used = np.array([i for i in range(len(notes.instruments)) if np.any(notes.instrument == i)], dtype=np.int16)
        if len(back):
            back.instrument = used[back.instrument]
    else:
        _check_writable(notes)
        mf, order = _view_midi(notes)
        buf = io.BytesIO()
        mf.save(file=buf)
        back = read_midi(buf.getvalue())
        keys = _document(back).keys
        if keys is None:  # cannot happen with one program per track; be safe
            raise MusicLensError("internal error: the written notes cannot be matched to their instruments")
        view_of = (
            np.array([order[keys[_file_track(i)][2] - 1] for i in back.instruments], dtype=np.int16)
            if len(back)
            else np.zeros(0, dtype=np.int16)
        )
        if len(back):
            back.instrument = view_of[back.instrument]
        back.document = notes.document
        back = back.sorted()
    back.instruments = list(notes.instruments)
    back.tempo, back.resolution = notes.tempo, notes.resolution
    back.source = notes.source
    back.repairs = []
    return back


# ---------------------------------------------------------------------------- display
def piano_roll(
    notes: Notes,
    *,
    fs: float = 100.0,
    values: np.ndarray | None = None,
    pitch_range: tuple[int, int] = (0, 128),
    duration: float | None = None,
) -> np.ndarray:
    """A piano roll for display: ``(pitch_range[1] - pitch_range[0], T)`` float32, ``T = ceil(end · fs)``.

    Each note fills its row from ``start`` to ``end`` (at least one frame) with its
    velocity, or with ``values[i]`` if given (e.g. per-note saliency). Overlapping notes
    of the same pitch keep the larger absolute value. Row 0 is ``pitch_range[0]``.
    """
    lo, hi = pitch_range
    if not 0 <= lo < hi <= 128:
        raise ParameterError(f"pitch_range must satisfy 0 <= lo < hi <= 128, got {pitch_range}")
    if fs <= 0:
        raise ParameterError(f"fs must be positive, got {fs}")
    vals = notes.velocity.astype(np.float32) if values is None else np.asarray(values, dtype=np.float32)
    if vals.shape != (len(notes),):
        raise ParameterError(f"values must have shape ({len(notes)},), got {vals.shape}")
    total = duration if duration is not None else (float(notes.end.max()) if len(notes) else 0.0)
    n_frames = int(np.ceil(total * fs))
    roll = np.zeros((hi - lo, max(n_frames, 0)), dtype=np.float32)
    for p, s, e, v in zip(notes.pitch, notes.start, notes.end, vals):
        if not lo <= p < hi:
            continue
        a = int(np.floor(s * fs + 1e-6))  # tolerate float error at frame boundaries
        b = max(int(np.ceil(e * fs - 1e-6)), a + 1)
        if a >= n_frames:
            continue
        seg = roll[p - lo, a : min(b, n_frames)]
        np.copyto(seg, v, where=np.abs(v) > np.abs(seg))
    return roll
