"""The window's Studies menu (issue 21), driven as a user would (offscreen Qt): the real
musicnn-dissection study in quick mode from the menu, its report (table and figures) in the
"Study report" dock; a report whose ``open_in_window`` lists a model folder, recordings and a
MIDI file, each opened by its button; a study that fails or is cancelled says so in one line
and the window carries on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import GUI_TIMEOUT_MS, main_window, tone, wait_idle
from musiclens.app.window import settings, settings_list

pytestmark = pytest.mark.gui

STUDY = "musicnn-dissection"


def run_from_menu(qtbot, window, out: Path, *, data: str = "", quick: bool = True):
    """Studies > ``STUDY``…: fill the dialog and press Run; returns the dialog."""
    action = window.studies.actions[STUDY]
    assert action.isEnabled()
    action.trigger()
    dialog = window.studies.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.data.setText(data)
    dialog.out.setText(str(out))
    dialog.quick.setChecked(quick)
    assert dialog.run_button.isEnabled(), dialog.message.text()
    dialog.run_button.click()
    return dialog


def test_menu_lists_every_study_and_greys_those_not_built(qtbot, isolated, monkeypatch):
    from musiclens.core.analyses.studies import STUDIES, Study

    monkeypatch.setitem(STUDIES, "not-yet", Study("not-yet", "a study still to come", "nothing"))
    with main_window(qtbot) as win:
        menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Studies")
        assert menu.toolTipsVisible()
        assert set(win.studies.actions) == set(STUDIES)
        for name, study in STUDIES.items():
            action = win.studies.actions[name]
            assert action in menu.actions()
            assert action.isEnabled() == study.built, name
            assert ("Not built yet" in action.toolTip()) != study.built, action.toolTip()
        assert "a study still to come" in win.studies.actions["not-yet"].toolTip()


def test_musicnn_dissection_runs_from_the_menu_and_shows_its_report(qtbot, window, isolated):
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QImageReader, QTextDocument

    from musiclens.app.studies_menu import studies_home
    from musiclens.core.analyses.studies import STUDIES

    window.studies.actions[STUDY].trigger()
    dialog = window.studies.dialog
    assert dialog.data.text() == ""  # nothing used before: empty (the study's default clip)
    assert STUDIES[STUDY].data in dialog.means.text()
    default_out = Path(dialog.out.text())
    assert default_out.parent == studies_home() and default_out.name.startswith(f"{STUDY}-")
    assert str(studies_home()).startswith(str(isolated))  # the user's data folder (isolated here)
    dialog.close()

    out = isolated / "report"
    run_from_menu(qtbot, window, out)
    panel = window.study_report
    # the GUI thread goes on: the job is listed in the status bar and the dock says it runs
    assert window.job_queue.isVisible() and f"study {STUDY}" in window.job_queue.text()
    assert panel.note.isVisible() and "Running" in panel.note.text()
    assert window.docks["Study report"].isVisible()
    qtbot.waitUntil(lambda: panel.folder == out, timeout=GUI_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not window.train_worker.pending(), timeout=GUI_TIMEOUT_MS)

    numbers = json.loads((out / "numbers.json").read_text())
    text = panel.browser.document().toPlainText()
    assert "front-end filters" in text and "the study's claim" in text  # the claims table
    mtt = numbers["models"]["MTT_musicnn"]
    assert f"MTT_musicnn: {mtt['front_end_total']} (" in text
    assert "x".join(map(str, mtt["W_shape_per_patch"])) in text.replace(" ", "")
    # every figure of the report is in the document, loaded from the report folder, and fits the view
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures and sorted(panel.browser.image_names()) == figures
    panel.browser.grab()  # lays out and paints: the images load
    doc = panel.browser.document()
    for name in figures:
        image = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(name))
        assert image is not None and not image.isNull(), name
        assert image.size() == QImageReader(str(out / name)).size()
    # scaled down to the dock's width when wider (a list item's image is indented)
    qtbot.wait(200)  # the refit after a scroll bar came
    room = panel.browser.viewport().width()
    widths = panel.browser.image_widths()
    for name in figures:
        natural = QImageReader(str(out / name)).size().width()
        assert 0 < widths[name] <= min(natural, room - 40), (name, widths[name], natural, room)
    assert any(widths[name] < QImageReader(str(out / name)).size().width() for name in figures)
    assert panel.browser.horizontalScrollBar().maximum() == 0  # nothing to scroll sideways
    # no open_in_window in this study: no open buttons, the folder button only
    assert not any(b.isVisible() for b in panel.open_buttons.values())
    assert panel.folder_button.isEnabled() and not panel.note.isVisible()
    assert settings().value(f"studies/{STUDY}/quick") == "true"


def _fake_report(folder: Path) -> dict[str, Path]:
    """A finished report folder: report.md with a table and a figure, and numbers.json whose
    open_in_window lists a tiny model folder, a WAV (and a missing one) and a MIDI file."""
    import pretty_midi
    from PySide6.QtGui import QColor, QImage

    from musiclens.core.audio import save
    from musiclens.core.models import registry, study

    folder.mkdir(parents=True)
    (folder / "report.md").write_text(
        "# A fake study\n\n| quantity | the study's claim | ours |\n| --- | --- | --- |\n"
        "| accuracy | 68.2 % | 71.0 % |\n\n![curve](curve.png)\n"
    )
    figure = QImage(300, 120, QImage.Format_RGB32)
    figure.fill(QColor("steelblue"))
    assert figure.save(str(folder / "curve.png"))
    model = study.create("vanilla-cnn", ["calm", "loud"], model_name="tiny-study-cnn")
    registry.save(model, folder / "models" / "tiny")
    (folder / "audio").mkdir()
    save(
        folder / "audio" / "clip.wav", np.concatenate([tone((220.0,), seconds=2.0), tone((880.0,), seconds=2.0)]), 22050
    )
    piece = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(90, 60 + (i * 5) % 24, 0.25 * i, 0.25 * i + 0.2) for i in range(40)]
    piece.instruments.append(piano)
    piece.write(str(folder / "piece.mid"))
    entries = {"models": ["models/tiny"], "audio": ["audio/clip.wav", "audio/missing.wav"], "midi": ["piece.mid"]}
    (folder / "numbers.json").write_text(json.dumps({"study": "fake", "open_in_window": entries}))
    return {"model": folder / "models" / "tiny", "wav": folder / "audio" / "clip.wav", "midi": folder / "piece.mid"}


def test_a_reports_buttons_open_its_model_recording_midi_and_folder(qtbot, window, isolated, monkeypatch):
    from musiclens.app import studies_menu

    paths = _fake_report(isolated / "fake")
    opened_urls = []
    monkeypatch.setattr(studies_menu.QDesktopServices, "openUrl", lambda url: opened_urls.append(url))
    window.studies.open_report(isolated / "fake")
    panel = window.study_report
    assert window.docks["Study report"].isVisible() and panel.folder == isolated / "fake"
    assert "68.2 %" in panel.browser.document().toPlainText() and panel.browser.image_names() == ["curve.png"]

    # the model: one entry, one button; it joins the picker, selected, and is remembered
    [(model_path, model_button)] = panel.open_actions("models")
    assert model_path == paths["model"] and model_button.isVisible() and "tiny" in model_button.text()
    with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS) as loaded:
        model_button.click()
    wait_idle(qtbot, window)
    assert loaded.args[0].labels == ["calm", "loud"] and Path(loaded.args[0].source) == paths["model"]
    assert window.model_picker.currentData() == str(paths["model"])
    assert settings_list("model_folders") == [str(paths["model"])]

    # two recordings: a menu, the missing one greyed; the WAV opens in the spectrogram
    audio = panel.open_actions("audio")
    assert [p.name for p, _ in audio] == ["clip.wav", "missing.wav"]
    assert audio[0][1].isEnabled() and not audio[1][1].isEnabled() and "missing" in audio[1][1].toolTip()
    with qtbot.waitSignal(window.session.analysis_ready, timeout=GUI_TIMEOUT_MS):
        audio[0][1].trigger()
    assert window.session.recording.path == paths["wav"]
    assert window.session.summary.name == "tiny-study-cnn"  # analysed with the study's model
    wait_idle(qtbot, window)

    # the MIDI file opens in the piano roll
    [(midi_path, midi_button)] = panel.open_actions("midi")
    with qtbot.waitSignal(window.piano_roll.opened, timeout=GUI_TIMEOUT_MS) as shown:
        midi_button.click()
    assert Path(shown.args[0]) == paths["midi"] == midi_path
    assert window.docks["Piano roll"].isVisible()
    wait_idle(qtbot, window)

    panel.folder_button.click()
    assert [u.toLocalFile() for u in opened_urls] == [str(isolated / "fake")]


def test_a_study_that_fails_says_why_in_one_line_and_the_window_goes_on(qtbot, window, isolated):
    empty = isolated / "no-audio"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    with qtbot.waitSignal(window.session.error, timeout=GUI_TIMEOUT_MS) as failed:
        run_from_menu(qtbot, window, isolated / "never", data=str(empty))
    message = failed.args[0]
    assert message.startswith(f"study {STUDY}: ") and "holds no audio files" in message and "\n" not in message
    assert str(empty) in message
    panel = window.study_report
    assert panel.note.text() == f"⚠ {message}" and not panel.cancel_button.isVisible()
    assert message in window.statusBar().currentMessage() and window.isVisible()
    assert not (isolated / "never" / "report.md").exists()
    assert settings().value(f"studies/{STUDY}/data") == str(empty)  # offered again next time

    # the dialog refuses data that does not exist, before anything runs
    window.studies.actions[STUDY].trigger()
    dialog = window.studies.dialog
    assert dialog.data.text() == str(empty)  # the last used, prefilled
    dialog.data.setText(str(isolated / "nowhere"))
    assert not dialog.run_button.isEnabled() and "does not exist" in dialog.message.text()
    dialog.close()
    # and a report folder without report.md is refused in one line
    window.studies.open_report(empty)
    assert "holds no report.md" in window.last_error


def test_cancelling_a_study_closes_it_without_a_report(qtbot, window, isolated):
    out = isolated / "cancelled"
    run_from_menu(qtbot, window, out)
    job = window.studies.job
    qtbot.waitUntil(lambda: job.last_progress is not None, timeout=GUI_TIMEOUT_MS)  # it runs
    with qtbot.waitSignal(job.cancelled, timeout=GUI_TIMEOUT_MS):
        window.study_report.cancel_button.click()
    assert "cancelled" in window.study_report.note.text()
    qtbot.waitUntil(lambda: not window.train_worker.pending(), timeout=GUI_TIMEOUT_MS)
    assert not (out / "report.md").exists() and window.studies.job is None
    assert not window.study_report.cancel_button.isVisible()


def test_a_table_cell_with_line_breaks_keeps_the_rest_of_the_table(qtbot, window, isolated):
    """Reports break lines inside table cells with "<br>" (GitHub renders it); Qt's Markdown
    reader used to drop every later cell of the table there."""
    folder = isolated / "br"
    folder.mkdir()
    rows = [f"| row {i} | claim {i} | source | **model A** ours {i}a<br>**model B** ours {i}b |" for i in range(4)]
    text = "\n".join(["# r", "", "| quantity | claim | source | ours |", "| --- | --- | --- | --- |", *rows, ""])
    (folder / "report.md").write_text(text)
    (folder / "numbers.json").write_text("{}")
    window.studies.open_report(folder)
    shown = window.study_report.browser.document().toPlainText()
    for i in range(4):
        assert f"claim {i}" in shown and f"ours {i}a" in shown and f"ours {i}b" in shown, shown
