"""Similarity: compare the open recording with another stimulus (e.g. a mix and one of its
stems) layer by layer — Pearson, cosine, normalised MSE and linear CKA with its permutation
baseline — and see both stimuli's feature maps at every layer, input at the top."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter,
    QVBoxLayout, QWidget,
)

from musiclens.app.panels.common import ask_save_path, save_table, to_pixmap
from musiclens.app.session import ClassSimilarity, Similarity

COLOURS = {"pearson": "#4c9be8", "cosine": "#2bb673", "nmse": "#e5484d", "cka": "#f5a623",
           "cka_baseline": "#999999"}


class SimilarityPanel(QWidget):
    requested = Signal(str)  # path of the other stimulus
    folder_requested = Signal(str)  # a labelled folder: within-class pairs

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Similarity | None = None
        self.choose = QPushButton("Compare with a file…")
        self.choose.clicked.connect(self._choose)
        self.choose_folder = QPushButton("Within the classes of a folder…")
        self.choose_folder.setToolTip("folder/<label>/*.wav: every pair of files of one class, "
                                      "mean curve per class (the instrument study's figure)")
        self.choose_folder.clicked.connect(self._choose_folder)
        self.metric_choice = QComboBox()
        self.metric_choice.addItems(["pearson", "cosine", "nmse", "cka"])
        self.metric_choice.currentTextChanged.connect(lambda _: self._draw_classes())
        self.metric_choice.setEnabled(False)
        self.classes: ClassSimilarity | None = None
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export)
        self.info = QLabel("compares the patch at the playhead with the same time in another file")
        self.info.setWordWrap(True)
        self.curves = pg.PlotWidget()
        self.curves.setMenuEnabled(False)
        self.curves.addLegend()
        self.curves.setLabel("bottom", "layer (input → output)")
        self.maps_box = QWidget()
        self.maps_grid = QGridLayout(self.maps_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.maps_box)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.curves)
        split.addWidget(scroll)
        split.setSizes([450, 480])
        top = QHBoxLayout()
        top.addWidget(self.choose)
        top.addWidget(self.choose_folder)
        top.addWidget(self.metric_choice)
        top.addWidget(self.export_button)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.info)
        layout.addWidget(split, 1)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A second stimulus", "",
                                              "Audio (*.wav *.flac *.ogg *.mp3 *.aiff);;All files (*)")
        if path:
            self.info.setText("comparing…")
            self.requested.emit(path)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A labelled folder (folder/<label>/*.wav)")
        if folder:
            self.info.setText("comparing every within-class pair…")
            self.folder_requested.emit(folder)

    def set_classes(self, r: ClassSimilarity) -> None:
        """Per-class mean curves of the chosen metric (with the CKA baseline for CKA)."""
        self.classes = r
        self.result = None
        self.metric_choice.setEnabled(True)
        counts = ", ".join(f"{label} {n}" for label, n in r.pairs.items())
        self.info.setText(f"{r.folder}: mean over within-class pairs ({counts}), {len(r.layers)} layers")
        self._draw_classes()

    def _draw_classes(self) -> None:
        r = self.classes
        if r is None:
            return
        self.curves.clear()
        metric = self.metric_choice.currentText()
        x = np.arange(len(r.layers))
        for i, (label, values) in enumerate(r.per_class.items()):
            colour = pg.intColor(i, hues=max(len(r.per_class), 2))
            if metric in values:
                self.curves.plot(x, values[metric], name=label, pen=pg.mkPen(colour, width=2), symbol="o",
                                 symbolSize=4, symbolBrush=colour)
            baseline = values.get(f"{metric}_baseline")
            if baseline is not None:
                self.curves.plot(x, baseline, pen=pg.mkPen(colour, width=1, style=Qt.DashLine))
        self.curves.setLabel("left", metric)

    def set_result(self, r: Similarity) -> None:
        self.result = r
        self.classes = None
        self.metric_choice.setEnabled(False)
        self.info.setText(f"{r.name_a} vs {r.name_b}, patch at {r.start_s:.1f} s, {len(r.layers)} layers")
        self.curves.clear()
        x = np.arange(len(r.layers))
        for metric, values in r.values.items():
            style = {"pen": pg.mkPen(COLOURS.get(metric, "w"), width=2,
                                     style=Qt.DashLine if metric == "cka_baseline" else Qt.SolidLine)}
            self.curves.plot(x, np.asarray(values, float), name=metric, symbol="o", symbolSize=4, **style)
        self.curves.getAxis("bottom").setTicks([[(i, str(i)) for i in x[:: max(1, len(x) // 12)]]])
        while self.maps_grid.count():
            item = self.maps_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.maps_grid.addWidget(QLabel(f"<b>{r.name_a}</b>"), 0, 1)
        self.maps_grid.addWidget(QLabel(f"<b>{r.name_b}</b>"), 0, 2)
        for row, (layer, a, b) in enumerate(r.maps, start=1):
            levels = (float(min(a.min(), b.min())), float(max(a.max(), b.max())))
            self.maps_grid.addWidget(QLabel(layer), row, 0)
            for col, m in ((1, a), (2, b)):
                label = QLabel()
                label.setPixmap(to_pixmap(m, width=180, height=60 if m.shape[0] > 1 else 20, levels=levels))
                self.maps_grid.addWidget(label, row, col)

    def export(self) -> None:
        if self.classes is not None and self.result is None:
            path = ask_save_path(self, "Export similarity", "similarity-per-class.csv", "CSV (*.csv)")
            if path:
                rows = [[label, metric, layer, float(v)] for label, values in self.classes.per_class.items()
                        for metric, curve in values.items() for layer, v in zip(self.classes.layers, curve)]
                save_table(path, ["class", "metric", "layer", "value"], rows)
            return
        if self.result is None:
            return
        path = ask_save_path(self, "Export similarity", "similarity.csv", "CSV (*.csv)")
        if path:
            keys = list(self.result.values)
            rows = [[layer] + [float(self.result.values[k][i]) for k in keys]
                    for i, layer in enumerate(self.result.layers)]
            save_table(path, ["layer"] + keys, rows)
