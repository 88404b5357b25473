"""Editing a piece's notes with undo/redo, and a JSON recovery file. No Qt.

A :class:`NoteEditor` holds the notes of one piece as ``id -> Note``; the ids are stable
across edits (a moved note keeps its id), so every edit is an :class:`Edit` that removes
some notes and adds others, and its inverse just swaps the two. Undo therefore gives back
*exactly* the notes before the edit (same values, same order), hence exactly the same
model input and probabilities.

``editor.notes`` is the piece as :class:`~musiclens.core.midi.Notes`, sorted by start,
pitch and id (ids are given in the order of the piece read from the file, so an unedited
piece is the file's notes in the file's order); ``editor.ids`` is the id of each row.

:meth:`NoteEditor.to_json` / :meth:`NoteEditor.from_json` serialise the piece and its
whole undo/redo history; the app writes it to a recovery file after each edit
(:func:`write_recovery`, atomic) so a crash or a kill loses nothing.

The editor holds the notes a model reads (e.g. no drums); the file they came from stays in
``editor.notes.document`` and :func:`~musiclens.core.midi.write_midi` writes it back whole
(drums, tempo map, controllers, ...). A recovery file names the source file and its
SHA-256; restoring re-reads the source for the rest of the file when it is unchanged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.midi import Instrument, MidiDocument, Notes

RECOVERY_FORMAT = "musiclens-recovery/1"
_DECIMALS = 9
MIN_DURATION = 1e-3  # seconds


@dataclass(frozen=True)
class Note:
    pitch: int
    start: float
    duration: float
    velocity: int = 90
    instrument: int = 0

    def clean(self) -> Note:
        """Valid values: pitch 0..127, start >= 0, duration >= 1 ms, velocity 1..127."""
        return Note(
            int(np.clip(round(self.pitch), 0, 127)),
            round(max(float(self.start), 0.0), _DECIMALS),
            round(max(float(self.duration), MIN_DURATION), _DECIMALS),
            int(np.clip(round(self.velocity), 1, 127)),
            int(self.instrument),
        )

    @property
    def end(self) -> float:
        return self.start + self.duration

    def to_list(self) -> list[int | float]:
        return [self.pitch, self.start, self.duration, self.velocity, self.instrument]

    @classmethod
    def from_list(cls, row: Sequence[Any]) -> Note:
        return cls(int(row[0]), float(row[1]), float(row[2]), int(row[3]), int(row[4]))


@dataclass
class Edit:
    """Remove ``before`` (id -> note) then add ``after`` (id -> note). A move has the same id in both."""

    name: str
    before: dict[int, Note]
    after: dict[int, Note]

    def inverse(self) -> Edit:
        return Edit(self.name, self.after, self.before)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "before": [[i] + n.to_list() for i, n in self.before.items()],
            "after": [[i] + n.to_list() for i, n in self.after.items()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Edit:
        return cls(
            str(d["name"]),
            {int(r[0]): Note.from_list(r[1:]) for r in d["before"]},
            {int(r[0]): Note.from_list(r[1:]) for r in d["after"]},
        )


@dataclass
class Clipboard:
    """Copied notes, times relative to the earliest copied start."""

    notes: list[Note] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.notes)


def snap(t: float | np.ndarray, grid: float | None) -> float | np.ndarray:
    """Round times to multiples of ``grid`` seconds (``None`` or 0: unchanged)."""
    if not grid:
        return t
    return (
        np.round(np.round(np.asarray(t) / grid) * grid, _DECIMALS)
        if isinstance(t, np.ndarray)
        else round(round(t / grid) * grid, _DECIMALS)
    )


class NoteEditor:
    """Notes of one piece with invertible edits and an undo/redo stack."""

    def __init__(self, notes: Notes, *, source: str | os.PathLike[str] | None = None) -> None:
        self.template = replace(notes.select(slice(0, 0)), repairs=list(notes.repairs))
        self.source = str(source if source is not None else (notes.source or "")) or None
        self._notes: dict[int, Note] = {
            i: Note(int(p), float(s), float(d), int(v), int(k))
            for i, (p, s, d, v, k) in enumerate(
                zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.instrument)
            )
        }
        self._next_id = len(self._notes)
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self.revision = 0  # bumped by every change (edit, undo, redo)
        self.saved_revision = 0
        self._cache: tuple[int, Notes, np.ndarray] | None = None

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._notes)

    def note(self, note_id: int) -> Note:
        return self._notes[note_id]

    def items(self) -> list[tuple[int, Note]]:
        return list(self._notes.items())

    def _build(self) -> tuple[Notes, np.ndarray]:
        if self._cache is None or self._cache[0] != self.revision:
            ids = np.array(
                sorted(self._notes, key=lambda i: (self._notes[i].start, self._notes[i].pitch, i)), dtype=np.int64
            )
            rows = [self._notes[i] for i in ids]
            notes = replace(
                self.template,
                pitch=np.array([n.pitch for n in rows], dtype=np.int16),
                start=np.array([n.start for n in rows], dtype=np.float64),
                duration=np.array([n.duration for n in rows], dtype=np.float64),
                velocity=np.array([n.velocity for n in rows], dtype=np.int16),
                instrument=np.array([n.instrument for n in rows], dtype=np.int16),
                repairs=list(self.template.repairs),
            )
            self._cache = (self.revision, notes, ids)
        return self._cache[1], self._cache[2]

    @property
    def notes(self) -> Notes:
        return self._build()[0]

    @property
    def ids(self) -> np.ndarray:
        """Id of each row of :attr:`notes`."""
        return self._build()[1]

    @property
    def beat(self) -> float:
        return 60.0 / float(self.template.tempo)

    @property
    def modified(self) -> bool:
        return self.revision != self.saved_revision

    def at(self, time_s: float, pitch: float) -> int | None:
        """Id of the (latest-starting) note covering ``time_s`` at row ``pitch``, or None."""
        p = int(np.floor(pitch + 0.5))
        hits = [(n.start, i) for i, n in self._notes.items() if n.pitch == p and n.start <= time_s <= n.end]
        return max(hits)[1] if hits else None

    def in_rect(self, t0: float, t1: float, p0: float, p1: float) -> list[int]:
        """Ids of notes overlapping the time range and the pitch range (inclusive rows)."""
        t0, t1 = sorted((t0, t1))
        p0, p1 = sorted((p0, p1))
        return [i for i, n in self._notes.items() if n.end >= t0 and n.start <= t1 and p0 - 0.5 <= n.pitch <= p1 + 0.5]

    # ------------------------------------------------------------------ edits
    def apply(self, edit: Edit, *, record: bool = True) -> Edit:
        missing = [i for i in edit.before if self._notes.get(i) != edit.before[i]]
        if missing:
            raise ParameterError(f"edit {edit.name!r} does not fit the current notes (ids {missing[:5]})")
        for i in edit.before:
            del self._notes[i]
        for i, n in edit.after.items():
            if i in self._notes:
                raise ParameterError(f"edit {edit.name!r} adds note id {i}, which exists")
            self._notes[i] = n
            self._next_id = max(self._next_id, i + 1)
        self.revision += 1
        if record:
            self.undo_stack.append(edit)
            self.redo_stack.clear()
        return edit

    def _change(self, name: str, ids: Iterable[int], fn: Callable[[Note], Note]) -> Edit | None:
        present = [i for i in dict.fromkeys(ids) if i in self._notes]
        before = {i: self._notes[i] for i in present}
        after = {i: fn(n).clean() for i, n in before.items()}
        if not present or all(before[i] == after[i] for i in present):
            return None
        return self.apply(Edit(name, before, after))

    def add(self, notes: Iterable[Note], name: str = "add notes") -> list[int]:
        new: dict[int, Note] = {}
        for n in notes:
            new[self._next_id + len(new)] = n.clean()
        if new:
            self.apply(Edit(name, {}, new))
        return list(new)

    def delete(self, ids: Iterable[int]) -> Edit | None:
        before = {i: self._notes[i] for i in dict.fromkeys(ids) if i in self._notes}
        return self.apply(Edit(f"delete {len(before)} note(s)", before, {})) if before else None

    def move(self, ids: Iterable[int], dt: float = 0.0, dpitch: int = 0) -> Edit | None:
        return self._change("move", ids, lambda n: replace(n, start=n.start + dt, pitch=n.pitch + int(dpitch)))

    def resize(self, ids: Iterable[int], dduration: float) -> Edit | None:
        return self._change("resize", ids, lambda n: replace(n, duration=n.duration + dduration))

    def set_duration(self, ids: Iterable[int], duration: float) -> Edit | None:
        return self._change("resize", ids, lambda n: replace(n, duration=duration))

    def set_velocity(self, ids: Iterable[int], velocity: int) -> Edit | None:
        return self._change("velocity", ids, lambda n: replace(n, velocity=int(velocity)))

    def copy(self, ids: Iterable[int]) -> Clipboard:
        chosen = [self._notes[i] for i in ids if i in self._notes]
        if not chosen:
            return Clipboard()
        t0 = min(n.start for n in chosen)
        return Clipboard(
            [replace(n, start=round(n.start - t0, _DECIMALS)) for n in sorted(chosen, key=lambda n: (n.start, n.pitch))]
        )

    def paste(self, clipboard: Clipboard, at: float, dpitch: int = 0) -> list[int]:
        return self.add(
            [replace(n, start=n.start + at, pitch=n.pitch + dpitch) for n in clipboard.notes],
            name=f"paste {len(clipboard.notes)} note(s)",
        )

    def replace_all(self, notes: Notes, name: str) -> Edit:
        """Replace the whole piece by ``notes`` (one undoable edit); unchanged notes keep their ids."""
        old = dict(self._notes)
        new_rows = [
            Note(int(p), float(s), float(d), int(v), int(k)).clean()
            for p, s, d, v, k in zip(notes.pitch, notes.start, notes.duration, notes.velocity, notes.instrument)
        ]
        by_value: dict[Note, list[int]] = {}
        for i, n in old.items():
            by_value.setdefault(n, []).append(i)
        kept: set[int] = set()
        added: dict[int, Note] = {}
        nxt = self._next_id
        for n in new_rows:
            same = by_value.get(n)
            if same:
                kept.add(same.pop(0))
            else:
                added[nxt] = n
                nxt += 1
        before = {i: n for i, n in old.items() if i not in kept}
        return self.apply(Edit(name, before, added))

    def undo(self) -> Edit | None:
        if not self.undo_stack:
            return None
        edit = self.undo_stack.pop()
        self.apply(edit.inverse(), record=False)
        self.redo_stack.append(edit)
        return edit

    def redo(self) -> Edit | None:
        if not self.redo_stack:
            return None
        edit = self.redo_stack.pop()
        self.apply(edit, record=False)
        self.undo_stack.append(edit)
        return edit

    def mark_saved(self) -> None:
        self.saved_revision = self.revision

    # ------------------------------------------------------------------ recovery
    def to_json(self) -> dict[str, Any]:
        t = self.template
        return {
            "format": RECOVERY_FORMAT,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "source": self.source,
            "tempo": float(t.tempo),
            "resolution": int(t.resolution),
            "instruments": [[i.program, i.is_drum, i.name, i.track] for i in t.instruments],
            "source_sha256": t.document.sha256 if t.document is not None else None,
            "notes": [[i] + n.to_list() for i, n in self._notes.items()],
            "next_id": self._next_id,
            "undo": [e.to_dict() for e in self.undo_stack],
            "redo": [e.to_dict() for e in self.redo_stack],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NoteEditor:
        if d.get("format") != RECOVERY_FORMAT:
            raise MusicLensError(f"not a MusicLens recovery file (format {d.get('format')!r})")
        try:
            insts = [
                Instrument(int(r[0]), bool(r[1]), str(r[2]), None if len(r) < 4 or r[3] is None else int(r[3]))
                for r in d["instruments"]
            ]
            none = np.zeros(0)  # Notes converts each column to its dtype
            empty = Notes(
                pitch=none,
                start=none,
                duration=none,
                velocity=none,
                instrument=none,
                instruments=insts or [Instrument()],
                tempo=float(d["tempo"]),
                resolution=int(d["resolution"]),
                source=Path(d["source"]) if d.get("source") else None,
                document=_source_document(d.get("source"), d.get("source_sha256")),
            )
            if d.get("source_sha256") and empty.document is None:
                empty.repairs.append(
                    "the source file changed or is gone: its other tracks (e.g. drums), "
                    "tempo map and controllers cannot be restored; saving writes the "
                    "edited notes only"
                )
            ed = cls(empty, source=d.get("source"))
            ed._notes = {int(r[0]): Note.from_list(r[1:]) for r in d["notes"]}
            ed._next_id = max([int(d.get("next_id", 0))] + [i + 1 for i in ed._notes])
            ed.undo_stack = [Edit.from_dict(e) for e in d.get("undo", [])]
            ed.redo_stack = [Edit.from_dict(e) for e in d.get("redo", [])]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MusicLensError(f"the recovery file is damaged: {type(exc).__name__}: {exc}") from None
        ed.revision = 1  # restored edits are not saved to a .mid yet
        return ed


def _source_document(source: str | None, sha256: str | None) -> MidiDocument | None:
    """The document of the recovered piece's source file, if the file is still there, unchanged."""
    if not source or not sha256 or not Path(source).is_file():
        return None
    from musiclens.core.midi import load_document

    try:
        doc, _ = load_document(source)
    except MusicLensError:
        return None
    return doc if doc.sha256 == sha256 else None


def write_recovery(editor: NoteEditor, path: str | os.PathLike[str]) -> Path:
    """Write the editor's state atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(editor.to_json(), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_recovery(path: str | os.PathLike[str]) -> NoteEditor:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MusicLensError(f"no recovery file at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MusicLensError(f"the recovery file {path} is damaged: {exc}") from None
    return NoteEditor.from_json(data)


def recovery_summary(path: str | os.PathLike[str]) -> str | None:
    """One line describing a recovery file ("3 edits to tune.mid, 12:03"), or None if unreadable."""
    try:
        d = json.loads(Path(path).read_text())
        name = Path(d["source"]).name if d.get("source") else "an unsaved piece"
        return f"{len(d.get('undo', []))} edit(s) to {name} ({len(d['notes'])} notes), {d.get('saved_at', '')}"
    except Exception:  # noqa: BLE001
        return None


def diff_notes(before: Notes, after: Notes) -> dict[str, Any]:
    """What changed from ``before`` to ``after``, for drawing a proposal.

    Notes equal in (pitch, start, duration) are unchanged; the rest are paired in order
    (a flip changes notes in place): ``moved`` = list of (before row, after row);
    unmatched leftovers are ``removed`` (rows of before) and ``added`` (rows of after).
    """

    def key(n: Notes, i: int) -> tuple[int, float, float]:
        return (int(n.pitch[i]), round(float(n.start[i]), 6), round(float(n.duration[i]), 6))

    pool: dict[Any, list[int]] = {}
    for i in range(len(before)):
        pool.setdefault(key(before, i), []).append(i)
    unmatched_after = []
    for j in range(len(after)):
        rows = pool.get(key(after, j))
        if rows:
            rows.pop(0)
        else:
            unmatched_after.append(j)
    unmatched_before = sorted(i for rows in pool.values() for i in rows)
    n = min(len(unmatched_before), len(unmatched_after))
    return {
        "moved": list(zip(unmatched_before[:n], unmatched_after[:n])),
        "removed": unmatched_before[n:],
        "added": unmatched_after[n:],
    }
