"""The piano roll draws note presence signed (a diverging map: red for the class, blue against,
grey no effect, with the legend saying so) and the plain gradient as a magnitude (plasma), as
the method table's ``shown_as`` says."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.midi_tunes import folk_tune

pytestmark = pytest.mark.gui


def shown(qtbot, tmp_path, method: str, values: np.ndarray):
    """A piano roll with a 40-note tune and a classification whose per-note saliency is ``values``."""
    from musiclens.app.panels.piano_roll import PianoRollPanel
    from musiclens.core.analyses.results import MidiClassified
    from musiclens.core.midi import read_midi
    from musiclens.core.midi_edit import NoteEditor

    notes = read_midi(folk_tune(tmp_path / "t.mid", n=40))
    roll = PianoRollPanel()
    qtbot.addWidget(roll)
    roll.set_editor(NoteEditor(notes), ["high", "low"], window=len(notes))
    sal = np.repeat(values[:, None] / 7, 7, axis=1)  # a whole-piece map: spread over 7 features
    r = MidiClassified(roll.editor.revision, ["high", "low"], np.array([0.7, 0.3]), sal, len(notes), 0, 0.01, method)
    roll._classified(r)
    return roll


def test_note_presence_is_drawn_signed_with_a_diverging_legend(qtbot, tmp_path):
    values = np.linspace(-1.0, 1.0, 40)
    values[20] = 0.0
    roll = shown(qtbot, tmp_path, "note-presence", values)
    assert roll.saliency_signed()
    np.testing.assert_allclose(roll.note_saliency(), values, atol=1e-12)  # the signed sum, not |.|
    levels = roll.note_levels(roll.note_saliency())
    assert levels[0] == pytest.approx(0.0) and levels[-1] == pytest.approx(1.0) and levels[20] == pytest.approx(0.5)
    c = roll.items.colors
    for_class, against = c[39], c[0]
    assert for_class.red() > for_class.blue() + 80 and against.blue() > against.red() + 80
    assert abs(c[20].red() - c[20].blue()) < 40  # no effect: grey-ish
    text = roll.summary.text()
    assert "signed" in text and "red = the note speaks for high" in text and "blue = against" in text


def test_the_gradient_is_drawn_as_a_magnitude(qtbot, tmp_path):
    values = np.linspace(-1.0, 1.0, 40)
    roll = shown(qtbot, tmp_path, "gradient", values)
    assert not roll.saliency_signed()
    np.testing.assert_allclose(roll.note_saliency(), np.abs(values), atol=1e-12)
    assert roll.note_levels(roll.note_saliency())[0] == pytest.approx(1.0)  # -1 is as bright as +1
    assert "|Gradient (saliency)| for high" in roll.summary.text()
