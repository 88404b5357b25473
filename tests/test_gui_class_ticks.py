"""Class names on the Predictions dock's axes (session 6): on a short plot pyqtgraph drops
the crowded tick levels instead of drawing the names over each other; on a tall one every
class is named. The drawn labels are read from the axis's own draw specs (what it paints)."""

from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtGui import QImage, QPainter

from musiclens.app.panels.common import thinned_ticks
from musiclens.app.panels.predictions import PredictionsPanel
from musiclens.core.analyses import Analysis

LABELS = [f"class {i:02d}" for i in range(10)]


def test_thinned_ticks_name_every_class_once_best_first():
    ticks = [(float(9 - i), name) for i, name in enumerate(LABELS)]  # best first, best at the top
    levels = thinned_ticks(ticks)
    assert levels[0][0] == ticks[0]  # the best class is always labelled
    assert sorted(t for level in levels for t in level) == sorted(ticks)
    assert [len(level) for level in levels] == [3, 2, 5]


def _painted(axis) -> list[tuple[float, float, str]]:
    """(top, bottom, text) of each tick label the axis paints at its current size."""
    image = QImage(400, 1200, QImage.Format_ARGB32)
    painter = QPainter(image)
    try:
        _, _, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(rect.top(), rect.bottom(), text) for rect, _, text in texts]


def _drawn(axis) -> list[str]:
    return [text for _, _, text in _painted(axis)]


def _overlapping(axis) -> int:
    """How many pairs of painted labels overlap vertically."""
    spans = sorted((top, bottom) for top, bottom, _ in _painted(axis))
    return sum(1 for (_, b0), (t1, _) in itertools.pairwise(spans) if t1 < b0 - 0.5)


def test_short_plots_thin_the_class_names_and_tall_ones_name_all(qtbot):
    panel = PredictionsPanel()
    qtbot.addWidget(panel)
    probabilities = np.linspace(0.9, 0.05, len(LABELS))[None].repeat(4, axis=0)
    panel.set_analysis(Analysis(LABELS, probabilities, np.arange(4) * 3.0, 3.0))
    bars, taggram = panel.bars_plot.getAxis("left"), panel.taggram_plot.getAxis("left")

    panel.resize(480, 260)  # each plot ~80 px high: 10 names do not fit
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.wait(100)  # the layout settles, the axes take their size
    for axis in (bars, taggram):
        shown = _drawn(axis)
        assert LABELS[0] in shown and 0 < len(shown) < len(LABELS), shown
        assert _overlapping(axis) == 0

    panel.resize(480, 1100)  # each plot ~480 px high: every class named
    qtbot.wait(100)
    for axis in (bars, taggram):
        assert sorted(_drawn(axis)) == LABELS
        assert _overlapping(axis) == 0
