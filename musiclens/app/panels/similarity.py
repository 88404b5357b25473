"""Similarity: compare the open recording with another stimulus (e.g. a mix and one of its
stems) layer by layer — Pearson, cosine, normalised MSE and linear CKA with its permutation
baseline — and see both stimuli's feature maps at every layer, input at the top.

The curves run down the layers, named on the left axis and grouped by kind (conv, batch
norm, block outputs, pooling, dense), each group in input → output order under its own
heading: values of different kinds of layer differ systematically, so one line through
all of them would zig-zag between kinds rather than show what changes with depth.

The plot keeps to its pane: x always covers [0, 1] (or the data, where wider: nMSE can pass
1), the layer names are shortened from the left when the axis would take more than about
half the plot, the legend takes as many columns as fit under the plot, and the feature maps
beside it (each layer's name above its two maps) get the rest of the panel."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.panels.common import ask_save_path, save_table, to_pixmap
from musiclens.app.session import ClassSimilarity, Similarity

COLOURS = {"pearson": "#4c9be8", "cosine": "#2bb673", "nmse": "#e5484d", "cka": "#f5a623", "cka_baseline": "#999999"}
# groups of layers on the plot, in this order (other kinds after them, as they come)
KIND_ORDER = ("conv", "batchnorm", "block", "pool", "dense", "recurrent")
# the plot's share of the panel: its left axis may take this share of the plot's width
AXIS_SHARE = 0.48
MAP_WIDTH = 160  # px of each feature map in the grid beside the plot
KIND_TITLES = {
    "conv": "convolutions",
    "batchnorm": "batch norms",
    "block": "block outputs",
    "pool": "pooling",
    "dense": "dense layers",
    "recurrent": "recurrent layers",
    "layer": "layers",
}


def group_layers(layers: list[str], kinds: dict[str, str]) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Row of each layer on the plot's layer axis, and (kind, row of its heading) per group.

    Layers are grouped by kind (``KIND_ORDER`` first), keep their input → output order within
    a group, and each group starts with a heading row (no layer on it)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(layers):
        groups.setdefault(kinds.get(name, "layer"), []).append(i)
    rank = {kind: k for k, kind in enumerate(KIND_ORDER)}
    ordered = sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[1][0]))
    rows = np.zeros(len(layers))
    headings, row = [], 0.0
    for kind, members in ordered:
        headings.append((kind, row))
        for i in members:
            row += 1
            rows[i] = row
        row += 1
    return rows, headings


def grouped_curve(values: np.ndarray, rows: np.ndarray, headings: list) -> tuple[np.ndarray, np.ndarray]:
    """(values, rows) in row order with a NaN between groups, so no line joins two kinds."""
    v = np.asarray(values, float)
    order = np.argsort(rows, kind="stable")
    breaks = [h for _kind, h in headings[1:]]
    out_v, out_r = [], []
    for i in order:
        while breaks and rows[i] > breaks[0]:
            out_v.append(np.nan)
            out_r.append(breaks.pop(0))
        out_v.append(v[i])
        out_r.append(rows[i])
    return np.asarray(out_v), np.asarray(out_r)


class SimilarityPanel(QWidget):
    requested = Signal(str)  # path of the other stimulus
    folder_requested = Signal(str)  # a labelled folder: within-class pairs

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Similarity | None = None
        self.choose = QPushButton("Compare with a file…")
        self.choose.clicked.connect(self._choose)
        self.choose_folder = QPushButton("Within the classes of a folder…")
        self.choose_folder.setToolTip(
            "folder/<label>/*.wav: every pair of files of one class, "
            "mean curve per class (the instrument study's figure)"
        )
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
        # the legend under the plot and its axis, where it hides no curve; as many columns
        # as fit the plot's width (see _fit_to_width)
        legend = pg.LegendItem(colCount=3, horSpacing=8, verSpacing=-4, labelTextSize="8pt")
        self.curves.plotItem.layout.addItem(legend, 4, 0, 1, 3)
        self.curves.plotItem.legend = legend  # plot(name=…) adds to it
        self.curves.setMinimumWidth(300)
        self.curves.installEventFilter(self)  # resized: names and legend refit
        self.curves.plotItem.vb.sigResized.connect(lambda _vb: self._fit_rows())
        self.headings: list[pg.InfiniteLine] = []
        self.curves.invertY(True)  # input at the top, as in the maps beside it
        self.curves.showGrid(x=True, y=False, alpha=0.2)
        self.tick_font = QFont()
        self.tick_font.setPointSizeF(7.5)
        self.curves.getAxis("left").setStyle(tickFont=self.tick_font)
        self.layer_rows: dict[str, float] = {}  # layer -> its row on the plot
        self.axis_labels: dict[str, str] = {}  # layer -> its name on the axis (shortened to fit)
        self.maps_box = QWidget()
        self.maps_grid = QGridLayout(self.maps_box)
        self.maps_grid.setContentsMargins(4, 4, 4, 4)
        self.maps_grid.setHorizontalSpacing(4)
        self.maps_grid.setVerticalSpacing(1)
        self.maps_scroll = QScrollArea()
        self.maps_scroll.setWidgetResizable(True)
        self.maps_scroll.setWidget(self.maps_box)
        self.maps_scroll.setMinimumWidth(160)
        self.split = split = QSplitter(Qt.Horizontal)
        split.addWidget(self.curves)
        split.addWidget(self.maps_scroll)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 1)  # the plot takes what the maps (two side by side) leave
        split.setStretchFactor(1, 0)
        split.setSizes([500, 2 * MAP_WIDTH + 40])
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
        path, _ = QFileDialog.getOpenFileName(
            self, "A second stimulus", "", "Audio (*.wav *.flac *.ogg *.mp3 *.aiff);;All files (*)"
        )
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
        while self.maps_grid.count():  # the maps of an earlier comparison of two files
            item = self.maps_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        counts = ", ".join(f"{label} {n}" for label, n in r.pairs.items())
        self.info.setText(f"{r.folder}: mean over within-class pairs ({counts}), {len(r.layers)} layers")
        self._draw_classes()

    def _draw_classes(self) -> None:
        r = self.classes
        if r is None:
            return
        self.curves.clear()
        metric = self.metric_choice.currentText()
        rows, headings = self._layer_axis(r.layers, getattr(r, "kinds", {}))
        for i, (label, values) in enumerate(r.per_class.items()):
            colour = pg.intColor(i, hues=max(len(r.per_class), 2))
            if metric in values:
                v, y = grouped_curve(values[metric], rows, headings)
                self.curves.plot(
                    v,
                    y,
                    name=label,
                    pen=pg.mkPen(colour, width=2),
                    symbol="o",
                    symbolSize=4,
                    symbolBrush=colour,
                    connect="finite",
                )
            baseline = values.get(f"{metric}_baseline")
            if baseline is not None:
                v, y = grouped_curve(baseline, rows, headings)
                self.curves.plot(v, y, pen=pg.mkPen(colour, width=1, style=Qt.DashLine), connect="finite")
        self.curves.setLabel("bottom", metric)
        self._fit_x()
        self._fit_to_width()

    def clear(self) -> None:
        """Forget the shown comparison (another model or recording is open)."""
        self.result = None
        self.classes = None
        self.metric_choice.setEnabled(False)
        self.info.setText("compares the patch at the playhead with the same time in another file")
        self.curves.clear()
        self.layer_rows, self.axis_labels, self.headings = {}, {}, []
        self.curves.getAxis("left").setTicks([[], []])
        while self.maps_grid.count():
            item = self.maps_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()

    def set_result(self, r: Similarity) -> None:
        self.result = r
        self.classes = None
        self.metric_choice.setEnabled(False)
        self.info.setText(f"{r.name_a} vs {r.name_b}, patch at {r.start_s:.1f} s, {len(r.layers)} layers")
        self.curves.clear()
        rows, headings = self._layer_axis(r.layers, getattr(r, "kinds", {}))
        for metric, values in r.values.items():
            style = {
                "pen": pg.mkPen(
                    COLOURS.get(metric, "w"), width=2, style=Qt.DashLine if metric == "cka_baseline" else Qt.SolidLine
                )
            }
            v, y = grouped_curve(values, rows, headings)
            self.curves.plot(v, y, name=metric, symbol="o", symbolSize=4, connect="finite", **style)
        self.curves.setLabel("bottom", "similarity")
        self._fit_x()
        self._fit_to_width()
        while self.maps_grid.count():
            item = self.maps_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        # two maps side by side under each layer's name (a column of names beside them
        # would push the second map out of the pane)
        for col, name in ((0, r.name_a), (1, r.name_b)):
            heading = QLabel(f"<b>{name}</b>")
            heading.setMaximumWidth(MAP_WIDTH)
            self.maps_grid.addWidget(heading, 0, col)
        for k, (layer, a, b) in enumerate(r.maps):
            levels = (float(min(a.min(), b.min())), float(max(a.max(), b.max())))
            name = QLabel(layer)
            name.setContentsMargins(0, 6 if k else 2, 0, 0)
            self.maps_grid.addWidget(name, 1 + 2 * k, 0, 1, 2)
            for col, m in ((0, a), (1, b)):
                label = QLabel()
                label.setPixmap(to_pixmap(m, width=MAP_WIDTH, height=60 if m.shape[0] > 1 else 20, levels=levels))
                self.maps_grid.addWidget(label, 2 + 2 * k, col)
        self.maps_grid.setRowStretch(2 + 2 * len(r.maps), 1)  # rows at the top, not spread out
        self.maps_grid.setColumnStretch(2, 1)

    def _layer_axis(self, layers: list[str], kinds: dict[str, str]) -> tuple[np.ndarray, list]:
        """Name the layers on the left axis, grouped by kind under a heading line per group."""
        rows, headings = group_layers(list(layers), kinds)
        self.headings = []  # curves.clear() took the previous ones off the plot
        self.layer_rows = {name: float(row) for name, row in zip(layers, rows)}
        for kind, row in headings:
            line = pg.InfiniteLine(
                pos=row,
                angle=0,
                pen=pg.mkPen("#666666", width=1, style=Qt.DotLine),
                label=KIND_TITLES.get(kind, kind),
                labelOpts={
                    "position": 0.99,
                    "color": "#bbbbbb",
                    "fill": (0, 0, 0, 170),
                    "anchors": [(1, 0.5), (1, 0.5)],
                },
            )
            line.label.setFont(self.tick_font)
            line.setZValue(-5)  # under the curves: a point next to a heading stays in sight
            self.curves.addItem(line)
            self.headings.append(line)
        return rows, headings

    def _fit_x(self) -> None:
        """x from min(0, data) to max(1, data): 1 (identical maps) is always in view."""
        lo, hi = 0.0, 1.0
        for item in self.curves.listDataItems():
            xs, _ys = item.getData()
            xs = np.asarray(xs, float) if xs is not None else np.zeros(0)
            xs = xs[np.isfinite(xs)]
            if xs.size:
                lo, hi = min(lo, float(xs.min())), max(hi, float(xs.max()))
        self.curves.plotItem.vb.enableAutoRange(x=False)
        self.curves.setXRange(lo, hi, padding=0.04)

    def _fit_to_width(self) -> None:
        """Layer names on the left axis (shortened from the left where the axis would take
        more than ``AXIS_SHARE`` of the plot) and the legend's columns, for the plot's width."""
        width = self.curves.width()
        metrics = QFontMetrics(self.tick_font)
        room = max(60, int(AXIS_SHARE * width) - 16)
        self.axis_labels = {name: metrics.elidedText(name, Qt.ElideLeft, room) for name in self.layer_rows}
        axis = self.curves.getAxis("left")
        axis.setWidth(max((metrics.horizontalAdvance(s) for s in self.axis_labels.values()), default=20) + 16)
        legend = self.curves.plotItem.legend
        if legend.items:
            labels = [label.item.boundingRect().width() for _sample, label in legend.items]  # the text's own
            sample = max(sample.boundingRect().width() for sample, _label in legend.items)
            spacing = legend.layout.horizontalSpacing()

            def needed(columns: int) -> float:
                widest = [max(labels[c::columns]) for c in range(columns)]
                return sum(widest) + columns * sample + (2 * columns - 1) * spacing + 8

            columns = next((c for c in range(len(labels), 1, -1) if needed(c) <= width), 1)
            if columns != legend.columnCount:
                legend.setColumnCount(columns)
        self._fit_rows()

    def _fit_rows(self) -> None:
        """For the plot's height: room above the first heading, and the layer names that fit
        without overlapping (all of them where a row is as high as a capital letter; in a
        shorter dock, every second or third, top to bottom: the points stay on every row)."""
        if not self.layer_rows:
            return
        vb = self.curves.plotItem.vb
        laid_out = self.curves.isVisible() and vb.height() > 0
        height = vb.height() if laid_out else 400.0  # not on screen yet: all names, refit when shown
        last = max(self.layer_rows.values())
        metrics = QFontMetrics(self.tick_font)
        text = metrics.capHeight()  # a capital's height apart: names touch at most, never overlap
        half = max((h.label.boundingRect().height() for h in self.headings), default=0) / 2 + 1  # half a heading
        below = last - max((h.value() for h in self.headings), default=last)  # rows under the last heading
        top = bottom = 0.5
        for _ in range(3):  # margins (in rows) that hold half a heading above row 0 and under the last
            pitch = height / (last + top + bottom)  # px per row
            top, bottom = max(0.5, half / pitch), max(0.5, half / pitch - below)
        self.curves.setYRange(-top, last + bottom, padding=0)
        pitch = height / (last + top + bottom)
        shown: list[tuple[float, str]] = []
        for name, row in sorted(self.layer_rows.items(), key=lambda kv: kv[1]):
            if not laid_out or not shown or (row - shown[-1][0]) * pitch >= text:
                shown.append((row, self.axis_labels.get(name, name)))
        self.curves.getAxis("left").setTicks([shown, []])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        resized = event.type() == QEvent.Resize and hasattr(self, "layer_rows")
        if resized and watched is getattr(self, "curves", None):
            self._fit_to_width()
        return super().eventFilter(watched, event)

    def export(self) -> None:
        if self.classes is not None and self.result is None:
            path = ask_save_path(self, "Export similarity", "similarity-per-class.csv", "CSV (*.csv)")
            if path:
                rows = [
                    [label, metric, layer, float(v)]
                    for label, values in self.classes.per_class.items()
                    for metric, curve in values.items()
                    for layer, v in zip(self.classes.layers, curve)
                ]
                save_table(path, ["class", "metric", "layer", "value"], rows)
            return
        if self.result is None:
            return
        path = ask_save_path(self, "Export similarity", "similarity.csv", "CSV (*.csv)")
        if path:
            keys = list(self.result.values)
            rows = [
                [layer] + [float(self.result.values[k][i]) for k in keys] for i, layer in enumerate(self.result.layers)
            ]
            save_table(path, ["layer"] + keys, rows)
