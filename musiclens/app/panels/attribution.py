"""CAM overlay: choose a method, a target class and a layer; the map is drawn over the
spectrogram for the whole analysed file. How it is shown (the positive part, signed, or the
magnitude), its opacity and contrast are set here (the last two mirror the spectrogram's)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.panels.common import ask_save_path
from musiclens.app.session import Analysis, Attribution, ModelSummary
from musiclens.core.interpret import methods

#: (label, name) of every method the table has for audio, in the table's order
METHODS = [(m.label, m.name) for m in methods.select(kind="audio")]
# how a signed map is shown: key, text
SHOW = [("relu", "positive part (ReLU)"), ("signed", "signed (blue against, red toward)"), ("abs", "magnitude |value|")]


class AttributionPanel(QWidget):
    requested = Signal(str, str, object)  # method, target, layer or None
    cleared = Signal()
    display_changed = Signal()  # the way the result is shown changed: draw it again
    score_requested = Signal()  # score the shown map's faithfulness (at the playhead's patch)
    compare_requested = Signal()  # open the "Compare methods" table

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Attribution | None = None
        self.method = QComboBox()
        for m in methods.select(kind="audio"):
            self.method.addItem(m.label, m.name)
            self.method.setItemData(self.method.count() - 1, m.description, Qt.ToolTipRole)
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
        self.show_as = QComboBox()
        for key, text in SHOW:
            self.show_as.addItem(text, key)
        self.show_as.setToolTip(
            "CAM-family maps are usually shown after a ReLU (the Grad-CAM paper); "
            "Integrated Gradients signed: what speaks for and against the class"
        )
        self.show_as.currentIndexChanged.connect(lambda _i: self.result is not None and self.display_changed.emit())
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(80)
        self.contrast = QSlider(Qt.Horizontal)
        self.contrast.setRange(0, 100)
        self.contrast.setValue(50)
        self.contrast.setToolTip("0 = linear, 50 = square root, 100 = fourth root of the scaled values")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.score_button = QPushButton("Score this map")
        self.score_button.setToolTip(
            "deletion and insertion AUC of the shown map on the patch at the playhead, against a random "
            "order of the cells (deletion: lower is better; insertion: higher is better)"
        )
        self.score_button.setEnabled(False)
        self.score_button.clicked.connect(self._score)
        self.compare_button = QPushButton("Compare methods…")
        self.compare_button.setToolTip("a table of every method's faithfulness for this file and target")
        self.compare_button.clicked.connect(self.compare_requested.emit)
        self.scores = QLabel("")
        self.scores.setWordWrap(True)
        self.scores.setTextFormat(Qt.RichText)
        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        form.addRow("layer", self.layer)
        form.addRow("show", self.show_as)
        form.addRow("opacity", self.opacity)
        form.addRow("contrast", self.contrast)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        faithful = QHBoxLayout()
        faithful.addWidget(self.score_button)
        faithful.addWidget(self.compare_button)
        faithful.addStretch(1)
        layout.addLayout(faithful)
        layout.addWidget(self.scores)
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
        method = methods.get(self.method.currentData())
        self.layer.setEnabled(method.needs_layer)
        self.show_as.setEnabled(method.shown_signed)  # magnitudes ("abs") are shown as they are
        self.show_as.setCurrentIndex(self.show_as.findData(method.shown_as if method.shown_signed else "abs"))

    def display(self, result: Attribution) -> tuple[np.ndarray, bool, str, tuple[str, str]]:
        """How to draw ``result``: (values, signed?, what they are, what − and + mean)."""
        name = methods.label(result.method)
        where = f" at {result.layer}" if result.layer else ""
        target = f"'{result.target}'"
        ends = (f"against {target}", f"toward {target}")
        if not result.signed:
            return result.values, False, f"{name} (magnitude) for {target}", ends
        how = self.show_as.currentData() if self.show_as.isEnabled() else "signed"
        if how == "relu":
            return np.maximum(result.values, 0), False, f"{name} (ReLU) for {target}{where}", ends
        if how == "abs":
            return np.abs(result.values), False, f"{name} |value| for {target}{where}", ends
        return result.values, True, f"{name} for {target}{where}", ends

    def _run(self) -> None:
        method = self.method.currentData()
        layer = self.layer.currentText() if methods.get(method).needs_layer else None
        target = self.target.currentData()
        self.note.setText(f"computing {self.method.currentText()} for '{target}'…")
        self.requested.emit(method, target, layer)

    def clear(self) -> None:
        """Forget the shown result (another model or recording is open)."""
        self.result = None
        self.note.setText("")
        self.scores.setText("")
        self.score_button.setEnabled(False)

    def _score(self) -> None:
        self.scores.setText("scoring the map (deletion and insertion against a random order)…")
        self.score_button.setEnabled(False)
        self.score_requested.emit()

    def set_scores(self, result) -> None:
        """A :class:`~musiclens.core.analyses.faithfulness.Faithfulness` of the shown map."""
        from musiclens.app.panels.faithfulness import scores_line

        self.score_button.setEnabled(self.result is not None)
        s = result.methods[0]
        self.scores.setText(
            f"Faithfulness at {result.start_s:.1f}–{result.end_s:.1f} s: {scores_line(s)}<br>"
            "<small>deletion: lower is better; insertion: higher is better</small>"
        )

    def score_failed(self, message: str) -> None:
        self.score_button.setEnabled(self.result is not None)
        self.scores.setText(f"could not score the map: {message}")

    def set_result(self, result: Attribution) -> None:
        if self.result is None or self.result.method != result.method:  # that method's usual display
            self.show_as.blockSignals(True)
            method = methods.find(result.method)
            shown = method.shown_as if method is not None else "signed"
            self.show_as.setCurrentIndex(self.show_as.findData(shown if result.signed else "abs"))
            self.show_as.setEnabled(result.signed)
            self.show_as.blockSignals(False)
        self.result = result
        self.scores.setText("")
        self.score_button.setEnabled(getattr(result, "values", None) is not None and result.values.ndim == 2)
        where = f" at {result.layer}" if result.layer else ""
        v = result.values
        self.note.setText(
            f"{methods.label(result.method)}{where} for '{result.target}': range "
            f"[{v.min():.3g}, {v.max():.3g}]{result.note}"
        )

    def export(self) -> None:
        if self.result is None:
            return
        path = ask_save_path(self, "Export attribution", f"{self.result.method}.npz", "NumPy (*.npz)")
        if path:
            r = self.result
            np.savez_compressed(
                path,
                values=r.values,
                method=r.method,
                target=r.target,
                layer=r.layer or "",
                start_s=r.start_s,
                end_s=r.end_s,
            )
