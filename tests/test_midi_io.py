"""musiclens.core.midi: reading (robust and lenient), note features, windows, writing, piano roll."""

from __future__ import annotations

import struct

import numpy as np
import pretty_midi
import pytest

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.midi import (
    Instrument,
    MidiFileError,
    Notes,
    TooFewNotesError,
    merge_notes,
    note_window,
    notes_from_features,
    piano_roll,
    quantise,
    read_midi,
    replace_window,
    write_midi,
)


def make_midi(path, *, tempo=100.0, resolution=480, drums=True):
    """Piano (program 0) melody, bass (program 33) and optionally a drum track."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=tempo)
    beat = 60.0 / tempo
    piano = pretty_midi.Instrument(program=0, name="piano")
    for i, p in enumerate([60, 62, 64, 65, 67, 69]):
        piano.notes.append(pretty_midi.Note(velocity=90 + i, pitch=p, start=i * beat, end=(i + 0.5) * beat))
    bass = pretty_midi.Instrument(program=33, name="bass")
    for i, p in enumerate([36, 43]):
        bass.notes.append(pretty_midi.Note(velocity=70, pitch=p, start=2 * i * beat, end=(2 * i + 2) * beat))
    pm.instruments += [piano, bass]
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        for i in range(4):
            kit.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=i * beat, end=i * beat + 0.1 * beat))
        pm.instruments.append(kit)
    pm.write(str(path))
    return path


# ------------------------------------------------------------------------ reading
def test_read_features_by_hand(tmp_path):
    path = make_midi(tmp_path / "a.mid", tempo=100.0)
    beat = 0.6
    notes = read_midi(path, drop_drums=True)
    assert len(notes) == 8
    assert notes.tempo == pytest.approx(100.0)
    assert notes.resolution == 480
    # sorted by start, then pitch: t=0: bass 36, piano 60; t=.6: 62; t=1.2: bass 43, 64; ...
    assert notes.pitch.tolist() == [36, 60, 62, 43, 64, 65, 67, 69]
    np.testing.assert_allclose(notes.start, [0, 0, beat, 2 * beat, 2 * beat, 3 * beat, 4 * beat, 5 * beat], atol=1e-9)
    f = notes.features()
    assert f.shape == (8, 3) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, 1], [0, 0, beat, beat, 0, beat, beat, beat], atol=1e-6)  # step
    np.testing.assert_allclose(
        f[:, 2], [2 * beat, 0.5 * beat, 0.5 * beat, 2 * beat, 0.5 * beat, 0.5 * beat, 0.5 * beat, 0.5 * beat], atol=1e-6
    )  # duration
    assert notes.program.tolist() == [33, 0, 0, 33, 0, 0, 0, 0]
    assert notes.velocity.tolist() == [70, 90, 91, 70, 92, 93, 94, 95]


def test_drums_instruments_and_programs(tmp_path):
    path = make_midi(tmp_path / "a.mid")
    full = read_midi(path)
    assert len(full) == 12 and full.is_drum.sum() == 4
    assert len(read_midi(path, drop_drums=True)) == 8
    only_piano = read_midi(path, instruments=[0])
    assert len(only_piano) == 6 and set(only_piano.program.tolist()) == {0} and not only_piano.is_drum.any()
    bass = read_midi(path, programs=[33])
    assert bass.pitch.tolist() == [36, 43]
    with pytest.raises(ParameterError, match="out of range"):
        read_midi(path, instruments=[7])


def test_round_trip_notes_to_file_to_notes_exact(tmp_path):
    # hand-made notes on a 0.125 s grid (tick = 60 / (120 * 480) s), two programs
    notes = Notes(
        pitch=[60, 64, 67, 40, 72],
        start=[0.0, 0.0, 0.5, 0.75, 1.125],
        duration=[0.5, 0.25, 0.375, 1.0, 0.125],
        velocity=[100, 80, 60, 90, 127],
        instrument=[0, 0, 0, 1, 0],
        instruments=[Instrument(0, False, "piano"), Instrument(40, False, "violin")],
        tempo=120.0,
        resolution=480,
    )
    out = write_midi(notes, tmp_path / "rt.mid")
    back = read_midi(out)
    assert back.equals(notes), (back.to_records(), notes.to_records())
    np.testing.assert_array_equal(back.features(), notes.features())
    assert back.tempo == 120.0 and back.resolution == 480
    assert [i.program for i in back.instruments] == [0, 40]
    assert [i.name for i in back.instruments] == ["piano", "violin"]


def test_round_trip_file_notes_file_exact(tmp_path):
    # a file's own notes (with drums, odd tempo) survive write -> read unchanged
    first = read_midi(make_midi(tmp_path / "a.mid", tempo=93.0, resolution=384))
    again = read_midi(write_midi(first, tmp_path / "b.mid"))
    assert again.equals(first)
    assert again.tempo == pytest.approx(93.0) and again.resolution == 384
    assert again.is_drum.sum() == 4


# ------------------------------------------------------------------------ malformed input
def _simple_smf(track_bytes: bytes) -> bytes:
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96)
    return header + b"MTrk" + struct.pack(">I", len(track_bytes)) + track_bytes


NOTE_TRACK = (
    b"\x00\x90\x3c\x64"  # note on C4
    b"\x60\x80\x3c\x40"  # note off after 96 ticks
    b"\x00\x90\x40\x64"
    b"\x60\x80\x40\x40"
    b"\x00\xff\x2f\x00"
)  # end of track


def test_minimal_smf_reads():
    notes = read_midi(_simple_smf(NOTE_TRACK))
    assert notes.pitch.tolist() == [60, 64]
    assert notes.repairs == []
    np.testing.assert_allclose(notes.duration, [0.5, 0.5])  # 96 ticks at 120 bpm, 96 ticks/beat


def test_garbage_bytes_clear_error(tmp_path):
    path = tmp_path / "garbage.mid"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(MidiFileError, match="not a MIDI file"):
        read_midi(path)


def test_truncated_file_clear_error(tmp_path):
    data = _simple_smf(NOTE_TRACK)
    path = tmp_path / "trunc.mid"
    path.write_bytes(data[:-9])  # ends in the middle of the track chunk
    with pytest.raises(MidiFileError, match="truncated") as info:
        read_midi(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, MusicLensError)


def test_data_byte_over_127_is_read_leniently():
    bad = NOTE_TRACK.replace(b"\x00\x90\x40\x64", b"\x00\x90\x40\xe4")  # velocity byte 0xE4 > 127
    # not a status byte either: a strict reader refuses it
    import io

    import mido

    with pytest.raises((OSError, ValueError)):  # mido 1.3: OSError
        mido.MidiFile(file=io.BytesIO(_simple_smf(bad)))
    notes = read_midi(_simple_smf(bad))
    assert notes.pitch.tolist() == [60, 64]
    assert notes.velocity.tolist() == [100, 127]  # clamped
    assert any("clip" in r for r in notes.repairs)


def test_invalid_key_signature_is_repaired():
    bad = b"\x00\xff\x59\x02\x00\xff" + NOTE_TRACK  # key signature with mode 255
    notes = read_midi(_simple_smf(bad))
    assert notes.pitch.tolist() == [60, 64]
    assert any("key signature" in r for r in notes.repairs)


def test_riff_rmid_wrapper(tmp_path):
    smf = _simple_smf(NOTE_TRACK)
    riff = b"RIFF" + struct.pack("<I", 4 + 8 + len(smf)) + b"RMID" + b"data" + struct.pack("<I", len(smf)) + smf
    path = tmp_path / "wrapped.rmi"
    path.write_bytes(riff)
    notes = read_midi(path)
    assert notes.pitch.tolist() == [60, 64]
    assert "unwrapped RIFF-RMID container" in notes.repairs


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not RIFF-RMID")])
def test_other_bad_files(tmp_path, content, match):
    path = tmp_path / "x.mid"
    path.write_bytes(content)
    with pytest.raises(MidiFileError, match=match):
        read_midi(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MidiFileError, match="not found"):
        read_midi(tmp_path / "nope.mid")
    with pytest.raises(MidiFileError, match="folder"):
        read_midi(tmp_path)


# ------------------------------------------------------------------------ windows and rebuilding
def test_note_window_drop_and_pad(tmp_path):
    notes = read_midi(make_midi(tmp_path / "a.mid"), drop_drums=True)  # 8 notes
    feats, mask = note_window(notes, 5, short="drop")
    assert feats.shape == (5, 3) and mask.all()
    np.testing.assert_array_equal(feats, notes.features()[:5])
    with pytest.raises(TooFewNotesError, match="8 notes"):
        note_window(notes, 10, short="drop")
    feats, mask = note_window(notes, 10, short="pad")
    assert mask.tolist() == [True] * 8 + [False] * 2
    assert np.all(feats[8:] == 0)
    with pytest.raises(TooFewNotesError):
        note_window(notes, 10, short="pad", min_notes=9)


def test_notes_from_features_and_replace_window(tmp_path):
    notes = read_midi(make_midi(tmp_path / "a.mid"), drop_drums=True)
    feats = notes.features(np.float64)[:4]
    rebuilt = notes_from_features(feats, notes)
    assert rebuilt.equals(notes.first(4))
    feats[1, 0] = 61.4  # rounds to 61
    feats[2, 1] += 0.25  # third note 0.25 s later -> everything after shifts by 0.25
    edited = notes_from_features(feats, notes)
    assert edited.pitch.tolist()[:3] == [36, 61, 62]
    full = replace_window(notes, edited)
    assert len(full) == len(notes)
    np.testing.assert_allclose(full.start[4:], notes.start[4:] + 0.25, atol=1e-9)
    np.testing.assert_array_equal(full.pitch[4:], notes.pitch[4:])


def test_quantise_snaps_to_ticks():
    notes = Notes(
        pitch=[60, 62],
        start=[0.0, 0.1003],
        duration=[0.0, 0.2],
        velocity=[80, 80],
        instrument=[0, 0],
        tempo=120.0,
        resolution=10,
    )  # tick = 0.05 s
    q = quantise(notes)
    np.testing.assert_allclose(q.start, [0.0, 0.1])
    np.testing.assert_allclose(q.duration, [0.05, 0.2])  # zero duration -> one tick


# ------------------------------------------------------------------------ piano roll
def test_piano_roll_by_hand():
    notes = Notes(pitch=[60, 64], start=[0.0, 0.05], duration=[0.1, 0.02], velocity=[100, 50], instrument=[0, 0])
    roll = piano_roll(notes, fs=100)
    assert roll.shape == (128, 10)
    assert roll[60].tolist() == [100.0] * 10
    assert roll[64].tolist() == [0.0] * 5 + [50.0] * 2 + [0.0] * 3
    assert roll.sum() == 100 * 10 + 50 * 2
    sal = piano_roll(notes, fs=100, values=np.array([-0.5, 2.0]), pitch_range=(60, 72))
    assert sal.shape == (12, 10) and sal[0, 0] == -0.5 and sal[4, 5] == 2.0
    with pytest.raises(ParameterError):
        piano_roll(notes, values=np.ones(3))


def test_merge_notes_keeps_instruments(tmp_path):
    path = make_midi(tmp_path / "a.mid")
    pitched = read_midi(path, drop_drums=True)
    every = read_midi(path)
    drums = every.select(every.is_drum)
    merged = merge_notes(pitched, drums)
    assert merged.equals(every)
    assert len(merged.instruments) == 3 and merged.instruments[2].is_drum


def test_more_than_ten_million_ticks_is_read(tmp_path):
    """pretty_midi refuses > 1e7 ticks; a long piece at 10080 ticks/beat is still valid MIDI."""
    import mido

    mf = mido.MidiFile(ticks_per_beat=10080)
    track = mido.MidiTrack()
    track += [
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_off", note=60, velocity=0, time=10080),
        mido.Message("note_on", note=62, velocity=80, time=1100 * 10080),  # beat 1101
        mido.Message("note_off", note=62, velocity=0, time=5040),
    ]
    mf.tracks.append(track)
    path = tmp_path / "long.mid"
    mf.save(str(path))
    with pytest.raises(ValueError, match="largest tick"):
        pretty_midi.PrettyMIDI(str(path))
    notes = read_midi(path)
    assert notes.pitch.tolist() == [60, 62]
    np.testing.assert_allclose(notes.start, [0.0, 1101 * 0.5])  # 120 bpm: exact on the beat grid
    np.testing.assert_allclose(notes.duration, [0.5, 0.25])
    assert any("resolution" in r for r in notes.repairs) and notes.resolution < 10080


# ---------------------------------------------------------------------------- hostile input (issue 18)
def test_pipes_devices_and_folders_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    for path, what in ((fifo, "named pipe"), ("/dev/zero", "device"), (tmp_path, "folder")):
        with pytest.raises(MidiFileError, match=what):
            read_midi(path)


def test_a_file_with_more_than_ten_million_ticks_is_parsed_once(tmp_path, monkeypatch):
    """A long piece at a fine resolution is coarsened before pretty_midi sees it: mido parses the
    bytes once (it used to parse them again after pretty_midi refused the first parse)."""
    import mido

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0, resolution=10080)
    inst = pretty_midi.Instrument(program=0)
    for i in range(4200):  # 4200 notes of half a beat: 21 million ticks
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=60 + i % 12, start=i * 0.25, end=i * 0.25 + 0.25))
    pm.instruments.append(inst)
    path = tmp_path / "long.mid"
    pm.write(str(path))
    parses = []
    original = mido.MidiFile.__init__

    def counting(self, *args, **kw):
        if kw.get("file") is not None or args:
            parses.append(1)
        original(self, *args, **kw)

    monkeypatch.setattr(mido.MidiFile, "__init__", counting)
    notes = read_midi(path)
    assert len(parses) == 1
    assert len(notes) == 4200 and any("reduced the resolution from 10080" in r for r in notes.repairs)
    np.testing.assert_allclose(notes.start[:3], [0.0, 0.25, 0.5], atol=1e-6)
    assert notes.start[-1] == pytest.approx(4199 * 0.25, abs=1e-3)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:14] + b"MTrX" + d[18:], "missing MTrk header"),
        (lambda d: d.replace(b"\x00\x90\x40\x64", b"\x00\x40\x64\x00", 1)[:-4] + b"\x00", "truncated|status byte"),
        (lambda d: d[:22] + b"\x00\xff\x01\x8f\xff\xff\x7f" + d[22:], "claims more bytes than a MIDI event"),
    ],
)
def test_unreadable_midi_is_explained_in_a_readers_terms(tmp_path, damage, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(damage(_simple_smf(NOTE_TRACK)))
    with pytest.raises(MidiFileError, match=reason) as err:
        read_midi(path)
    text = str(err.value)
    assert "Error:" not in text and "OSError" not in text and "ValueError" not in text, text
