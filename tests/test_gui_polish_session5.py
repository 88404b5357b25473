"""Five things a user meets in the window (session 5), each driven as a user would (offscreen):
a study's MIDI file opens in the piano roll with the study's own MIDI model (and says so);
Studies > Open a report… starts in the folder holding the last report, else the default one;
the data folder is ``…/MusicLens`` (not ``MusicLens/MusicLens``) and the old one's files move
up, the settings following them; with a MIDI file open and no recording, the audio docks say
so instead of staying empty; the window starts without importing matplotlib.pyplot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import GUI_TIMEOUT_MS, tone, wait_idle
from midi_tunes import folk_tune, make_folder

pytestmark = pytest.mark.gui


# ------------------------------------------------------------------ 1. a study's MIDI model
def _tiny_midi_model(out: Path, data: Path, name: str) -> Path:
    """A two-class ('high'/'low') MIDI LSTM reading 16 notes, trained for 2 epochs, named ``name``."""
    from musiclens.core.training.midi import train_on_folder

    for _event in train_on_folder(
        data,
        out=out,
        config={"epochs": 2, "batch_size": 8, "device": "cpu"},
        model_params={"n_notes": 16, "short": "drop", "hidden": 8, "layers": 1},
    ):
        pass
    meta = json.loads((out / "model.json").read_text())
    meta["name"] = name
    (out / "model.json").write_text(json.dumps(meta))
    return out


def _midi_report(folder: Path, work: Path) -> dict[str, Path]:
    """A report folder as midi-rnn writes it: two MIDI models under models/, the held-out
    piece and the flip made with each model (its name says which), in open_in_window."""
    data = make_folder(work / "data", per_class=6, n_notes=24)
    lstm = _tiny_midi_model(folder / "models" / "midi-lstm-fold1", data, "midi-lstm-fold1")
    piece_model = folder / "models" / "midi-piece-fold1"  # a second model: the same net, its own name
    piece_model.mkdir(parents=True)
    for f in lstm.iterdir():
        (piece_model / f.name).write_bytes(f.read_bytes())
    meta = json.loads((piece_model / "model.json").read_text())
    meta["name"] = "midi-piece-fold1"
    (piece_model / "model.json").write_text(json.dumps(meta))
    (folder / "report.md").write_text("# midi-rnn (fake)\n\nTwo models, a piece and its flips.\n")
    midi = [folk_tune(folder / name, n=40) for name in ("piece_x.mid", "flip_midi-lstm_x.mid", "flip_midi-piece_x.mid")]
    entries = {
        "models": ["models/midi-lstm-fold1", "models/midi-piece-fold1"],
        "audio": [],
        "midi": [p.name for p in midi],
    }
    (folder / "numbers.json").write_text(json.dumps({"study": "midi-rnn", "open_in_window": entries}))
    return {"lstm": lstm, "piece": piece_model, "original": midi[0], "flip_lstm": midi[1], "flip_piece": midi[2]}


def test_a_studys_midi_file_opens_with_the_studys_model_and_the_piano_roll_says_which(qtbot, window, isolated):
    from musiclens.core.resources import DEFAULT_MIDI_MODEL

    paths = _midi_report(isolated / "report", isolated)
    window.studies.open_report(isolated / "report")
    panel = window.study_report
    assert sorted(panel.midi_models) == sorted([paths["lstm"], paths["piece"]])
    # every MIDI file is offered with each of the study's models, the model a flip was made with first
    openers = panel.openers["midi"]
    assert len(openers) == 3 * 2
    offered = [(p.name, m.name) for p, m, _action in openers]
    assert offered[2:4] == [("flip_midi-lstm_x.mid", "midi-lstm-fold1"), ("flip_midi-lstm_x.mid", "midi-piece-fold1")]
    assert offered[4:6] == [("flip_midi-piece_x.mid", "midi-piece-fold1"), ("flip_midi-piece_x.mid", "midi-lstm-fold1")]
    assert "in the piano roll" in panel.open_buttons["midi"].text()
    texts = [action.text() for _p, _m, action in openers]
    assert texts[4] == "flip_midi-piece_x.mid with midi-piece-fold1", texts

    # the flip made with midi-piece-fold1 opens in the piano roll, read by that model
    flip, model, action = openers[4]
    roll = window.piano_roll
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        action.trigger()
    assert Path(roll.editor.source) == flip and window.docks["Piano roll"].isVisible()
    assert window.session.midi_model_name == str(model)
    assert roll.labels == ["high", "low"] and list(roll.result.labels) == ["high", "low"]  # not the bundled model's
    assert DEFAULT_MIDI_MODEL not in roll.reads_label.text()
    assert "The model midi-piece-fold1 reads" in roll.reads_label.text(), roll.reads_label.text()
    assert "midi-piece-fold1" in window.statusBar().currentMessage()
    wait_idle(qtbot, window)

    # the models button: a MIDI model is the piano roll's model (not loaded as the audio model);
    # the file shown, not edited, opens again with it
    models = panel.open_actions("models")
    assert [p for p, _a in models] == [paths["lstm"], paths["piece"]]
    assert all("piano roll" in a.text() for _p, a in models)
    loads = []
    window.session.model_changed.connect(loads.append)
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        models[0][1].trigger()
    assert window.session.midi_model_name == str(paths["lstm"]) and Path(roll.editor.source) == flip
    assert "The model midi-lstm-fold1 reads" in roll.reads_label.text()
    wait_idle(qtbot, window)
    assert loads == []  # the audio model stays as it was


def test_a_study_model_that_cannot_load_leaves_the_piano_roll_model_as_it_was(qtbot, window, isolated):
    paths = _midi_report(isolated / "report", isolated)
    for f in paths["piece"].iterdir():  # its weights are gone: loading it fails
        if f.name != "model.json":
            f.unlink()
    window.studies.open_report(isolated / "report")
    [(_p, model, action)] = [
        o for o in window.study_report.openers["midi"] if o[0].name == "piece_x.mid" and o[1] == paths["piece"]
    ]
    roll = window.piano_roll
    action.trigger()
    qtbot.waitUntil(lambda: roll.summary.text().startswith("⚠"), timeout=GUI_TIMEOUT_MS)
    assert window.session.midi_model_name is None  # the bundled model reads the next file
    wait_idle(qtbot, window)


# ------------------------------------------------------------------ 2. Open a report… starts where reports are
def test_open_a_report_starts_beside_the_last_report_else_the_default_folder(qtbot, window, isolated, monkeypatch):
    from musiclens.app import studies_menu
    from musiclens.app.studies_menu import studies_home

    asked = []
    monkeypatch.setattr(
        studies_menu.QFileDialog, "getExistingDirectory", lambda parent, title, start: asked.append(start) or ""
    )
    window.studies.open_action.trigger()  # nothing opened yet: the folder the study dialog proposes
    assert Path(asked[-1]) == studies_home() and studies_home().is_dir()
    window.studies.actions["musicnn-dissection"].trigger()
    assert Path(window.studies.dialog.out.text()).parent == Path(asked[-1])
    window.studies.dialog.close()

    report = isolated / "reports" / "one"
    report.mkdir(parents=True)
    (report / "report.md").write_text("# one\n")
    window.studies.open_report(report)
    window.studies.open_action.trigger()
    assert Path(asked[-1]) == isolated / "reports"  # the folder holding it: it and its siblings
    (report / "report.md").unlink()
    report.rmdir()
    (isolated / "reports").rmdir()  # gone: its nearest folder that is still there
    window.studies.open_action.trigger()
    assert Path(asked[-1]) == isolated


# ------------------------------------------------------------------ 3. one MusicLens data folder
def test_the_data_folder_is_named_once_and_the_old_ones_files_move_up(qtbot, isolated, monkeypatch):
    from PySide6.QtCore import QCoreApplication

    from musiclens.app.panels.piano_roll import recovery_path
    from musiclens.app.panels.training import models_home
    from musiclens.app.paths import data_home, migrate_data_home, old_data_home
    from musiclens.app.studies_menu import studies_home
    from musiclens.app.window import settings, settings_list

    monkeypatch.delenv("MUSICLENS_RECOVERY")
    names = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    try:  # whatever names the application has (the window used to set both to "MusicLens")
        for org, app in (("MusicLens", "MusicLens"), ("", "MusicLens"), ("", "python")):
            QCoreApplication.setOrganizationName(org)
            QCoreApplication.setApplicationName(app)
            home = isolated / "data" / "MusicLens"
            assert data_home() == home and old_data_home() == home / "MusicLens"
            assert studies_home() == home / "studies" and models_home() == home / "models"
            assert recovery_path() == home / "recovery.json"
    finally:
        QCoreApplication.setOrganizationName(names[0])
        QCoreApplication.setApplicationName(names[1])

    # files saved at the old place: moved up (folders both hold are merged), settings follow
    old, new = old_data_home(), data_home()
    (old / "models" / "cnn-a").mkdir(parents=True)
    (old / "models" / "cnn-a" / "model.json").write_text("{}")
    (old / "studies" / "genre-cnn-1").mkdir(parents=True)
    (old / "studies" / "genre-cnn-1" / "piece.mid").write_bytes(b"MThd")
    (old / "recovery.json").write_text('{"old": true}')
    (new / "studies" / "genre-cnn-2").mkdir(parents=True)  # written since, at the new place
    (new / "recovery.json").write_text('{"new": true}')
    st = settings()
    st.setValue("model_folders", [str(old / "models" / "cnn-a"), "/elsewhere/model"])
    st.setValue("recent", [str(old / "studies" / "genre-cnn-1" / "piece.mid")])
    st.setValue("studies/last_report", str(old / "studies" / "genre-cnn-1"))
    st.setValue("device", "cpu")
    st.sync()
    line = migrate_data_home(settings())
    assert (new / "models" / "cnn-a" / "model.json").is_file()
    assert (new / "studies" / "genre-cnn-1" / "piece.mid").is_file() and (new / "studies" / "genre-cnn-2").is_dir()
    assert json.loads((new / "recovery.json").read_text()) == {"new": True}  # the newer one is kept
    assert (old / "recovery.json").is_file() and "recovery.json" in line and str(new) in line
    assert settings_list("model_folders") == [str(new / "models" / "cnn-a"), "/elsewhere/model"]
    assert settings_list("recent") == [str(new / "studies" / "genre-cnn-1" / "piece.mid")]
    assert settings().value("studies/last_report") == str(new / "studies" / "genre-cnn-1")
    assert settings().value("device") == "cpu"
    (old / "recovery.json").unlink()
    assert migrate_data_home(settings()) is None and not old.exists()  # once: the empty old folder is gone


# ------------------------------------------------------------------ 4. audio docks with a MIDI file open
def test_with_a_midi_file_open_the_audio_docks_say_so_until_a_recording_opens(qtbot, window, isolated, monkeypatch):
    from PySide6.QtCore import QPoint

    from musiclens.app import window as window_module
    from musiclens.app.dock_hints import AUDIO_DOCKS
    from musiclens.core.audio import save
    from musiclens.core.models import registry, study

    def layout():
        return {t: (d.isHidden(), d.isFloating(), window.dockWidgetArea(d)) for t, d in window.docks.items()}

    before = layout()
    roll = window.piano_roll
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        window.open_file(folk_tune(isolated / "tune.mid", n=120))
    shown = window.audio_hints.shown()
    assert set(shown) == set(AUDIO_DOCKS)
    for title, text in shown.items():
        assert text.startswith("Open a recording to ") and "a MIDI file is open in the piano roll" in text, text
        hint = window.audio_hints.hints[title]
        host = window.docks[title].widget()
        assert hint.parentWidget() is window.docks[title] and hint.geometry() == host.geometry()  # over it,
        top = window.docks[title].childAt(host.geometry().topRight() + QPoint(-3, 3))  # scroll bars included
        assert top is hint or hint.isAncestorOf(top), (title, top)
    assert not window.piano_roll.visibleRegion().isEmpty()  # the piano roll is in front,
    assert window.audio_hints.hints["Spectrogram"].visibleRegion().isEmpty()  # the spectrogram's tab behind it
    hint = window.audio_hints.hints["Predictions"]
    assert not hint.visibleRegion().isEmpty() and "predictions" in hint.label.text()  # on screen
    assert layout() == before  # no dock moved, closed or opened: the saved layout stays
    wait_idle(qtbot, window)

    # "Open a recording…" on a hint: the file dialog, the recording, the hints go away
    model = study.create("vanilla-cnn", ["calm", "loud"], model_name="tiny-hint-cnn")
    registry.save(model, isolated / "tiny")
    with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS):
        window.open_model_folder(str(isolated / "tiny"))
    wav = isolated / "clip.wav"
    save(wav, np.concatenate([tone((220.0,), seconds=2.0), tone((880.0,), seconds=2.0)]), 22050)
    monkeypatch.setattr(window_module.QFileDialog, "getOpenFileName", lambda *a, **k: (str(wav), ""))
    with qtbot.waitSignal(window.session.analysis_ready, timeout=GUI_TIMEOUT_MS):
        hint.open_button.click()
    assert window.audio_hints.shown() == {}
    wait_idle(qtbot, window)
    # a MIDI file opened now: the audio docks show that recording, no hints
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        window.open_file(isolated / "tune.mid")
    assert window.audio_hints.shown() == {}
    wait_idle(qtbot, window)


# ------------------------------------------------------------------ 5. no matplotlib.pyplot at start
def test_the_window_starts_without_matplotlib_pyplot(tmp_path):
    """A new process builds and shows the window: pyqtgraph's colour-map menu no longer pulls in
    pyplot (the studies' figures need it; the window's start does not)."""
    script = (
        "import sys; from PySide6.QtWidgets import QApplication; app = QApplication([]);"
        "from musiclens.app.window import MainWindow; w = MainWindow(); w.show(); app.processEvents();"
        "print(sorted(m for m in ('matplotlib', 'matplotlib.pyplot', 'captum') if m in sys.modules));"
        "w.worker.shutdown(); w.train_worker.shutdown(); w.collector.stop()"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MUSICLENS_SETTINGS=str(tmp_path / "settings.ini"))
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_spectrograms_colour_map_menu_still_lists_matplotlibs_other_maps(qtbot):
    pytest.importorskip("matplotlib", reason="the menu lists matplotlib's maps only where it is installed")
    from musiclens.app.panels.spectrogram import SpectrogramView

    view = SpectrogramView()
    qtbot.addWidget(view)
    menu = view.histogram.item.gradient.menu
    mpl = next(a.menu() for a in menu.actions() if a.menu() is not None and a.text() == "matplotlib")
    others = next(a.menu() for a in mpl.actions() if a.menu() is not None and a.text() == "Others")
    others.aboutToShow.emit()  # filled when it opens: matplotlib's maps pyqtgraph has no category for
    assert len(others.actions()) > 0
