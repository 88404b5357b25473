"""The piano-roll dock, driven as a user would (pytest-qt, offscreen, the bundled MIDI model)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ALSA_SYSTEM_CONF = Path("/usr/share/alsa/alsa.conf")
# as in test_gui: PortAudio reads the ALSA configuration once, when sounddevice is imported
if ALSA_SYSTEM_CONF.exists() and "ALSA_CONFIG_PATH" not in os.environ:
    os.environ["ALSA_CONFIG_PATH"] = f"{ALSA_SYSTEM_CONF}:{HERE / 'alsa-capture.conf'}"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from conftest import open_window  # noqa: E402
from midi_tunes import folk_tune  # noqa: E402
from musiclens.app.window import MainWindow  # noqa: E402

TIMEOUT_MS = 60_000


@pytest.fixture
def recovery(isolated):
    """The crash-recovery file the window writes (``isolated`` points it into tmp_path)."""
    return isolated / "recovery.json"


def open_and_classify(qtbot, win, path):
    roll = win.piano_roll
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        win.open_file(path)
    return roll


def drag(qtbot, widget, a: QPoint, b: QPoint, steps: int = 8, modifiers=Qt.NoModifier) -> None:
    """Press at ``a``, move to ``b`` in steps, release (real QMouseEvents to the viewport)."""

    def send(kind, pos, buttons):
        ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), Qt.LeftButton, buttons, modifiers)
        QApplication.sendEvent(widget, ev)

    send(QEvent.MouseButtonPress, a, Qt.LeftButton)
    for i in range(1, steps + 1):
        p = a + (b - a) * (i / steps)
        send(QEvent.MouseMove, p, Qt.LeftButton)
        qtbot.wait(5)
    send(QEvent.MouseButtonRelease, b, Qt.NoButton)


def to_widget(roll, t: float, pitch: float) -> QPoint:
    """Data (seconds, pitch) -> the plot viewport's pixel position."""
    scene = roll.view.mapViewToScene(QPointF(t, pitch))
    return roll.plot.mapFromScene(scene)


def test_mouse_move_reclassifies_and_undo_restores_exactly(qtbot, window, tmp_path):
    roll = open_and_classify(qtbot, window, folk_tune(tmp_path / "tune.mid", n=120))
    assert roll.result.notes_used == 100  # a full 100-note window (of 120 notes)
    assert window.docks["Piano roll"].isVisible()
    assert roll.labels == ["bach", "folk", "palestrina"]
    before_notes = roll.editor.notes
    before_p = roll.result.probabilities.copy()
    assert roll.labels[int(np.argmax(before_p))] == "folk"
    sal = roll.note_saliency()
    assert np.isfinite(sal[:100]).all() and np.isnan(sal[100:]).all() and sal.max(initial=0, where=~np.isnan(sal)) > 0

    row = int(np.nanargmax(sal))  # the note the model is most sensitive to
    t, pitch = float(before_notes.start[row] + 0.4 * before_notes.duration[row]), int(before_notes.pitch[row])
    note_id = int(roll.editor.ids[row])
    viewport = roll.plot.viewport()
    a = to_widget(roll, t, pitch)
    b = to_widget(roll, t + 1.0, pitch + 7)  # one second later, a fifth up
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        drag(qtbot, viewport, a, b)
    moved = roll.editor.note(note_id)
    assert moved.pitch == pitch + 7
    assert moved.start == pytest.approx(float(before_notes.start[row]) + 1.0, abs=roll.grid() / 2 + 1e-9)
    assert moved.start / roll.grid() == pytest.approx(round(moved.start / roll.grid()), abs=1e-6)  # snapped
    after_p = roll.result.probabilities.copy()
    assert np.abs(after_p - before_p).max() > 1e-3  # the model saw the edit
    assert roll.last_latency_s is not None and roll.last_latency_s < 1.0
    print(
        f"re-classification {roll.last_latency_s * 1000:.0f} ms after the mouse edit "
        f"(model + saliency {roll.result.elapsed_s * 1000:.0f} ms)"
    )

    viewport.setFocus()
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        qtbot.keyClick(viewport, Qt.Key_Z, Qt.ControlModifier)
    assert roll.editor.notes.equals(before_notes)
    np.testing.assert_array_equal(roll.editor.notes.start, before_notes.start)
    np.testing.assert_array_equal(roll.result.probabilities, before_p)  # exactly
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        qtbot.keyClick(viewport, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    np.testing.assert_array_equal(roll.result.probabilities, after_p)

    # drag a note's right edge: it gets longer by the dragged (snapped) time
    row = 10
    n = roll.editor.notes
    rid, end, p = int(roll.editor.ids[row]), float(n.end[row]), int(n.pitch[row])
    roll.view.setRange(xRange=(0, 8), padding=0)  # zoom in: the edge is the last 6 pixels
    qtbot.wait(20)
    grab_x = end - 2 * roll.items.pixelWidth()
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        drag(qtbot, viewport, to_widget(roll, grab_x, p), to_widget(roll, grab_x + 0.5, p))
    resized = roll.editor.note(rid)
    assert resized.end == pytest.approx(end + 0.5, abs=roll.grid() / 2 + 1e-9)
    assert resized.start == float(n.start[row]) and resized.pitch == p
    assert roll.editor.undo_stack[-1].name == "resize"


def test_dropping_a_midi_file_opens_the_piano_roll(qtbot, window, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    path = folk_tune(tmp_path / "dropped.mid", n=20)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(window.piano_roll.classified, timeout=TIMEOUT_MS):
        window.dropEvent(event)
    assert window.piano_roll.editor.source == str(path) and len(window.piano_roll.editor) == 20
    assert window.session.recording is None  # it did not go to the audio path


def test_keyboard_editing_save_and_exports(qtbot, window, tmp_path):
    roll = open_and_classify(qtbot, window, folk_tune(tmp_path / "tune.mid", n=20))
    ed = roll.editor
    first = [int(i) for i in ed.ids[:4]]
    viewport = roll.plot.viewport()
    n = ed.notes  # Shift+drag on empty space selects the notes in the rectangle
    t_end = float(n.start[3]) + 0.01
    with qtbot.assertNotEmitted(roll.edited):
        (x0, _), (y0, y1) = roll.view.viewRange()
        drag(
            qtbot,
            viewport,
            to_widget(roll, max(x0, 0.0) + 0.01, y1 - 0.3),
            to_widget(roll, t_end, y0 + 0.3),
            modifiers=Qt.ShiftModifier,
        )
    assert roll.selection == set(first)
    viewport.setFocus()
    qtbot.keyClick(viewport, Qt.Key_C, Qt.ControlModifier)
    roll.cursor_time = 12.0
    qtbot.keyClick(viewport, Qt.Key_V, Qt.ControlModifier)
    assert len(ed) == 24
    pasted = sorted(roll.selection)
    assert len(pasted) == 4 and not set(pasted) & set(first)
    assert min(ed.note(i).start for i in pasted) == pytest.approx(12.0)
    qtbot.keyClick(viewport, Qt.Key_Up)  # transpose the pasted notes
    assert sorted(ed.note(i).pitch for i in pasted) == sorted(ed.note(i).pitch + 1 for i in first)
    roll.velocity.setValue(40)
    roll.velocity.editingFinished.emit()
    assert {ed.note(i).velocity for i in pasted} == {40}
    qtbot.keyClick(viewport, Qt.Key_Delete)
    assert len(ed) == 20
    for _ in range(4):  # delete, velocity, transpose, paste
        qtbot.keyClick(viewport, Qt.Key_Z, Qt.ControlModifier)
    assert len(ed) == 20 and not ed.undo_stack and ed.notes.equals(roll.editor.notes)
    qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS)

    added = roll.add_note(3.0, 90)
    assert ed.note(added[0]).pitch == 90 and len(ed) == 21
    qtbot.waitUntil(lambda: roll.result.revision == ed.revision, timeout=TIMEOUT_MS)
    out = roll.save_midi(tmp_path / "edited.mid")
    from musiclens.core.midi import read_midi

    back = read_midi(out)
    assert len(back) == 21 and 90 in back.pitch.tolist()
    assert not roll.editor.modified
    png, csv = roll.export_png(tmp_path / "roll.png"), roll.export_csv(tmp_path / "notes.csv")
    assert png.stat().st_size > 1000
    lines = csv.read_text().splitlines()
    assert len(lines) == 22 and lines[0].startswith("index,name,pitch")
    assert lines[1].split(",")[1] == "G4"  # the tune starts on G4 (67)


def test_flip_proposal_accepted_classifies_as_target(qtbot, window, tmp_path):
    roll = open_and_classify(qtbot, window, folk_tune(tmp_path / "tune.mid"))
    original = roll.editor.notes
    with qtbot.waitSignal(roll.flip_ready, timeout=120_000) as blocker:
        roll.flip_target.setCurrentText("bach")
        roll.flip_button.click()
    flip = blocker.args[0]
    assert flip.result.flipped and roll.proposal_bar.isVisible()
    current, proposed, diff = roll.items.proposal
    assert len(diff["moved"]) + len(diff["added"]) + len(diff["removed"]) > 0
    assert roll.editor.notes.equals(original)  # only proposed so far
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        roll.accept_button.click()
    assert not roll.proposal_bar.isVisible()
    p = roll.probabilities
    assert max(p, key=p.get) == "bach", p
    assert p["bach"] == pytest.approx(float(flip.result.probabilities_after[0]), abs=1e-4)
    assert roll.editor.undo_stack[-1].name == "flip to bach"
    with qtbot.waitSignal(roll.classified, timeout=TIMEOUT_MS):
        roll.undo()  # one undo takes the whole flip back
    assert roll.editor.notes.equals(original)
    assert max(roll.probabilities, key=roll.probabilities.get) == "folk"


def test_recovery_file_restores_edits_after_the_window_is_gone(qtbot, recovery, tmp_path):
    win = MainWindow()  # not registered with qtbot: this test destroys it
    win.show()
    roll = open_and_classify(qtbot, win, folk_tune(tmp_path / "tune.mid"))
    ids = [int(i) for i in roll.editor.ids[5:8]]
    roll.apply(lambda ed: ed.move(ids, 0.5, -2))
    roll.apply(lambda ed: ed.delete([int(roll.editor.ids[0])]))
    edited = roll.editor.notes
    assert recovery.is_file()
    win.close()  # no save
    win.deleteLater()
    qtbot.wait(50)

    again = open_window(qtbot)
    roll2 = again.piano_roll
    qtbot.waitUntil(roll2.restore_bar.isVisible, timeout=5000)
    assert "2 edit(s) to tune.mid" in roll2.restore_label.text()
    with qtbot.waitSignal(roll2.classified, timeout=TIMEOUT_MS):
        roll2.restore_button.click()
    assert roll2.editor.notes.equals(edited)
    assert roll2.editor.modified and len(roll2.editor.undo_stack) == 2
    roll2.undo()
    roll2.undo()
    assert len(roll2.editor) == len(edited) + 1
    from musiclens.core.midi import read_midi

    assert roll2.editor.notes.equals(read_midi(tmp_path / "tune.mid"))
    again.close()

    shooting = open_window(qtbot)  # ``musiclens gui --screenshot`` never offers it
    shooting.screenshot_mode = True
    qtbot.wait(100)
    assert recovery.is_file() and not shooting.piano_roll.restore_bar.isVisible()
    shooting.close()


def test_malformed_midi_gives_an_error_and_the_app_lives_on(qtbot, window, tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00\x90\x3c")
    with qtbot.waitSignal(window.session.error, timeout=TIMEOUT_MS) as blocker:
        window.open_file(bad)
    assert "broken.mid" in blocker.args[0] and "MIDI" in blocker.args[0]
    assert window.last_error == blocker.args[0]
    assert window.piano_roll.summary.text().startswith("⚠")
    not_midi = tmp_path / "text.mid"
    not_midi.write_text("hello")
    with qtbot.waitSignal(window.session.error, timeout=TIMEOUT_MS) as blocker:
        window.open_file(not_midi)
    assert "not a MIDI file" in blocker.args[0]
    roll = open_and_classify(qtbot, window, folk_tune(tmp_path / "tune.mid"))  # still works
    assert len(roll.editor) == 60


def test_play_midi_through_the_player_with_a_moving_playhead(qtbot, window, tmp_path, monkeypatch):
    if not ALSA_SYSTEM_CONF.exists():
        pytest.skip("needs ALSA (libasound2, installed with libportaudio2) to capture playback")
    capture = tmp_path / "played.raw"
    monkeypatch.setenv("AUDIO_CAPTURE_FILE", str(capture))
    monkeypatch.setenv("MUSICLENS_SOUNDFONT", str(tmp_path / "none.sf2"))  # the built-in synth
    roll = open_and_classify(qtbot, window, folk_tune(tmp_path / "tune.mid", n=16))
    with qtbot.waitSignal(window.player.state_changed, timeout=TIMEOUT_MS, check_params_cb=lambda playing: playing):
        roll.play_button.click()
    assert window.player.label == roll.play_label and "additive" in roll.play_label
    qtbot.waitUntil(lambda: roll.playhead.value() > 0.3, timeout=10_000)  # the playhead moves
    qtbot.waitUntil(lambda: not window.player.playing, timeout=20_000)
    window.player.close()

    from musiclens.app.player import to_device_rate
    from musiclens.core.synth import additive

    expected = to_device_rate(additive(roll.editor.notes, 22050), 22050)
    played = np.fromfile(capture, dtype="<i2").astype(np.float64) / 32768
    assert np.abs(played).max() > 1e-3, "nothing was played"
    from scipy.signal import correlate

    lag = int(np.argmax(correlate(played, expected, mode="valid", method="fft")))
    assert np.abs(played[lag : lag + len(expected)] - expected).max() <= 2 / 32768


def test_multitrack_file_keeps_its_drums_and_shows_which_notes_the_model_reads(qtbot, window, tmp_path):
    """Issue 13, item 9: drums are kept (drawn, saved) and the roll says which notes the model reads."""
    from collections import Counter

    from midi_multitrack import N_BASS, N_DRUMS, N_PIANO, make_multitrack, track_events

    src = make_multitrack(tmp_path / "multi.mid")
    roll = open_and_classify(qtbot, window, src)
    total = N_PIANO + N_BASS
    assert len(roll.editor) == total and len(roll.others) == N_DRUMS
    text = roll.reads_label.text()
    assert f"notes 1–100 of {total}" in text and f"{N_DRUMS} drum" in text, text
    reads = roll.model_reads()
    assert reads.sum() == 100 and reads[:100].all() and not reads[100:].any()
    alpha = [c.alpha() for c in roll.items.colors]
    assert min(alpha[:100]) == 255 and max(alpha[100:]) < 255  # notes the model does not read are dimmed

    row = 3
    note_id = int(roll.editor.ids[row])
    roll.apply(lambda ed: ed.move([note_id], 0.0, 1))
    out = roll.save_midi(tmp_path / "saved.mid")
    _, before = track_events(src)
    _, after = track_events(out)
    assert [(n, o) for n, o, _ in after] == [(n, o) for n, o, _ in before]  # tempo map, CCs, bends, programs
    b = Counter((n,) + x for n, _, ns in before for x in ns)
    a = Counter((n,) + x for n, _, ns in after for x in ns)
    assert sum((b - a).values()) == 1 and sum(1 for k in a.elements() if k[0] == "Drums") == N_DRUMS
    window.resize(1400, 800)
    qtbot.wait(50)
    window.piano_roll.grab().save(str(tmp_path / "multitrack-roll.png"))
