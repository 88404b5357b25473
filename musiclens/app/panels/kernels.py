"""Kernels: per-layer kernel norms (sorted bar chart, dead kernels in red) and the
distributions of batch-norm parameters.

A dead kernel's norm is (close to) zero, so its bar would have no height: it is drawn as a
red bar of a small fixed height with a red ✕ above it, and counted in "dead: k of n"."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from musiclens.app.panels.common import ask_save_path, save_table

DEAD_COLOUR = "#e5484d"
ALIVE_COLOUR = "#4c9be8"
DEAD_BAR = 0.04  # height of a dead kernel's bar, as a fraction of the layer's largest norm


class KernelsPanel(QWidget):
    requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stats: dict | None = None
        self.refresh_button = QPushButton("Compute")
        self.refresh_button.clicked.connect(self.requested.emit)
        self.conv = QComboBox()
        self.conv.currentIndexChanged.connect(lambda _: self._draw_conv())
        self.bn = QComboBox()
        self.bn.currentIndexChanged.connect(lambda _: self._draw_bn())
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        self.summary = QLabel("kernel statistics of the current model")
        self.summary.setWordWrap(True)
        self.dead_label = QLabel("")
        self.dead_label.setStyleSheet(f"color: {DEAD_COLOUR}")
        self.dead_label.setToolTip("dead kernels (norm ≈ 0) are drawn as short red bars marked ✕")
        self.norms = pg.PlotWidget()
        self.norms.setMenuEnabled(False)
        self.norms.setLabel("left", "Frobenius norm")
        self.norms.setLabel("bottom", "kernels, sorted")
        self.bn_plot = pg.PlotWidget()
        self.bn_plot.setMenuEnabled(False)
        self.bn_plot.addLegend()
        self.bn_plot.setLabel("bottom", "value")
        self.bn_plot.setLabel("left", "count")
        top = QHBoxLayout()
        top.addWidget(self.refresh_button)
        top.addWidget(QLabel("conv layer"))
        top.addWidget(self.conv, 1)
        top.addWidget(self.export_button)
        bn_row = QHBoxLayout()
        bn_row.addWidget(QLabel("batch norm"))
        bn_row.addWidget(self.bn, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.dead_label)
        layout.addWidget(self.norms, 1)
        layout.addLayout(bn_row)
        layout.addWidget(self.bn_plot, 1)

    def clear(self) -> None:
        self.stats = None
        self.conv.clear()
        self.bn.clear()
        self.norms.clear()
        self.bn_plot.clear()
        self.dead_label.setText("")
        self.summary.setText("press Compute for the kernel statistics of this model")

    def set_stats(self, stats: dict) -> None:
        self.stats = stats
        self.conv.blockSignals(True)
        self.bn.blockSignals(True)
        self.conv.clear()
        self.bn.clear()
        self.conv.addItems([c["layer"] for c in stats["conv"]])
        self.bn.addItems([b["layer"] for b in stats["batchnorm"]])
        self.conv.blockSignals(False)
        self.bn.blockSignals(False)
        if stats["conv"]:
            self.conv.setCurrentIndex(len(stats["conv"]) - 1)
        t = stats["totals"]
        self.summary.setText(
            f"{stats['model']}: {t['kernels']} kernels in {len(stats['conv'])} conv "
            f"layers, {t['dead']} dead (norm ≤ {stats['dead_rel_tol']:g} × the layer's largest)"
        )
        self._draw_conv()
        self._draw_bn()

    def _draw_conv(self) -> None:
        self.norms.clear()
        if not self.stats or self.conv.currentIndex() < 0:
            return
        c = self.stats["conv"][self.conv.currentIndex()]
        norms = np.asarray(c["frobenius"])
        order = np.argsort(-norms, kind="stable")
        dead = np.zeros(len(norms), bool)
        dead[c["dead_indices"]] = True
        x = np.arange(len(norms))
        dead_sorted = dead[order]
        top = float(norms.max()) if norms.size and norms.max() > 0 else 1.0
        # a dead kernel's norm is ~0: give its bar a visible height (the true norm is in the CSV)
        heights = np.where(dead_sorted, np.maximum(norms[order], DEAD_BAR * top), norms[order])
        brushes = [pg.mkBrush(DEAD_COLOUR if d else ALIVE_COLOUR) for d in dead_sorted]
        pens = [pg.mkPen(DEAD_COLOUR if d else ALIVE_COLOUR) for d in dead_sorted]
        self.norms.addItem(pg.BarGraphItem(x=x, height=heights, width=0.8, brushes=brushes, pens=pens))
        if dead_sorted.any():
            self.norms.addItem(
                pg.ScatterPlotItem(
                    x=x[dead_sorted],
                    y=heights[dead_sorted] + DEAD_BAR * top,
                    symbol="x",
                    size=9,
                    pen=pg.mkPen(DEAD_COLOUR, width=2),
                    brush=pg.mkBrush(DEAD_COLOUR),
                )
            )
        self.dead_label.setText(
            f"dead: {int(dead.sum())} of {len(norms)} kernels (red ✕, drawn at "
            f"{100 * DEAD_BAR:g} % of the largest norm)"
            if dead.any()
            else f"dead: 0 of {len(norms)} kernels"
        )
        self.norms.setTitle(f"{c['layer']}: kernel {tuple(c['kernel_shape'])}, {c['dead']} dead of {len(norms)}")

    def _draw_bn(self) -> None:
        self.bn_plot.clear()
        if not self.stats or self.bn.currentIndex() < 0:
            return
        b = self.stats["batchnorm"][self.bn.currentIndex()]
        for key, colour in (("gamma", "#4c9be8"), ("beta", "#f5a623")):
            values = np.asarray(b[key] or [], dtype=float)
            if values.size:
                counts, edges = np.histogram(values, bins=min(40, max(5, values.size // 4)))
                self.bn_plot.plot(
                    edges, counts, stepMode="center", fillLevel=0, brush=pg.mkBrush(colour + "80"), pen=colour, name=key
                )

    def export(self) -> None:
        if not self.stats:
            return
        path = ask_save_path(self, "Export kernel norms", "kernels.csv", "CSV (*.csv)")
        if path:
            rows = [
                [c["layer"], k, norm, k in set(c["dead_indices"])]
                for c in self.stats["conv"]
                for k, norm in enumerate(c["frobenius"])
            ]
            save_table(path, ["layer", "kernel", "frobenius_norm", "dead"], rows)
