"""A self-contained multi-track MIDI file for the "keep every track" tests (issue 13, item 9).

Built with mido so every tick is known: 480 ticks per beat; a conductor track with two
tempo changes, a time signature and a key signature; a piano track (channel 0) with 120
notes, a mid-track program change (piano -> electric piano), volume and sustain
controllers; a bass track (channel 1, program 33) with pitch bends and a modulation CC; a
drum track on channel 10 (MIDI channel 9) with 80 hits; and a sysex + marker that
pretty_midi does not model.
"""

from __future__ import annotations

from collections import defaultdict

import mido

TPB = 480
N_PIANO = 120
N_BASS = 30
N_DRUMS = 80
TEMPI = [(0, 500000), (TPB * 16, 400000), (TPB * 40, 600000)]  # (tick, microseconds per beat)


def _track(events, name=None):
    """events: (absolute tick, order, Message) -> a MidiTrack with delta times."""
    track = mido.MidiTrack()
    if name:
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=TPB))
    return track


def _notes(events, channel, notes):
    for start, end, pitch, vel in notes:
        events.append((start, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
        events.append((end, 1, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))


def piano_notes():
    """(start tick, end tick, pitch, velocity) of the piano track, a melody of eighths."""
    melody = [60, 64, 67, 72, 71, 67, 64, 62, 65, 69, 72, 74, 72, 69, 65, 60]
    half = TPB // 2
    return [
        (i * half, i * half + half - (i % 3) * 7, melody[i % len(melody)] + (i // 32), 60 + (i * 7) % 60)
        for i in range(N_PIANO)
    ]


def bass_notes():
    return [(i * 2 * TPB, i * 2 * TPB + TPB + 101, 36 + (i * 5) % 12, 80) for i in range(N_BASS)]


def drum_notes():
    return [(i * TPB // 2 + 3, i * TPB // 2 + 60, (36, 42, 38, 42)[i % 4], 100 - i % 20) for i in range(N_DRUMS)]


def make_multitrack(path):
    mf = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor = [(t, 0, mido.MetaMessage("set_tempo", tempo=v)) for t, v in TEMPI]
    conductor += [
        (0, 0, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
        (0, 0, mido.MetaMessage("key_signature", key="G")),
        (TPB * 8, 0, mido.MetaMessage("marker", text="B section")),
        (0, 0, mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01])),
    ]
    mf.tracks.append(_track(conductor, "conductor"))

    piano = [
        (0, 0, mido.Message("program_change", channel=0, program=0)),
        (0, 0, mido.Message("control_change", channel=0, control=7, value=100)),
        (TPB * 30, 0, mido.Message("program_change", channel=0, program=4)),  # electric piano from here
        (TPB * 4, 0, mido.Message("control_change", channel=0, control=64, value=127)),
        (TPB * 6, 0, mido.Message("control_change", channel=0, control=64, value=0)),
    ]
    _notes(piano, 0, piano_notes())
    mf.tracks.append(_track(piano, "Piano"))

    bass = [
        (0, 0, mido.Message("program_change", channel=1, program=33)),
        (TPB, 0, mido.Message("control_change", channel=1, control=1, value=40)),
    ]
    bass += [
        (TPB * 2 * i + 240, 0, mido.Message("pitchwheel", channel=1, pitch=(i * 997) % 8000 - 4000))
        for i in range(N_BASS)
    ]
    _notes(bass, 1, bass_notes())
    mf.tracks.append(_track(bass, "Bass"))

    drums = [
        (0, 0, mido.Message("program_change", channel=9, program=0)),
        (0, 0, mido.Message("control_change", channel=9, control=7, value=90)),
    ]
    _notes(drums, 9, drum_notes())
    mf.tracks.append(_track(drums, "Drums"))
    mf.save(str(path))
    return path


# ---------------------------------------------------------------------------- reading back
def track_events(path):
    """Per track: (name, [(absolute tick, kind, data…)] for every non-note event, notes)."""
    mf = mido.MidiFile(str(path))
    out = []
    for track in mf.tracks:
        now = 0
        name = ""
        other, notes = [], []
        open_notes = defaultdict(list)
        for msg in track:
            now += msg.time
            if msg.type == "track_name":
                name = msg.name
            if msg.type == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)].append((now, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                for start, vel in open_notes.pop((msg.channel, msg.note), []):
                    notes.append((msg.channel, start, now, msg.note, vel))
            elif msg.type != "end_of_track":
                d = msg.dict()
                d.pop("time", None)
                other.append(
                    (now, tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items())))
                )
        out.append((name, sorted(other), sorted(notes)))
    return mf.ticks_per_beat, out
