"""The piano roll's note editor (pure Python, no Qt): invertible edits, undo/redo, recovery JSON,
the flip diff and the built-in synthesiser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musiclens.core.errors import MusicLensError
from musiclens.core.midi import Instrument, Notes, read_midi, write_midi
from musiclens.core.midi_edit import (
    Note,
    NoteEditor,
    diff_notes,
    read_recovery,
    recovery_summary,
    snap,
    write_recovery,
)
from musiclens.core.synth import additive, midi_to_hz, synthesise


def piece(n=12, seed=0) -> Notes:
    rng = np.random.default_rng(seed)
    start = np.round(np.cumsum(rng.choice([0.0, 0.25, 0.5], n)), 9)
    return Notes(
        pitch=rng.integers(55, 80, n),
        start=start,
        duration=rng.choice([0.25, 0.5, 1.0], n),
        velocity=rng.integers(40, 110, n),
        instrument=np.zeros(n),
        instruments=[Instrument(40, False, "fiddle")],
        tempo=100.0,
        resolution=480,
    ).sorted()


def same(a: Notes, b: Notes) -> bool:
    return a.equals(b) and np.array_equal(a.start, b.start) and np.array_equal(a.instrument, b.instrument)


def test_unedited_editor_gives_back_the_notes_exactly():
    notes = piece()
    ed = NoteEditor(notes)
    assert same(ed.notes, notes) and list(ed.ids) == list(range(len(notes)))
    assert ed.notes.tempo == 100.0 and ed.notes.instruments == notes.instruments
    assert ed.beat == pytest.approx(0.6) and not ed.modified


def test_every_edit_undoes_and_redoes_exactly():
    notes = piece(20, seed=3)
    ed = NoteEditor(notes)
    states = [ed.notes]
    ids = [int(i) for i in ed.ids]
    ed.move(ids[2:5], 0.75, 3)
    states.append(ed.notes)
    ed.resize([ids[0]], 0.5)
    states.append(ed.notes)
    ed.set_velocity(ids[:3], 12)
    states.append(ed.notes)
    new = ed.add([Note(72, 1.1, 0.3, 80), Note(200, -1.0, 0.0, 300)])  # second one gets cleaned
    states.append(ed.notes)
    assert ed.note(new[1]) == Note(127, 0.0, 1e-3, 127, 0)
    ed.delete([ids[7], new[0]])
    states.append(ed.notes)
    clip = ed.copy(ids[10:13])
    assert min(n.start for n in clip.notes) == 0.0
    pasted = ed.paste(clip, at=9.0, dpitch=-12)
    states.append(ed.notes)
    assert len(ed) == len(notes) + 2 - 2 + 3 and min(ed.note(i).start for i in pasted) == 9.0
    assert ed.move(ids[2:5], 0.0, 0) is None  # a no-op is not recorded
    assert len(ed.undo_stack) == len(states) - 1 and ed.modified

    # moved notes keep their id; the others are unchanged
    assert ed.note(ids[2]).pitch == int(notes.pitch[2]) + 3
    assert ed.note(ids[9]) == Note(
        int(notes.pitch[9]), float(notes.start[9]), float(notes.duration[9]), int(notes.velocity[9]), 0
    )
    for expected in reversed(states[:-1]):
        ed.undo()
        assert same(ed.notes, expected)
    assert ed.undo() is None and not ed.undo_stack
    for expected in states[1:]:
        ed.redo()
        assert same(ed.notes, expected)
    ed.undo()
    ed.move([ids[0]], 0.1)  # a new edit clears the redo stack
    assert not ed.redo_stack


def test_hit_testing_rectangles_and_snap():
    ed = NoteEditor(piece())
    n0 = ed.note(0)
    assert ed.at(n0.start + n0.duration / 2, n0.pitch + 0.3) == 0
    assert ed.at(n0.start + n0.duration / 2, n0.pitch + 40) is None
    everything = ed.in_rect(0, 100, 0, 127)
    assert sorted(everything) == list(range(len(ed)))
    assert ed.in_rect(100, 200, 0, 127) == []
    assert snap(0.37, 0.25) == 0.25 and snap(0.38, 0.25) == 0.5 and snap(0.37, 0) == 0.37
    np.testing.assert_allclose(snap(np.array([0.1, 0.2]), 0.15), [0.15, 0.15])


def test_replace_all_is_one_edit_and_keeps_unchanged_ids():
    notes = piece()
    ed = NoteEditor(notes)
    changed = notes.select(slice(None))
    changed.pitch = changed.pitch.copy()
    changed.pitch[3] += 5
    edit = ed.replace_all(changed, "flip to bach")
    assert len(edit.before) == 1 and len(edit.after) == 1 and len(ed.undo_stack) == 1
    assert sorted(ed.notes.pitch.tolist()) == sorted(changed.pitch.tolist())
    ed.undo()
    assert same(ed.notes, notes)


def test_recovery_json_round_trip_with_history(tmp_path):
    notes = piece(15, seed=5)
    ed = NoteEditor(notes, source=tmp_path / "tune.mid")
    ed.move([1, 2], 0.5, 2)
    ed.delete([0])
    ed.add([Note(60, 2.0, 0.5, 70)])
    ed.undo()  # one edit on the redo stack
    path = write_recovery(ed, tmp_path / "rec" / "recovery.json")
    assert not (tmp_path / "rec" / "recovery.json.tmp").exists()
    back = read_recovery(path)
    assert same(back.notes, ed.notes) and back.notes.tempo == 100.0 and back.notes.resolution == 480
    assert back.notes.instruments == notes.instruments and back.modified
    assert [e.name for e in back.undo_stack] == [e.name for e in ed.undo_stack]
    back.redo()
    ed.redo()
    assert same(back.notes, ed.notes)
    while back.undo():
        pass
    assert same(back.notes, notes)
    assert "2 edit(s) to tune.mid (14 notes)" in recovery_summary(path)  # one deleted

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MusicLensError, match="damaged"):
        read_recovery(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(MusicLensError, match="not a MusicLens recovery"):
        read_recovery(tmp_path / "other.json")
    assert recovery_summary(tmp_path / "bad.json") is None


def test_edited_notes_write_valid_midi(tmp_path):
    ed = NoteEditor(piece())
    ed.move([0, 1], 0.3, -2)
    ed.add([Note(90, 4.0, 0.5, 64)])
    back = read_midi(write_midi(ed.notes, tmp_path / "out.mid"))
    assert len(back) == len(ed) and 90 in back.pitch.tolist()
    np.testing.assert_allclose(back.start, ed.notes.start, atol=60 / (100 * 480))


def test_diff_marks_moved_added_removed():
    a = piece(6)
    b = a.select(slice(None))
    b.pitch = b.pitch.copy()
    b.pitch[2] += 1
    d = diff_notes(a, b)
    assert d == {"moved": [(2, 2)], "removed": [], "added": []}
    d = diff_notes(a, a.select(slice(0, 4)))
    assert d["removed"] == [4, 5] and d["added"] == [] and d["moved"] == []
    d = diff_notes(a.select(slice(0, 4)), a)
    assert d["added"] == [4, 5] and d["removed"] == []


def test_additive_synth_is_deterministic_and_in_tune():
    notes = Notes(pitch=[69, 81], start=[0.0, 1.0], duration=[0.5, 0.5], velocity=[100, 100], instrument=[0, 0])
    sr = 22050
    y = additive(notes, sr)
    assert y.dtype == np.float32 and np.array_equal(y, additive(notes, sr))
    assert len(y) == int(np.ceil((1.5 + 0.08 + 0.3) * sr)) and np.abs(y).max() <= 1.0
    for start, f0 in ((0.0, 440.0), (1.0, 880.0)):
        seg = y[int((start + 0.05) * sr) : int((start + 0.45) * sr)]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        peak = np.fft.rfftfreq(len(seg), 1 / sr)[np.argmax(spec)]
        assert peak == pytest.approx(f0, abs=3.0)
    assert np.abs(y[int(1.7 * sr) :]).max() < 1e-6  # silent after the release
    assert midi_to_hz(60) == pytest.approx(261.6256, abs=1e-3)
    audio, how = synthesise(notes, sr, soundfont=None)
    assert how == "additive" and np.array_equal(audio, y)
