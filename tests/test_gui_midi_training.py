"""The window trains a MIDI model (Training panel, a folder of ``<label>/*.mid``, live curves)
and the trained model opens in the piano roll with per-note saliency over the whole piece."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt

from tests.midi_tunes import folk_tune, make_folder

pytestmark = pytest.mark.gui


def test_window_trains_a_midi_model_and_shows_its_saliency_on_a_whole_piece(qtbot, window, isolated):
    root = make_folder(isolated / "midi", per_class=6, n_notes=40)
    panel = window.training
    panel.folder.setText(str(root))
    panel.arch.setCurrentText("midi-piece")
    panel.epochs.setValue(3)
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=300_000)
    assert "Saved to" in panel.report.text(), panel.report.text()
    drawn = [len(v) for v in panel.history.values()]
    assert max(drawn) >= 2  # the curves grew epoch by epoch (the last epoch ends with "done")
    assert window.session.midi_model_name and "midi-piece" in window.session.midi_model_name
    piece = folk_tune(isolated / "long.mid", n=300, drums=True)
    with qtbot.waitSignal(window.ready, timeout=120_000):
        window.open_file(piece)
    roll = window.piano_roll
    r = roll.result
    assert r is not None and list(r.labels) == ["high", "low"]
    n = len(roll.editor.notes)
    assert n > 300 and r.notes_used == n  # every note of every track was read
    per_note = np.abs(np.asarray(r.saliency)).sum(axis=1)
    assert per_note.shape == (n,) and (per_note[100:] > 0).mean() > 0.9  # saliency past note 100
    # its scope: the trained model keeps its training pieces' statistics; a piece unlike them says so
    qtbot.waitUntil(lambda: roll.scope.text() != "", timeout=60_000)
    assert roll.scope_result is not None and roll.scope_result["outside"]  # drums, unlike the training tunes
    assert "Outside" in roll.scope.text()
    qtbot.mouseClick(roll.train_own, Qt.LeftButton)
    assert window.docks["Training"].isVisible()
