"""CAM overlay: choose a method, a target class and a layer; the map is drawn over the
spectrogram (opacity slider there) for the whole analysed file."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget,
)

from musiclens.app.panels.common import ask_save_path
from musiclens.app.session import Analysis, Attribution, ModelSummary

METHODS = [("Grad-CAM", "gradcam"), ("Grad-CAM++", "gradcam++"), ("CAM (GAP models)", "cam"),
           ("saliency (gradient)", "grad"), ("SmoothGrad", "smoothgrad"),
           ("Integrated Gradients", "ig")]
NEEDS_LAYER = {"cam", "gradcam", "gradcam++"}


class AttributionPanel(QWidget):
    requested = Signal(str, str, object)  # method, target, layer or None
    cleared = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Attribution | None = None
        self.method = QComboBox()
        for text, key in METHODS:
            self.method.addItem(text, key)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.target = QComboBox()
        self.target.setToolTip("classes sorted by the model's mean probability for this file")
        self.layer = QComboBox()
        self.run_button = QPushButton("Show over spectrogram")
        self.run_button.clicked.connect(self._run)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.cleared.emit)
        self.export_button = QPushButton("Export NPZ…")
        self.export_button.clicked.connect(self.export)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        form.addRow("layer", self.layer)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        layout.addStretch(1)

    def sizeHint(self):  # noqa: N802 (Qt naming)
        from PySide6.QtCore import QSize

        return QSize(480, 240)

    def set_model(self, summary: ModelSummary) -> None:
        self.layer.clear()
        convs = [name for name, _group, kind in summary.layers if kind in ("conv", "block")]
        self.layer.addItems(convs)
        if convs:
            self.layer.setCurrentIndex(len(convs) - 1)
        self.target.clear()
        for label in summary.labels:
            self.target.addItem(label, label)

    def set_analysis(self, analysis: Analysis) -> None:
        """Targets ranked by the model's mean probability; the top class is preselected."""
        self.target.clear()
        for label, p in analysis.top:
            self.target.addItem(f"{label}  ({p:.2f})", label)
        self.target.setCurrentIndex(0)

    def _method_changed(self) -> None:
        self.layer.setEnabled(self.method.currentData() in NEEDS_LAYER)

    def _run(self) -> None:
        method = self.method.currentData()
        layer = self.layer.currentText() if method in NEEDS_LAYER else None
        target = self.target.currentData()
        self.note.setText(f"computing {self.method.currentText()} for '{target}'…")
        self.requested.emit(method, target, layer)

    def set_result(self, result: Attribution) -> None:
        self.result = result
        where = f" at {result.layer}" if result.layer else ""
        v = result.values
        self.note.setText(f"{result.method}{where} for '{result.target}': range "
                          f"[{v.min():.3g}, {v.max():.3g}]{result.note}")

    def export(self) -> None:
        if self.result is None:
            return
        path = ask_save_path(self, "Export attribution", f"{self.result.method}.npz", "NumPy (*.npz)")
        if path:
            r = self.result
            np.savez_compressed(path, values=r.values, method=r.method, target=r.target,
                                layer=r.layer or "", start_s=r.start_s, end_s=r.end_s)
