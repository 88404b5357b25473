"""Training: a dataset folder, an architecture, epochs; progress, a live loss/accuracy plot,
cancel; the trained model is saved and added to the model picker."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QStandardPaths, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
    QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

ARCHS = ("vanilla-cnn", "masked-cnn", "gap-cnn", "choi-cnn", "stft-cnn", "musicnn-probe")
PROBE_BASES = ("MSD_musicnn", "MTT_musicnn")
PROBE_FEATURES = ("penultimate", "pooled", "tags")
TASKS = ("genre", "instruments", "mood")


def models_home() -> Path:
    """Where models trained in the app are saved (the user's data folder)."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "models"


class TrainingPanel(QWidget):
    start_requested = Signal(dict)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("root/<label>/*.wav (GTZAN layout) or musdb-style stems")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.arch = QComboBox()
        self.arch.addItems(ARCHS)
        self.task = QComboBox()
        self.task.addItems(TASKS)
        # musicnn-probe only: which pretrained MusiCNN and which of its representations
        self.base = QComboBox()
        self.base.addItems(PROBE_BASES)
        self.features = QComboBox()
        self.features.addItems(PROBE_FEATURES)
        self.arch.currentTextChanged.connect(self._arch_changed)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(20)
        self.start_button = QPushButton("Train")
        self.start_button.clicked.connect(self._start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.report = QLabel("")
        self.report.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.addLegend()
        self.plot.setLabel("bottom", "epoch")
        self.curves = {
            "train loss": self.plot.plot(pen=pg.mkPen("#4c9be8", width=2), name="train loss", symbol="o", symbolSize=5),
            "val loss": self.plot.plot(pen=pg.mkPen("#4c9be8", width=2, style=Qt.DashLine), name="val loss"),
            "train score": self.plot.plot(pen=pg.mkPen("#2bb673", width=2), name="train acc/AUC", symbol="o", symbolSize=5),
            "val score": self.plot.plot(pen=pg.mkPen("#2bb673", width=2, style=Qt.DashLine), name="val acc/AUC"),
        }
        self.history: dict[str, list[float]] = {k: [] for k in self.curves}

        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("dataset folder", row)
        form.addRow("architecture", self.arch)
        form.addRow("probe base", self.base)
        form.addRow("probe features", self.features)
        form.addRow("task", self.task)
        form.addRow("epochs", self.epochs)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.report)
        layout.addWidget(self.plot, 1)
        self._arch_changed(self.arch.currentText())

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder")
        if folder:
            self.folder.setText(folder)

    def _arch_changed(self, arch: str) -> None:
        probe = arch == "musicnn-probe"
        self.base.setEnabled(probe)
        self.features.setEnabled(probe)

    def options(self) -> dict:
        options = {"root": self.folder.text().strip(), "arch": self.arch.currentText(),
                   "task": self.task.currentText(), "epochs": self.epochs.value()}
        if options["arch"] == "musicnn-probe":
            options["model_params"] = {"base": self.base.currentText(),
                                       "features": self.features.currentText()}
        return options

    def _start(self) -> None:
        options = self.options()
        if not options["root"]:
            self.report.setText("choose a dataset folder first")
            return
        for values in self.history.values():
            values.clear()
        self._redraw()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.report.setText("scanning the dataset…")
        self.start_requested.emit(options)

    def show_event(self, fraction: float | None, message: str, epoch: dict | None) -> None:
        if fraction is not None:
            self.progress.setValue(int(1000 * fraction))
        if message:
            self.report.setText(message)
        if epoch:
            for key, value in epoch.items():
                self.history[key].append(value)
            self._redraw()

    def _redraw(self) -> None:
        for key, curve in self.curves.items():
            ys = self.history[key]
            curve.setData(list(range(1, len(ys) + 1)), ys)

    def finished(self, summary: dict | None, message: str = "") -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if summary is None:
            self.report.setText(message or "cancelled")
            return
        self.progress.setValue(1000)
        if "test_accuracy" in summary:
            score = (f"test accuracy {_pct(summary.get('test_accuracy'))} (track-level "
                     f"{_pct(summary.get('test_track_accuracy'))}; chance {_pct(summary.get('chance'))})")
        else:
            score = f"test ROC-AUC {summary.get('test_roc_auc')}"
        split = summary.get("split", {})
        self.report.setText(f"{summary['arch']} on {len(summary['classes'])} classes, tracks "
                            f"{split.get('train')}/{split.get('val')}/{split.get('test')}: {score}. "
                            f"Saved to {summary.get('out')} and added to the model picker.")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"
