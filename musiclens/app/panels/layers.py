"""Layer/filter browser: the model's layers as a tree, and for the selected layer a grid of
per-filter activation thumbnails on the current patch, sortable by energy. Clicking a
filter shows its activation over the spectrogram and plays its auralisation."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSplitter,
    QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from musiclens.app.panels.common import ask_save_path, to_pixmap
from musiclens.app.session import LayerMaps, ModelSummary

THUMB = QSize(112, 56)


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
        self.sort.addItems(["by energy", "by index"])
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

        right = QWidget()
        controls = QHBoxLayout()
        controls.addWidget(QLabel("sort"))
        controls.addWidget(self.sort)
        controls.addWidget(self.deconv_button)
        controls.addWidget(self.export_button)
        controls.addStretch(1)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(controls)
        rl.addWidget(self.info)
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
        groups: dict[str, QTreeWidgetItem] = {}
        for name, group, kind in summary.layers:
            parent = groups.get(group)
            if parent is None:
                parent = groups[group] = QTreeWidgetItem(self.tree, [group, ""])
                parent.setFlags(parent.flags() & ~Qt.ItemIsSelectable)
                parent.setExpanded(True)
            short = name[len(group) + 3:] if name.startswith(f"{group} / ") else name
            item = QTreeWidgetItem(parent, [short, kind])
            item.setToolTip(0, name)
            item.setData(0, Qt.UserRole, name)
        self.info.setText(f"{len(summary.layers)} layers; select one to see its filters")

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
        self.info.setText(f"{maps.layer}: {k} filters, maps {f}×{t} on the patch at "
                          f"{maps.start_s:.1f} s. Click a filter to hear it.")
        self._fill_grid()

    def _fill_grid(self) -> None:
        self.grid.clear()
        if self.maps is None:
            return
        m = self.maps
        order = np.argsort(-m.energy, kind="stable") if self.sort.currentIndex() == 0 else np.arange(len(m.energy))
        levels = (float(m.maps.min()), float(m.maps.max()))
        dead = m.energy <= 1e-12
        for k in order:
            pix = to_pixmap(m.maps[k], width=THUMB.width(), height=THUMB.height(), levels=levels)
            item = QListWidgetItem(pix, f"#{k}  {'dead' if dead[k] else f'{m.energy[k]:.2g}'}")
            item.setData(Qt.UserRole, int(k))
            item.setToolTip(f"filter {k}, energy (mean square) {m.energy[k]:.4g}")
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
            np.savez_compressed(path, maps=self.maps.maps, energy=self.maps.energy,
                                layer=self.maps.layer, patch=self.maps.patch, start_s=self.maps.start_s)
