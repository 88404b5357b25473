"""The CAM-and-saliency panel's "show" box agrees with the caption: a method whose map is a
magnitude (Guided backprop, Gradient, SmoothGrad…) reads "magnitude", not "signed"."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_a_magnitude_map_reads_magnitude_in_the_box_and_the_caption(qtbot):
    from musiclens.app.panels.attribution import AttributionPanel
    from musiclens.core.analyses import Attribution
    from musiclens.core.interpret import methods

    panel = AttributionPanel()
    qtbot.addWidget(panel)
    listed = [panel.method.itemData(i) for i in range(panel.method.count())]
    magnitudes = [name for name in listed if not methods.get(name).shown_signed]
    assert "guided-backprop" in magnitudes
    for name in listed:
        panel.method.setCurrentIndex(listed.index(name))
        method = methods.get(name)
        assert panel.show_as.currentData() == (method.shown_as if method.shown_signed else "abs"), name
    values = np.abs(np.random.default_rng(0).standard_normal((8, 20))).astype(np.float32)
    panel.set_result(Attribution("guided-backprop", "rock", None, values, 0.0, 3.0, signed=False))
    _, signed, caption, _ = panel.display(panel.result)
    assert not signed and "magnitude" in caption
    assert not panel.show_as.isEnabled() and "magnitude" in panel.show_as.currentText()
