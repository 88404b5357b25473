"""Training: a dataset folder, an architecture, epochs, early-stopping patience, learning
rate, batch size and the validation/test split of the tracks; progress, a live loss/accuracy
plot, cancel; the trained model is saved and added to the model picker (a cancelled run keeps
its best epoch so far)."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.paths import data_home
from musiclens.core.models.architectures import ARCHITECTURES
from musiclens.core.models.architectures import names as arch_names

ARCHS = tuple(arch_names())  # the one list of trainable architectures (core.models.architectures)
PROBE_BASES = ("MSD_musicnn", "MTT_musicnn")
PROBE_FEATURES = ("penultimate", "pooled", "tags")
TASKS = ("genre", "instruments", "mood")


def models_home() -> Path:
    """Where models trained in the app are saved (the user's data folder)."""
    return data_home() / "models"


class TrainingPanel(QWidget):
    start_requested = Signal(dict)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("root/<label>/*.wav (GTZAN layout), musdb-style stems or root/<label>/*.mid")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.arch = QComboBox()
        for a in ARCHITECTURES:  # each with its input kind: the folder must hold that kind of file
            self.arch.addItem(a.name)
            self.arch.setItemData(self.arch.count() - 1, f"{a.kind}: {a.description}", Qt.ToolTipRole)
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
        # the trainer's settings (musiclens.core.training.loop.TrainConfig), its defaults shown
        self.patience = QSpinBox()
        self.patience.setRange(0, 1000)
        self.patience.setValue(5)
        self.patience.setSpecialValueText("never")
        self.patience.setToolTip(
            "stop after this many epochs without a better validation score "
            "(the best epoch's weights are kept); 0 = never stop early"
        )
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setValue(1e-3)
        self.lr.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
        self.lr.setToolTip("Adam's learning rate")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        self.batch_size.setValue(32)
        self.batch_size.setToolTip("patches per optimisation step")
        self.val_fraction = _fraction(0.1, "share of the tracks held out to choose the best epoch")
        self.test_fraction = _fraction(0.1, "share of the tracks held out for the final test scores")
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
            "train score": self.plot.plot(
                pen=pg.mkPen("#2bb673", width=2), name="train acc/AUC", symbol="o", symbolSize=5
            ),
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
        form.addRow("epochs", _pair(self.epochs, "patience", self.patience))
        form.addRow("learning rate", _pair(self.lr, "batch size", self.batch_size))
        form.addRow("validation", _pair(self.val_fraction, "test", self.test_fraction, "of the tracks"))
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
        self.task.setEnabled(any(a.name == arch and a.kind == "audio" for a in ARCHITECTURES))

    def options(self) -> dict:
        options = {
            "root": self.folder.text().strip(),
            "arch": self.arch.currentText(),
            "task": self.task.currentText(),
            "epochs": self.epochs.value(),
            "patience": self.patience.value() or None,
            "lr": self.lr.value(),
            "batch_size": self.batch_size.value(),
            "val_fraction": round(self.val_fraction.value(), 4),
            "test_fraction": round(self.test_fraction.value(), 4),
        }
        if options["arch"] == "musicnn-probe":
            options["model_params"] = {"base": self.base.currentText(), "features": self.features.currentText()}
        return options

    def _start(self) -> None:
        options = self.options()
        if not options["root"]:
            self.report.setText("choose a dataset folder first")
            return
        if options["val_fraction"] + options["test_fraction"] > 0.9:
            self.report.setText(
                "this split leaves too few tracks to train on: validation + test must be at most 0.9 of the tracks"
            )
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

    def cancelled(self, summary: dict | None) -> None:
        """A cancelled run: its best model so far when one was saved (``summary["out"]``)."""
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        summary = summary or {}
        if not summary.get("out"):
            self.report.setText("Training cancelled before its first epoch ended: nothing to keep.")
            return
        if "val_roc_auc" in summary:
            score = f"val ROC-AUC {_num(summary.get('val_roc_auc'))}"
        else:
            score = f"val acc {_pct(summary.get('val_accuracy'))}"
        self.report.setText(
            f"Training cancelled; best model so far (epoch {summary.get('best_epoch')}, {score}) "
            f"saved to {summary['out']} and added to the model picker."
        )

    def finished(self, summary: dict | None, message: str = "") -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if summary is None:
            self.report.setText(message or "cancelled")
            return
        self.progress.setValue(1000)
        if "test_accuracy" in summary:
            score = (
                f"test accuracy {_pct(summary.get('test_accuracy'))} (track-level "
                f"{_pct(summary.get('test_track_accuracy'))}; chance {_pct(summary.get('chance'))})"
            )
        else:
            score = f"test ROC-AUC {summary.get('test_roc_auc')}"
        split = summary.get("split", {})
        where = (
            "the piano roll uses it now: open a MIDI file"
            if summary.get("kind") == "midi"
            else "added to the model picker"
        )
        self.report.setText(
            f"{summary['arch']} on {len(summary['classes'])} classes, tracks "
            f"{split.get('train')}/{split.get('val')}/{split.get('test')}: {score}. "
            f"Saved to {summary.get('out')}; {where}."
        )


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _fraction(value: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(2)
    box.setRange(0.0, 0.9)
    box.setSingleStep(0.05)
    box.setValue(value)
    box.setToolTip(tip + " (split by track: the patches of one recording never cross splits)")
    return box


def _pair(first: QWidget, label: str, second: QWidget, tail: str = "") -> QHBoxLayout:
    """Two settings on one form row: ``first   label second tail``."""
    row = QHBoxLayout()
    row.addWidget(first, 1)
    row.addWidget(QLabel(label))
    row.addWidget(second, 1)
    if tail:
        row.addWidget(QLabel(tail))
    return row
