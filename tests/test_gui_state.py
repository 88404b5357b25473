"""State that must not go stale in the window: the model picker, CAM text and similarity maps
after a model or recording change, the time label while MIDI plays, the spectrogram's
selection, the crash-recovery banner, Open Recent after a failure, and failures the user
must see (a dialog as well as the status bar)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, Qt

from conftest import GUI_TIMEOUT_MS, main_window, start_and_wait, wait_idle
from midi_tunes import folk_tune
from musiclens.app.main import demo_path
from musiclens.app.window import settings_list


@pytest.fixture
def no_audio_device(monkeypatch):
    try:
        import sounddevice as sd
    except OSError:  # no PortAudio on this machine: there is no device anyway
        return

    def no_device(*_a, **_k):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "OutputStream", no_device)


def picker_models(win) -> list:
    return [win.model_picker.itemData(i) for i in range(win.model_picker.count())]


def similarity_shown(win) -> bool:
    return win.similarity.result is not None or win.similarity.maps_grid.count() > 0


def test_switching_models_keeps_one_picker_entry_each_and_clears_old_results(qtbot, window):
    start_and_wait(qtbot, window)
    listed = picker_models(window)
    assert len(listed) == len(set(listed)) == 4, listed  # the 4 bundled audio models, once each
    assert window.model_picker.currentText() == "MSD_musicnn"
    assert window.attribution.result is not None and window.attribution.note.text()  # the first Grad-CAM
    with qtbot.waitSignal(
        window.worker.busy_changed, timeout=GUI_TIMEOUT_MS, check_params_cb=lambda busy, _name: not busy
    ):
        window.similarity.requested.emit(str(demo_path()))
    assert similarity_shown(window)

    for name in ("MTT_musicnn", "MSD_musicnn", "MTT_musicnn"):
        with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS):
            window.model_picker.activated.emit(window.model_picker.findText(name))
        # what the previous model computed is gone, not shown under the new model's name
        assert window.attribution.result is None and window.attribution.note.text() == ""
        assert not similarity_shown(window)
        assert picker_models(window) == listed, picker_models(window)
        assert window.model_picker.currentText() == name
        wait_idle(qtbot, window)


def test_opening_another_recording_clears_cam_and_similarity(qtbot, window, isolated):
    import soundfile as sf

    start_and_wait(qtbot, window)
    with qtbot.waitSignal(
        window.worker.busy_changed, timeout=GUI_TIMEOUT_MS, check_params_cb=lambda busy, _name: not busy
    ):
        window.similarity.requested.emit(str(demo_path()))
    assert window.attribution.note.text() and similarity_shown(window)
    other = isolated / "tone.wav"
    t = np.arange(16000 * 4) / 16000
    sf.write(other, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    with qtbot.waitSignal(window.session.recording_changed, timeout=GUI_TIMEOUT_MS):
        window.open_file(other)
    assert window.attribution.result is None and window.attribution.note.text() == ""
    assert not similarity_shown(window)
    wait_idle(qtbot, window)


def test_time_label_shows_the_midi_that_plays(qtbot, window, isolated, no_audio_device):
    start_and_wait(qtbot, window)  # a 30 s recording is open
    roll = window.piano_roll
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        window.open_file(folk_tune(isolated / "tune.mid", n=24))
    playhead = window.spectrogram.playhead.value()
    with qtbot.waitSignal(window.player.error, timeout=GUI_TIMEOUT_MS):  # no device: loaded, not playing
        roll.play_button.click()
    assert window.player.label == roll.play_label
    midi_s = window.player.duration_s
    assert 4 < midi_s < 20
    window.player.seek(2.5)
    assert window.time_label.text().strip() == f"00:02.5 / 00:{midi_s:04.1f}"
    assert window.spectrogram.playhead.value() == playhead  # the recording's playhead stays put
    # the recording again: its own time base
    window.seek(12.0)
    assert window.time_label.text().strip() == "00:12.0 / 00:30.0"
    assert window.spectrogram.playhead.value() == pytest.approx(12.0)


def test_shift_click_selection_can_be_cleared(qtbot):
    from musiclens.app.panels.spectrogram import SpectrogramView

    view = SpectrogramView()
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_spectrogram(np.random.default_rng(0).random((96, 500)).astype(np.float32), 10.0, np.linspace(0, 8000, 96))
    qtbot.wait(50)
    seeks = []
    view.seek_requested.connect(lambda t: (seeks.append(t), view.set_playhead(t)))

    def click(t: float, modifiers=Qt.NoModifier) -> None:
        scene = view.plot.getViewBox().mapViewToScene(QPointF(t, 48))
        qtbot.mouseClick(view.plot.viewport(), Qt.LeftButton, modifiers, view.plot.mapFromScene(scene))
        qtbot.wait(20)

    click(2.0)
    assert seeks and seeks[-1] == pytest.approx(2.0, abs=0.1)
    click(5.0, Qt.ShiftModifier)
    a, b = view.selected_range()
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(5.0, abs=0.1)
    qtbot.keyClick(view.plot.viewport(), Qt.Key_Escape)
    assert view.selected_range() is None
    click(6.0, Qt.ShiftModifier)
    assert view.selected_range() is not None
    n = len(seeks)
    click(3.0)  # a plain click moves the playhead and drops the selection
    assert view.selected_range() is None and len(seeks) == n + 1


def test_recovery_banner_is_offered_on_a_raised_piano_roll(qtbot, isolated):
    from musiclens.core.midi import read_midi
    from musiclens.core.midi_edit import NoteEditor, write_recovery

    path = folk_tune(isolated / "tune.mid", n=24)
    editor = NoteEditor(read_midi(path), source=path)
    editor.move([int(editor.ids[0])], 0.25, 1)
    write_recovery(editor, isolated / "recovery.json")
    with main_window(qtbot) as win:
        roll = win.piano_roll
        qtbot.waitUntil(lambda: not roll.restore_bar.isHidden(), timeout=5000)
        qtbot.wait(50)
        dock = win.docks["Piano roll"]
        assert not dock.visibleRegion().isEmpty(), "the banner is in a background tab"
        assert roll.restore_bar.isVisible() and not roll.restore_bar.visibleRegion().isEmpty()
        roll.discard_button.click()  # nothing to restore: the spectrogram comes back to the front
        qtbot.wait(50)
        assert not win.docks["Spectrogram"].visibleRegion().isEmpty()


def test_failed_opens_stay_out_of_recent_and_show_a_dialog(qtbot, window, isolated):
    start_and_wait(qtbot, window)
    assert settings_list("recent") == [str(demo_path())]
    bad = isolated / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage")
    with qtbot.waitSignal(window.session.error, timeout=GUI_TIMEOUT_MS):
        window.open_file(bad)
    assert "broken.wav" in window.statusBar().currentMessage()
    assert window.error_dialog is not None and window.error_dialog.isVisible()
    assert "broken.wav" in window.error_dialog.text()
    assert str(bad) not in settings_list("recent")
    assert str(bad) not in [a.text() for a in window.recent_menu.actions()]
    window.error_dialog.close()

    bad_midi = isolated / "broken.mid"
    bad_midi.write_text("hello")
    with qtbot.waitSignal(window.session.error, timeout=GUI_TIMEOUT_MS):
        window.open_file(bad_midi)
    assert window.error_dialog.isVisible() and "broken.mid" in window.error_dialog.text()
    assert settings_list("recent") == [str(demo_path())]
    window.error_dialog.close()

    good = folk_tune(isolated / "tune.mid", n=24)
    with qtbot.waitSignal(window.piano_roll.classified, timeout=GUI_TIMEOUT_MS):
        window.open_file(good)
    assert settings_list("recent") == [str(good), str(demo_path())]

    # a model folder that does not load: a dialog, the picker stays on the model in use
    listed = picker_models(window)
    (isolated / "not-a-model").mkdir()
    with qtbot.waitSignal(window.session.error, timeout=GUI_TIMEOUT_MS):
        window.open_model_folder(str(isolated / "not-a-model"))
    assert window.error_dialog.isVisible() and "not-a-model" in window.error_dialog.text()
    assert picker_models(window) == listed and window.model_picker.currentText() == "MSD_musicnn"
    assert str(isolated / "not-a-model") not in settings_list("model_folders")
