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
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError

FEATURES: tuple[str, ...] = ("pitch", "step", "duration")
MIDI_EXTENSIONS: tuple[str, ...] = (".mid", ".midi", ".rmi", ".kar")
_TIME_DECIMALS = 9
MAX_FILE_BYTES = 64 * 1024 * 1024


class MidiFileError(MusicLensError):
    """A MIDI file cannot be read (missing, empty, not MIDI, truncated, corrupt)."""


class TooFewNotesError(MusicLensError):
    """A piece has fewer notes than a model's window needs and padding was not allowed."""


@dataclass(frozen=True)
class Instrument:
    """One track/instrument of a piece: General MIDI ``program`` 0..127 and drum flag."""

    program: int = 0
    is_drum: bool = False
    name: str = ""


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
        return self.start + self.duration

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

    def features(self, dtype=np.float32) -> np.ndarray:
        """``(N, 3)`` ``[pitch, step (s), duration (s)]`` per note (float32 unless ``dtype``)."""
        return np.stack([self.pitch.astype(np.float64), self.step, self.duration], axis=1).astype(dtype)

    def select(self, index: np.ndarray | slice) -> "Notes":
        """A copy holding only the notes at ``index`` (boolean mask, indices or slice)."""
        return replace(self, pitch=self.pitch[index], start=self.start[index],
                       duration=self.duration[index], velocity=self.velocity[index],
                       instrument=self.instrument[index], repairs=list(self.repairs))

    def first(self, n: int) -> "Notes":
        return self.select(slice(0, max(int(n), 0)))

    def sorted(self) -> "Notes":
        order = np.lexsort((self.pitch, self.start))
        return self.select(order)

    def equals(self, other: "Notes") -> bool:
        """Same notes (pitch, times, velocity, program and drum flag of each note)."""
        return (len(self) == len(other)
                and np.array_equal(self.pitch, other.pitch)
                and np.array_equal(self.start, other.start)
                and np.array_equal(self.duration, other.duration)
                and np.array_equal(self.velocity, other.velocity)
                and np.array_equal(self.program, other.program)
                and np.array_equal(self.is_drum, other.is_drum))

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per note (``pitch, start, step, duration, velocity, program, drum``)."""
        step = self.step
        return [{"pitch": int(self.pitch[i]), "start": float(self.start[i]), "step": float(step[i]),
                 "duration": float(self.duration[i]), "velocity": int(self.velocity[i]),
                 "program": int(self.program[i]), "drum": bool(self.is_drum[i])}
                for i in range(len(self))]


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
            tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
            if tag == b"data":
                smf = data[pos + 8:pos + 8 + size]
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
            "(.mid/.midi, starting with 'MThd') or a RIFF-RMID wrapper")
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


def _coarsen_ticks(mf, limit: int = 4_000_000) -> None:
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


def load_pretty_midi(path_or_bytes: str | os.PathLike[str] | bytes, *, name: str | None = None):
    """Parse MIDI robustly; returns ``(pretty_midi.PrettyMIDI, repairs: list[str])``."""
    import mido
    import pretty_midi

    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
        name = name or "<bytes>"
    else:
        path = Path(path_or_bytes)
        name = name or str(path)
        if path.is_dir():
            raise MidiFileError(f"{name} is a folder, not a MIDI file")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise MidiFileError(f"MIDI file not found: {name}") from None
        if size > MAX_FILE_BYTES:
            raise MidiFileError(f"{name} is {size / 2**20:.0f} MB; MIDI files over "
                                f"{MAX_FILE_BYTES // 2**20} MB are refused")
        data = path.read_bytes()
    if not data:
        raise MidiFileError(f"{name} is empty (0 bytes)")
    data, repairs = _unwrap(data, name)

    first_error: Exception | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pretty_midi.PrettyMIDI(io.BytesIO(data)), repairs
        except Exception as exc:  # noqa: BLE001 - any parser failure goes to the lenient path
            first_error = exc
        if isinstance(first_error, ValueError) and "largest tick" in str(first_error):
            # pretty_midi refuses > 1e7 ticks (it allocates a tick -> time table); long pieces
            # at a fine resolution (music21 writes 10080 ticks per beat) are valid MIDI though.
            try:
                mf = mido.MidiFile(file=io.BytesIO(data), clip=True)
                old_tpb = mf.ticks_per_beat
                _coarsen_ticks(mf)
                pm = pretty_midi.PrettyMIDI(mido_object=mf)
                return pm, repairs + [f"reduced the resolution from {old_tpb} to {mf.ticks_per_beat} "
                                      "ticks per beat (the file has more than 10 million ticks)"]
            except Exception:  # noqa: BLE001
                pass
        attempts = [(data, ["clamped out-of-range data bytes (mido clip=True)"])]
        fixed_data, n_fixed = _fix_key_signatures(data)
        if n_fixed:
            attempts.append((fixed_data, [f"replaced {n_fixed} invalid key signature(s) by C major",
                                          "clamped out-of-range data bytes (mido clip=True)"]))
        for attempt, what in attempts:
            try:
                mf = mido.MidiFile(file=io.BytesIO(attempt), clip=True)
                pm = pretty_midi.PrettyMIDI(mido_object=mf)
            except Exception:  # noqa: BLE001
                continue
            return pm, repairs + what
    reason = f"{type(first_error).__name__}: {first_error}".strip()
    if isinstance(first_error, EOFError) or "EOF" in reason or "end of file" in reason.lower():
        reason = "the file is truncated (it ends in the middle of a track)"
    raise MidiFileError(f"{name} cannot be read as MIDI, even leniently: {reason}")


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
    pm, repairs = load_pretty_midi(path, name=name)
    insts: list[Instrument] = []
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    n_inst = len(pm.instruments)
    if instruments is not None:
        bad = [i for i in instruments if not 0 <= int(i) < n_inst]
        if bad:
            raise ParameterError(f"instrument indices {bad} are out of range; this file has {n_inst} "
                                 f"instrument(s), 0..{n_inst - 1}")
    for idx, inst in enumerate(pm.instruments):
        if drop_drums and inst.is_drum:
            continue
        if instruments is not None and idx not in {int(i) for i in instruments}:
            continue
        if programs is not None and (inst.is_drum or inst.program not in {int(p) for p in programs}):
            continue
        if not inst.notes:
            continue
        k = len(insts)
        insts.append(Instrument(int(inst.program), bool(inst.is_drum), str(inst.name or "")))
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
        pitch=np.clip(pitch, 0, 127), start=start, duration=np.round(np.maximum(end - start, 0.0), _TIME_DECIMALS),
        velocity=np.clip(vel, 1, 127), instrument=which, instruments=insts or [Instrument()],
        tempo=float(tempi[0]) if len(tempi) else 120.0, resolution=int(pm.resolution),
        source=None if isinstance(path, (bytes, bytearray)) else Path(path), repairs=repairs,
    )
    return notes.sorted()


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
    return replace(base, pitch=np.clip(np.rint(features[:, 0]), 0, 127),
                   start=start, duration=np.round(np.maximum(features[:, 2], 0.0), _TIME_DECIMALS),
                   repairs=[])


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

    ``b``'s instruments are appended to ``a``'s (an instrument equal in program, drum flag
    and name is shared).
    """
    instruments = list(a.instruments)
    remap = []
    for inst in b.instruments:
        if inst not in instruments:
            instruments.append(inst)
        remap.append(instruments.index(inst))
    b_inst = np.asarray(remap, dtype=np.int16)[b.instrument] if len(b) else b.instrument
    return replace(
        a, pitch=np.concatenate([a.pitch, b.pitch]), start=np.concatenate([a.start, b.start]),
        duration=np.concatenate([a.duration, b.duration]), velocity=np.concatenate([a.velocity, b.velocity]),
        instrument=np.concatenate([a.instrument, b_inst]), instruments=instruments,
        repairs=list(a.repairs)).sorted()


def quantise(notes: Notes, *, min_ticks: int = 1) -> Notes:
    """Snap start and end times to the tick grid :func:`write_midi` will use.

    Durations become at least ``min_ticks`` ticks, so every note survives writing. The
    result is what reading the written file gives back.
    """
    tick = 60.0 / (notes.tempo * notes.resolution)
    start_t = np.rint(notes.start / tick)
    end_t = np.maximum(np.rint(notes.end / tick), start_t + min_ticks)
    start = np.round(start_t * tick, _TIME_DECIMALS)
    end = np.round(end_t * tick, _TIME_DECIMALS)
    return replace(notes, start=start, duration=np.round(end - start, _TIME_DECIMALS),
                   repairs=list(notes.repairs)).sorted()


# ---------------------------------------------------------------------------- writing
def _to_pretty_midi(notes: Notes):
    import pretty_midi

    if not np.all((notes.pitch >= 0) & (notes.pitch <= 127)):
        raise ParameterError("pitches must be 0..127 to write MIDI")
    if np.any(notes.duration < 0) or np.any(notes.start < 0):
        raise ParameterError("note starts and durations must be >= 0 to write MIDI")
    pm = pretty_midi.PrettyMIDI(resolution=int(notes.resolution), initial_tempo=float(notes.tempo))
    tracks: dict[int, pretty_midi.Instrument] = {}
    for i, inst in enumerate(notes.instruments):
        if np.any(notes.instrument == i):
            tracks[i] = pretty_midi.Instrument(program=int(inst.program), is_drum=bool(inst.is_drum),
                                               name=inst.name)
            pm.instruments.append(tracks[i])
    for p, s, d, v, i in zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.instrument):
        tracks[int(i)].notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s),
                                                     end=float(s + d)))
    return pm


def write_midi(notes: Notes, path: str | os.PathLike[str]) -> Path:
    """Write ``notes`` as a Standard MIDI File (type 1) with their tempo, resolution and programs.

    One track per instrument in ``notes.instruments`` that has notes; times are rounded to
    the nearest tick (``60 / (tempo · resolution)`` s). Returns the path.
    """
    path = Path(path)
    pm = _to_pretty_midi(notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.write(str(path))
    except OSError as exc:
        raise MusicLensError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def midi_bytes(notes: Notes) -> bytes:
    """The Standard MIDI File :func:`write_midi` would write, as bytes."""
    buf = io.BytesIO()
    _to_pretty_midi(notes).write(buf)
    return buf.getvalue()


def through_file(notes: Notes) -> Notes:
    """What reading back the file written from ``notes`` gives: MIDI's own rules applied.

    Times snap to ticks, and notes of the same pitch that overlap on one instrument are
    cut where MIDI cuts them (one key cannot sound twice on a channel). Instrument
    indices refer to ``notes.instruments`` again.
    """
    back = read_midi(midi_bytes(notes))
    used = np.array([i for i in range(len(notes.instruments)) if np.any(notes.instrument == i)], dtype=np.int16)
    if len(back):
        back.instrument = used[back.instrument]
    back.instruments = list(notes.instruments)
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
        seg = roll[p - lo, a:min(b, n_frames)]
        np.copyto(seg, v, where=np.abs(v) > np.abs(seg))
    return roll
