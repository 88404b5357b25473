"""Kernels: per-layer kernel norms (sorted bar chart, dead kernels in red) and the
distributions of batch-norm parameters."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from musiclens.app.panels.common import ask_save_path, save_table


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
        layout.addWidget(self.norms, 1)
        layout.addLayout(bn_row)
        layout.addWidget(self.bn_plot, 1)

    def clear(self) -> None:
        self.stats = None
        self.conv.clear()
        self.bn.clear()
        self.norms.clear()
        self.bn_plot.clear()
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
        self.summary.setText(f"{stats['model']}: {t['kernels']} kernels in {len(stats['conv'])} conv "
                             f"layers, {t['dead']} dead (norm ≤ {stats['dead_rel_tol']:g} × the layer's largest)")
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
        brushes = [pg.mkBrush("#e5484d") if dead[k] else pg.mkBrush("#4c9be8") for k in order]
        self.norms.addItem(pg.BarGraphItem(x=x, height=norms[order], width=0.8, brushes=brushes))
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
                self.bn_plot.plot(edges, counts, stepMode="center", fillLevel=0,
                                  brush=pg.mkBrush(colour + "80"), pen=colour, name=key)

    def export(self) -> None:
        if not self.stats:
            return
        path = ask_save_path(self, "Export kernel norms", "kernels.csv", "CSV (*.csv)")
        if path:
            rows = [[c["layer"], k, norm, k in set(c["dead_indices"])]
                    for c in self.stats["conv"] for k, norm in enumerate(c["frobenius"])]
            save_table(path, ["layer", "kernel", "frobenius_norm", "dead"], rows)
