"""The piano roll's jobs show progress and the time left (issue 20, goal 6): opening the
first MIDI file (loading the model, reading, checking the window), synthesising a piece (per
notes rendered) and classifying it (window, prediction, saliency) report at least two
fractions between 0 and 1 before their result, with "ETA"; opening a MIDI file reads it once
(the training-distance job uses the notes already read)."""

from __future__ import annotations

import html
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pretty_midi
import pytest

from conftest import GUI_TIMEOUT_MS, wait_idle
from tests.test_gui_progress import Watch

N_NOTES = 3000  # a real-sized piece: three pitched tracks and a drum track


def real_sized_piece(path, n: int = N_NOTES):
    """A 4-track piece of ``n`` notes (piano, bass, violin, drums), random pitches and
    lengths (1/8, 1/4, 1/2 s) at 120 bpm."""
    rng = np.random.default_rng(0)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for program, drum in ((0, False), (33, False), (40, False), (0, True)):
        inst = pretty_midi.Instrument(program=program, is_drum=drum)
        t = 0.0
        for _ in range(n // 4):
            d = float(rng.choice([0.125, 0.25, 0.5]))
            pitch = int(rng.integers(36, 50) if drum else rng.integers(40, 84))
            inst.notes.append(pretty_midi.Note(velocity=int(rng.integers(50, 110)), pitch=pitch, start=t, end=t + d))
            t += d
        pm.instruments.append(inst)
    pm.write(str(path))
    return path


def steps_of(gen):
    """(the fractions a generator of Progress yields, its result)."""
    fractions = []
    try:
        while True:
            fractions.append(next(gen).fraction)
    except StopIteration as stop:
        return fractions, stop.value


def test_the_synthesiser_reports_the_notes_rendered():
    from musiclens.core.midi import Notes
    from musiclens.core.synth import PROGRESS_STEPS, additive, additive_steps

    rng = np.random.default_rng(1)
    n = 400
    start = np.sort(rng.uniform(0, 20, n))
    notes = Notes(
        pitch=rng.integers(40, 90, n).astype(np.int16),
        start=start,
        duration=rng.uniform(0.05, 0.5, n),
        velocity=rng.integers(40, 120, n).astype(np.int16),
        instrument=np.zeros(n, np.int16),
    )
    fractions, audio = steps_of(additive_steps(notes, 8000))
    assert len(fractions) == PROGRESS_STEPS and fractions == sorted(fractions)
    assert fractions[0] == 0 and 0 < fractions[-1] < 1
    assert np.array_equal(audio, additive(notes, 8000))  # the plain function: the same samples


def test_training_distance_of_the_notes_read_equals_the_files(tmp_path):
    from musiclens.core.analyses.midi import midi_model_steps, open_midi, training_distance

    path = real_sized_piece(tmp_path / "piece.mid", 400)
    fractions, model = steps_of(midi_model_steps())
    assert fractions == [0.0]  # loading is a step of its own; the model loaded is not loaded again
    assert steps_of(midi_model_steps(None, model)) == ([], model)
    assert steps_of(midi_model_steps(str(model.source), model)) == ([], model)
    opened = open_midi(model, path)
    assert len(opened.notes) == 300  # the model reads no drums; the distance reads every track
    by_path, by_notes = training_distance(model, path), training_distance(model, opened.notes)
    assert by_path is not None and by_notes == by_path


@pytest.mark.gui
def test_synthesise_and_classify_show_progress_and_time_left(qtbot, window, isolated):
    from musiclens.app.session import MIDI_CLASSIFY_JOB

    path = real_sized_piece(isolated / "piece.mid")
    session = window.session
    assert session.midi_model is None  # the first MIDI job loads the model: a step of its own
    opened = Watch(window, session.open_midi(path, lambda result: None))
    opened.check(qtbot)
    assert len(opened.result.notes) == N_NOTES * 3 // 4  # no drums
    with qtbot.waitSignal(window.ready, timeout=GUI_TIMEOUT_MS):
        window.open_file(path)
    wait_idle(qtbot, window)
    notes = window.piano_roll.editor.notes

    classified = Watch(window, session.midi_classify(notes, None, 1, lambda result: None))
    assert classified.job.name == MIDI_CLASSIFY_JOB
    classified.check(qtbot)
    assert classified.result.notes_used == 100 and classified.result.revision == 1

    synth = Watch(window, session.midi_audio(notes, lambda result: None))
    synth.check(qtbot)
    audio, rate, how = synth.result
    assert len(audio) / rate > 0.9 * float(notes.end.max())  # every track of the whole piece
    if how == "additive":  # per notes rendered (FluidSynth renders in one call)
        assert len(synth.fractions) >= 20
    wait_idle(qtbot, window)
    assert window.job_queue.text() == ""


@pytest.mark.gui
def test_opening_a_midi_file_reads_it_once(qtbot, window, isolated, monkeypatch):
    import musiclens.core.midi as midi

    path = real_sized_piece(isolated / "piece.mid", 400)
    reads = []
    real = midi.load_document

    def spy(path_or_bytes, **kw):
        reads.append(path_or_bytes)
        return real(path_or_bytes, **kw)

    monkeypatch.setattr(midi, "load_document", spy)
    with qtbot.waitSignal(window.ready, timeout=GUI_TIMEOUT_MS):
        window.open_file(path)
    roll = window.piano_roll
    qtbot.waitUntil(lambda: roll.scope.text() != "", timeout=GUI_TIMEOUT_MS)  # the training distance came
    wait_idle(qtbot, window)
    assert roll.scope_result is not None  # the bundled model keeps its training pieces' statistics
    assert reads == [path]
    # the scope in a word beside the roll's controls, its whole text seen at 1280x800 (the
    # sentence in the side texts may scroll out of sight there), the sentence as its tooltip
    window.resize(1280, 800)
    badge = roll.scope_badge
    assert badge.text() in ("⚠ outside its training pieces", "like its training pieces")
    assert badge.toolTip() == f"<p>{html.escape(roll.scope.text())}</p>"

    def badge_seen_whole() -> bool:
        seen = badge.visibleRegion().boundingRect()
        return (
            seen.width() >= badge.fontMetrics().horizontalAdvance(badge.text())
            and seen.height() >= badge.fontMetrics().height()
        )

    qtbot.waitUntil(badge_seen_whole)
