"""Issue 13, item 9: opening, editing and saving a MIDI file keeps every track, drum note,
tempo change, program, controller and pitch bend; notes not edited keep their exact ticks.

The self-contained tests use a file built with mido (``midi_multitrack.py``); the real-data
test uses a jazz arrangement with a 1019-note drum track and skips without ../shared/data.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from midi_multitrack import N_BASS, N_DRUMS, N_PIANO, TEMPI, make_multitrack, track_events
from musiclens.core import midi as midi_io
from musiclens.core.midi import quantise, read_midi, through_file, write_midi
from musiclens.core.midi_edit import Note, NoteEditor


def view(path):
    """What the model and the editor read: the bundled spec's choice (drums left out)."""
    return read_midi(path, drop_drums=True)


def non_note_events(tracks):
    return [(name, other) for name, other, _ in tracks]


def all_notes(tracks):
    """Every note of the file as (track name, channel, start tick, end tick, pitch, velocity)."""
    return Counter((name,) + n for name, _, notes in tracks for n in notes)


def test_saving_an_unedited_file_keeps_every_event(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    notes = view(src)
    assert len(notes) == N_PIANO + N_BASS  # the model's view: no drums
    out = write_midi(NoteEditor(notes).notes, tmp_path / "saved.mid")
    tpb0, before = track_events(src)
    tpb1, after = track_events(out)
    assert tpb1 == tpb0
    assert [t[0] for t in after] == [t[0] for t in before]  # every track, in order, with its name
    assert all_notes(after) == all_notes(before)  # drums included, tick-exact
    assert non_note_events(after) == non_note_events(before)  # tempo map, programs, CCs, bends, sysex


def test_edit_and_save_keeps_drums_tempo_programs_ccs_bends_and_unedited_notes_exactly(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    notes = view(src)
    ed = NoteEditor(notes)
    ids = [int(i) for i in ed.ids]
    moved, deleted, louder = ids[5], ids[10], ids[20]
    old_moved, old_deleted, old_louder = ed.note(moved), ed.note(deleted), ed.note(louder)
    ed.move([moved], 0.25, 2)
    ed.delete([deleted])
    ed.set_velocity([louder], 127)
    ed.add([Note(90, 3.0, 0.5, 77, 0)])
    out = write_midi(ed.notes, tmp_path / "edited.mid")

    _, before = track_events(src)
    _, after = track_events(out)
    assert [t[0] for t in after] == ["conductor", "Piano", "Bass", "Drums"]
    assert non_note_events(after) == non_note_events(before)  # nothing but notes changed
    b_notes, a_notes = all_notes(before), all_notes(after)
    drums = lambda c: Counter({k: v for k, v in c.items() if k[0] == "Drums"})  # noqa: E731
    assert sum(drums(a_notes).values()) == N_DRUMS and drums(a_notes) == drums(b_notes)
    gone = b_notes - a_notes
    new = a_notes - b_notes
    assert sum(gone.values()) == 3 and sum(new.values()) == 3  # moved, deleted, re-velocitied / moved, louder, added
    assert {k[4] for k in gone} == {old_moved.pitch, old_deleted.pitch, old_louder.pitch}
    assert {k[4] for k in new} == {old_moved.pitch + 2, old_louder.pitch, 90}
    assert {k[5] for k in new if k[4] == old_louder.pitch} == {127}

    # reading the saved file gives the editor's notes back exactly (no tick drift under 3 tempi)
    back = view(out)
    np.testing.assert_array_equal(back.pitch, ed.notes.pitch)
    np.testing.assert_array_equal(back.velocity, ed.notes.velocity)
    unedited = ~np.isin(ed.ids, [moved, louder]) & (ed.notes.pitch != 90)
    np.testing.assert_array_equal(back.start[unedited], ed.notes.start[unedited])
    np.testing.assert_array_equal(back.duration[unedited], ed.notes.duration[unedited])
    np.testing.assert_array_equal(back.program, ed.notes.program)  # piano 0, electric piano 4, bass 33


def test_the_document_tempo_map_is_used_for_ticks(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    notes = view(src)
    assert notes.tempo == pytest.approx(120.0)
    snapped = quantise(notes)  # the notes are on the file's tick grid already (3 tempi): unchanged
    np.testing.assert_array_equal(snapped.start, notes.start)
    np.testing.assert_array_equal(snapped.duration, notes.duration)
    again = through_file(notes)  # what the model reads after saving: identical, under 3 tempi
    assert again.equals(notes)
    np.testing.assert_array_equal(again.start, notes.start)
    np.testing.assert_array_equal(again.duration, notes.duration)


def test_other_notes_are_the_tracks_the_model_does_not_read(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    notes = view(src)
    others = midi_io.other_notes(notes)
    assert len(others) == N_DRUMS and others.is_drum.all()
    assert len(read_midi(src)) == len(notes) + len(others)


def test_model_notes_only_drops_the_other_tracks_notes(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    out = write_midi(view(src), tmp_path / "model_only.mid", keep_other_tracks=False)
    back = read_midi(out)
    assert len(back) == N_PIANO + N_BASS and not back.is_drum.any()
    _, before = track_events(src)
    _, after = track_events(out)
    assert non_note_events(after) == non_note_events(before)  # tempo map etc. still there


def test_recovery_keeps_the_document(tmp_path):
    src = make_multitrack(tmp_path / "multi.mid")
    ed = NoteEditor(view(src), source=src)
    ed.move([int(ed.ids[3])], 0.0, 1)
    back = NoteEditor.from_json(json.loads(json.dumps(ed.to_json())))
    assert back.notes.equals(ed.notes)
    out = write_midi(back.notes, tmp_path / "restored.mid")
    assert read_midi(out).is_drum.sum() == N_DRUMS
    assert [(round(t, 6), round(b, 3)) for t, b in zip(*read_midi(out).document.pm.get_tempo_changes())] == [
        (round(t, 6), round(b, 3)) for t, b in zip(*view(src).document.pm.get_tempo_changes())
    ]
    assert len(TEMPI) == 3


# ---------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_jazz_file_with_drums_round_trips(shared_data, tmp_path):
    src = shared_data / "midi" / "di01096-genre-midi" / "jazz" / "jazz (10).mid"
    if not src.is_file():
        pytest.skip(f"real-data tier: {src} is not present")
    notes = view(src)
    assert len(notes) == 2930 and len(midi_io.other_notes(notes)) == 1019
    ed = NoteEditor(notes, source=src)
    target = int(ed.ids[50])
    ed.move([target], 0.5, 3)
    out = write_midi(ed.notes, tmp_path / "jazz10.mid")
    _, before = track_events(src)
    _, after = track_events(out)
    assert [t[0] for t in after] == [t[0] for t in before]  # all 13 tracks
    assert non_note_events(after) == non_note_events(before)  # 76 pitch bends, CCs, programs, tempo
    gone = all_notes(before) - all_notes(after)
    new = all_notes(after) - all_notes(before)
    assert sum(gone.values()) == 1 and sum(new.values()) == 1  # only the edited note differs
    full = read_midi(out)
    assert full.is_drum.sum() == 1019 and len(full) == 2930 + 1019
