"""Layer/filter browser: the model's layers as a tree, and for the selected layer a grid of
per-filter activation thumbnails on the current patch, sortable by energy. Clicking a
filter shows its activation over the spectrogram and plays its auralisation.

The ranking is by what is heard: the energy of the positive part of each activation (the
auralisation's mask is the ReLU'd activation, so a filter that is never positive is digital
silence however large its raw energy). Filters whose auralisation is below ``silent_db``
(−40 dBFS) are greyed and labelled "silent" and listed last; "normalise loudness" plays
each auralisation at ``target_dbfs`` and says the gain.

A 1-D layer (a raw-waveform model's Conv1d, MusiCNN's mid end: maps (K, 1, T_l)) is also
shown whole, as one channels × time picture above the grid (filter 0 at the top), so its
filters can be compared along time at a glance; its thumbnails are curves over time."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.panels.common import ask_save_path, to_pixmap
from musiclens.app.session import LayerMaps, ModelSummary

THUMB = QSize(112, 56)
SORTS = ("by energy heard", "by loudness heard", "by index")


class LayersPanel(QWidget):
    layer_selected = Signal(str)
    filter_activated = Signal(str, int, str)  # layer, filter, "activation" | "deconv"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.maps: LayerMaps | None = None
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["layer", "kind"])
        self.tree.setColumnWidth(0, 230)
        self.tree.itemSelectionChanged.connect(self._layer_clicked)
        self.sort = QComboBox()
        self.sort.addItems(list(SORTS))
        self.sort.setToolTip(
            "energy heard: mean square of the positive part of the activation, the part the "
            "auralisation is made of; loudness heard: RMS of the auralisation in dBFS. "
            "Silent filters come last either way."
        )
        self.target_dbfs = -20.0
        self.normalise = QCheckBox(f"normalise loudness ({self.target_dbfs:.0f} dBFS)")
        self.normalise.setToolTip(
            "play every auralisation at the same RMS level (peak at most 0.99); the gain applied is shown"
        )
        self.sort.currentIndexChanged.connect(lambda _: self._fill_grid())
        self.grid = QListWidget()
        self.grid.setViewMode(QListWidget.IconMode)
        self.grid.setIconSize(THUMB)
        self.grid.setResizeMode(QListWidget.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setSpacing(4)
        self.grid.itemClicked.connect(lambda item: self._filter_clicked(item, "activation"))
        self.deconv_button = QPushButton("Hear deconvolution")
        self.deconv_button.clicked.connect(self._deconv_clicked)
        self.export_button = QPushButton("Export NPZ…")
        self.export_button.clicked.connect(self.export)
        self.info = QLabel("select a layer")
        self.info.setWordWrap(True)
        self.overview = QLabel()  # a 1-D layer's channels × time
        self.overview.setMinimumHeight(60)
        self.overview.setScaledContents(True)
        self.overview.hide()

        right = QWidget()
        controls = QHBoxLayout()
        controls.addWidget(QLabel("sort"))
        controls.addWidget(self.sort)
        controls.addWidget(self.normalise)
        controls.addWidget(self.deconv_button)
        controls.addWidget(self.export_button)
        controls.addStretch(1)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(controls)
        rl.addWidget(self.info)
        rl.addWidget(self.overview)
        rl.addWidget(self.grid, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(right)
        split.setSizes([280, 700])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)

    def set_model(self, summary: ModelSummary) -> None:
        self.tree.clear()
        self.grid.clear()
        self.maps = None
        self.overview.hide()
        groups: dict[str, QTreeWidgetItem] = {}
        for name, group, kind in summary.layers:
            parent = groups.get(group)
            if parent is None:
                parent = groups[group] = QTreeWidgetItem(self.tree, [group, ""])
                parent.setFlags(parent.flags() & ~Qt.ItemIsSelectable)
                parent.setExpanded(True)
            short = name[len(group) + 3 :] if name.startswith(f"{group} / ") else name
            item = QTreeWidgetItem(parent, [short, kind])
            item.setToolTip(0, name)
            item.setData(0, Qt.UserRole, name)
        # short names (a user's network: "features 0"): a narrower name column shows the kind beside them
        self.tree.setColumnWidth(0, min(230, self.tree.sizeHintForColumn(0) + 12) if summary.layers else 230)
        self.info.setText(f"{len(summary.layers)} layers; select one to see its filters")

    def show_unavailable(self, line: str, detail: str = "") -> None:
        """No layers to show (a TorchScript model has no layer hooks): the tree says why in
        one ``line``; the ``detail`` (what works, what to do) is beside it and in the tooltip."""
        import textwrap

        self.tree.clear()
        item = QTreeWidgetItem(self.tree, [textwrap.fill(line, 34), ""])
        item.setFlags(Qt.ItemIsEnabled)  # readable, not selectable
        item.setFirstColumnSpanned(True)
        item.setToolTip(0, detail or line)
        self.info.setText(detail or line)

    def selected_layer(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, Qt.UserRole) if items else None

    def select_layer(self, name: str) -> bool:
        for item in self.tree.findItems("*", Qt.MatchWildcard | Qt.MatchRecursive, 0):
            if item.data(0, Qt.UserRole) == name:
                self.tree.setCurrentItem(item)
                return True
        return False

    def set_maps(self, maps: LayerMaps) -> None:
        self.maps = maps
        k, f, t = maps.maps.shape
        self._show_overview(maps)
        silent = (
            ""
            if maps.silent is None
            else (f" {int(maps.silent.sum())} silent (auralisation below {maps.silent_db:.0f} dBFS), listed last.")
        )
        self.info.setText(
            f"{maps.layer}: {k} filters, maps {f}×{t} on the patch at {maps.start_s:.1f} s; "
            f"labels: filter, energy of the positive part of its activation (what the auralisation "
            f"hears, the ranking), level of its auralisation in dBFS.{silent} Click a filter to hear it."
        )
        self._fill_grid()

    def _show_overview(self, maps: LayerMaps) -> None:
        """A 1-D layer's (K, T_l) channels × time as one picture (rows = filters, 0 at the top)."""
        k, f, t = maps.maps.shape
        if f != 1 or t < 2:
            self.overview.hide()
            return
        rows = maps.maps[::-1, 0, :]  # to_pixmap draws row 0 at the bottom
        self.overview.setPixmap(to_pixmap(rows, width=min(max(t, 200), 1200), height=min(max(2 * k, 60), 240)))
        self.overview.setFixedHeight(min(max(2 * k, 60), 160))
        self.overview.setToolTip(
            f"{maps.layer}: {k} filters (rows, filter 0 at the top) × {t} time steps over the patch at "
            f"{maps.start_s:.2f} s; bright = strong activation"
        )
        self.overview.show()

    def show_heard(self, heard) -> None:
        """Say what is playing: its level and, when normalised, the gain."""
        if not np.isfinite(heard.level_db):
            what = "silent (digital silence): its activation is never positive here, nothing to hear"
        elif heard.level_db < (self.maps.silent_db if self.maps else -40.0) and heard.gain_db == 0:
            what = f"silent ({heard.level_db:.1f} dBFS); tick 'normalise loudness' to hear it"
        elif heard.gain_db:
            now = heard.level_db + heard.gain_db
            limit = " (as far as a 0.99 peak allows)" if now < self.target_dbfs - 0.05 else ""
            what = f"{heard.level_db:.1f} dBFS, normalised {heard.gain_db:+.1f} dB → {now:.1f} dBFS{limit}"
        else:
            what = f"{heard.level_db:.1f} dBFS"
        self.info.setText(f"playing {heard.label}, patch at {heard.start_s:.1f} s: {what}")

    def _fill_grid(self) -> None:
        self.grid.clear()
        if self.maps is None:
            return
        m = self.maps
        n = len(m.energy)
        silent = m.silent if m.silent is not None else np.zeros(n, bool)
        level = m.level_db if m.level_db is not None else np.full(n, np.nan)
        by = self.sort.currentIndex()
        if by == 0:
            order = np.lexsort((np.arange(n), -m.energy, silent))
        elif by == 1:
            order = np.lexsort((np.arange(n), -np.nan_to_num(level, nan=-np.inf), silent))
        else:
            order = np.arange(n)
        levels = (float(m.maps.min()), float(m.maps.max()))
        grey = QBrush(QColor(130, 130, 130))
        for k in order:
            quiet = bool(silent[k])
            if m.maps.shape[1] == 1 and m.maps.shape[2] > 1:  # a 1-D layer: the filter's curve over time
                pix = curve_pixmap(m.maps[k, 0], width=THUMB.width(), height=THUMB.height(), levels=levels, grey=quiet)
            else:
                pix = to_pixmap(
                    m.maps[k],
                    width=THUMB.width(),
                    height=THUMB.height(),
                    levels=levels,
                    colormap="CET-L1" if quiet else "magma",
                )
            if quiet:
                text = f"#{k}  silent"
                why = (
                    "digital silence: the activation is never positive on this patch, and the "
                    "auralisation's mask is its positive part"
                    if not np.isfinite(level[k])
                    else f"its auralisation is {level[k]:.1f} dBFS, below {m.silent_db:.0f} dBFS"
                )
                tip = f"filter {k}: silent — {why}"
            else:
                text = (
                    f"#{k} {m.energy[k]:.2g} {level[k]:.0f}dB" if np.isfinite(level[k]) else f"#{k}  {m.energy[k]:.2g}"
                )
                tip = f"filter {k}: its auralisation is {level[k]:.1f} dBFS"
            raw = float((m.maps[k].astype(np.float64) ** 2).mean())
            tip += f"\nenergy heard (mean square of the positive part) {m.energy[k]:.4g}; raw mean square {raw:.4g}"
            item = QListWidgetItem(pix, text)
            item.setData(Qt.UserRole, int(k))
            item.setToolTip(tip)
            if quiet:
                item.setForeground(grey)
            self.grid.addItem(item)

    def _layer_clicked(self) -> None:
        name = self.selected_layer()
        if name:
            self.info.setText(f"computing the activations of {name}…")
            self.layer_selected.emit(name)

    def _filter_clicked(self, item: QListWidgetItem, how: str) -> None:
        if self.maps is not None:
            self.filter_activated.emit(self.maps.layer, int(item.data(Qt.UserRole)), how)

    def _deconv_clicked(self) -> None:
        item = self.grid.currentItem()
        if item is not None:
            self._filter_clicked(item, "deconv")

    def export(self) -> None:
        if self.maps is None:
            return
        path = ask_save_path(self, "Export activations", "activations.npz", "NumPy (*.npz)")
        if path:
            extra = {} if self.maps.level_db is None else {"level_db": self.maps.level_db, "silent": self.maps.silent}
            np.savez_compressed(
                path,
                maps=self.maps.maps,
                energy=self.maps.energy,
                layer=self.maps.layer,
                patch=self.maps.patch,
                start_s=self.maps.start_s,
                **extra,
            )


def curve_pixmap(values: np.ndarray, *, width: int, height: int, levels: tuple[float, float], grey: bool) -> QPixmap:
    """A filter's activation over time (T,) as a thumbnail: its min/max envelope filled
    from 0 (a grey line), on the layer's common scale ``levels`` (0 always inside)."""
    from musiclens.app.panels.spectrogram import envelope

    _t, low, high = envelope(values, 0.0, 1.0, points=width)
    lo, hi = min(levels[0], 0.0), max(levels[1], 0.0)
    span = (hi - lo) or 1.0
    xs = np.linspace(0, width - 1, len(high))

    def y(v: np.ndarray) -> np.ndarray:
        return (hi - v) / span * (height - 1)

    pix = QPixmap(width, height)
    pix.fill(QColor(24, 24, 32))
    top, bottom = y(np.maximum(high, 0.0)), y(np.minimum(low, 0.0))  # filled from 0 to the curve
    outline = [QPointF(float(a), float(b)) for a, b in zip(xs, top)]
    outline += [QPointF(float(a), float(b)) for a, b in zip(xs[::-1], bottom[::-1])]
    path = QPainterPath()
    path.addPolygon(QPolygonF(outline))
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.fillPath(path, QColor(150, 150, 150) if grey else QColor(250, 160, 60))
    painter.setPen(QPen(QColor(120, 120, 140), 1))
    zero = float(y(np.zeros(1))[0])
    painter.drawLine(QPointF(0, zero), QPointF(width - 1, zero))
    painter.end()
    return pix
