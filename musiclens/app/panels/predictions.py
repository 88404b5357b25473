"""Predictions: the top classes of the whole file (bars) and the taggram over time."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from musiclens.app.panels.common import ask_save_path, save_table, small_tick_font, thinned_ticks
from musiclens.app.session import Analysis


class PredictionsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.analysis: Analysis | None = None
        self.count = QSpinBox()
        self.count.setRange(3, 50)
        self.count.setValue(10)
        self.count.valueChanged.connect(lambda _: self.refresh())
        self.summary = QLabel("no predictions yet")
        self.summary.setWordWrap(True)

        self.bars_plot = pg.PlotWidget()
        self.bars_plot.setMenuEnabled(False)
        self.bars_plot.setMouseEnabled(x=False, y=False)
        self.bars_plot.setLabel("bottom", "mean probability")
        self.bars_plot.setXRange(0, 1)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush="#4c9be8")
        self.bars_plot.addItem(self.bars)
        small_tick_font(self.bars_plot)

        self.taggram_plot = pg.PlotWidget()
        self.taggram_plot.setMenuEnabled(False)
        self.taggram_plot.setLabel("bottom", "time", units="s")
        self.taggram = pg.ImageItem(axisOrder="row-major")
        self.taggram.setColorMap(pg.colormap.get("viridis"))
        self.taggram_plot.addItem(self.taggram)
        small_tick_font(self.taggram_plot)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#35e0ff", width=1))
        self.taggram_plot.addItem(self.playhead)

        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        top = QHBoxLayout()
        top.addWidget(QLabel("classes shown"))
        top.addWidget(self.count)
        top.addStretch(1)
        top.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.bars_plot, 1)
        layout.addWidget(QLabel("taggram (classes over time)"))
        layout.addWidget(self.taggram_plot, 1)

    def sizeHint(self):  # noqa: N802 (Qt naming)
        from PySide6.QtCore import QSize

        return QSize(480, 600)

    def set_analysis(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.refresh()

    def clear(self) -> None:
        self.analysis = None
        self.bars.setOpts(x0=[], y=[], width=[])
        self.taggram.clear()
        self.summary.setText("analysing…")

    def set_playhead(self, seconds: float) -> None:
        self.playhead.setValue(seconds)

    def top_rows(self) -> list[int]:
        """Label indices of the shown classes, best first."""
        a = self.analysis
        mean = a.probabilities.mean(axis=0)
        return list(np.argsort(-mean, kind="stable")[: self.count.value()])

    def refresh(self) -> None:
        a = self.analysis
        if a is None or not len(a.probabilities):
            return
        rows = self.top_rows()
        mean = a.probabilities.mean(axis=0)
        n = len(rows)
        ys = np.arange(n)[::-1]  # best at the top
        self.bars.setOpts(x0=np.zeros(n), y=ys, width=mean[rows], height=0.7)
        self.bars_plot.getAxis("left").setTicks(thinned_ticks([(float(y), a.labels[r]) for y, r in zip(ys, rows)]))
        self.bars_plot.setYRange(-0.5, n - 0.5, padding=0.02)
        self.bars_plot.setXRange(0, max(1.0, float(mean[rows].max())), padding=0)
        image = a.probabilities[:, rows[::-1]].T  # (n, P), best row on top
        duration = len(a.patch_starts_s) * a.patch_seconds
        self.taggram.setImage(image, levels=(0.0, 1.0))
        self.taggram.setRect(QRectF(0, 0, duration, n))
        self.taggram_plot.getAxis("left").setTicks(
            thinned_ticks([(n - i - 0.5, a.labels[r]) for i, r in enumerate(rows)])
        )
        self.taggram_plot.setRange(xRange=(0, duration), yRange=(0, n), padding=0)
        kind = "tags" if len(a.labels) > 12 else "classes"
        best = ", ".join(f"{a.labels[r]} ({mean[r]:.2f})" for r in rows[:5])
        self.summary.setText(f"top {kind} over {len(a.probabilities)} patches: {best}")

    def export(self) -> None:
        """The taggram as CSV: one row per patch (start time, then every class)."""
        a = self.analysis
        if a is None:
            return
        path = ask_save_path(self, "Export predictions", "predictions.csv", "CSV (*.csv)")
        if path:
            rows = [[float(t)] + [float(p) for p in probs] for t, probs in zip(a.patch_starts_s, a.probabilities)]
            save_table(path, ["patch_start_s"] + list(a.labels), rows)
