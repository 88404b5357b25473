"""Dream controls: every option of the engine's dream, progress, a live preview of the
input as it changes, stop, play and export.

Stop ends the dream with the input as it is (the session makes its audio), so what Play
and Export use is the dream on screen; while a dream runs, Play and Export are off (they
would use the previous one)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.panels.common import ask_save_path
from musiclens.app.session import Analysis, Dreamt, ModelSummary


class DreamPanel(QWidget):
    start_requested = Signal(dict)
    stop_requested = Signal()
    play_requested = Signal(object)  # Dreamt

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Dreamt | None = None
        self.target = QComboBox()
        self.minus = QComboBox()
        self.update_kind = QComboBox()
        self.update_kind.addItems(["additive", "subtractive"])
        self.normalise = QCheckBox("normalise the gradient")
        self.normalise.setChecked(True)
        self.start = QComboBox()
        self.start.addItem("the patch at the playhead", "patch")
        self.start.addItem("a sine sweep", "sweep")
        self.channels = QComboBox()
        self.steps = QSpinBox()
        self.steps.setRange(1, 5000)
        self.steps.setValue(60)
        self.lr = QDoubleSpinBox()
        self.lr.setRange(0.001, 50.0)
        self.lr.setDecimals(3)
        self.lr.setValue(0.1)
        self.jitter = QSpinBox()
        self.jitter.setRange(0, 64)
        self.jitter.setValue(4)
        self.start_button = QPushButton("Dream")
        self.start_button.clicked.connect(self._start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested.emit)
        self.play_button = QPushButton("Play")
        self.play_button.setEnabled(False)
        self.play_button.clicked.connect(lambda: self.result and self.play_requested.emit(self.result))
        self.export_button = QPushButton("Export WAV…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.report = QLabel("")
        self.report.setWordWrap(True)
        self.preview = pg.PlotWidget()
        self.preview.setMenuEnabled(False)
        self.preview.hideAxis("left")
        self.preview.setLabel("bottom", "time", units="s")
        self.preview_image = pg.ImageItem(axisOrder="row-major")
        self.preview_image.setColorMap(pg.colormap.get("magma"))
        self.preview.addItem(self.preview_image)
        self.preview.setMinimumHeight(120)
        self.patch_seconds = 3.0

        form = QFormLayout()
        form.addRow("maximise", self.target)
        form.addRow("minus", self.minus)
        form.addRow("start from", self.start)
        form.addRow("update", self.update_kind)
        form.addRow("", self.normalise)
        form.addRow("channels", self.channels)
        form.addRow("steps", self.steps)
        form.addRow("step size", self.lr)
        form.addRow("time jitter (frames)", self.jitter)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.play_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.report)
        layout.addWidget(self.preview, 1)

    def sizeHint(self):  # noqa: N802 (Qt naming)
        from PySide6.QtCore import QSize

        return QSize(480, 240)

    def set_model(self, summary: ModelSummary) -> None:
        self.target.clear()
        self.minus.clear()
        self.minus.addItem("nothing", None)
        self.minus.addItem("the mean of all others", "others")
        for label in summary.labels:
            self.target.addItem(label, label)
            self.minus.addItem(label, label)
        self.channels.clear()
        if summary.front_end_kind == "stft":
            self.channels.addItem("real and imaginary", (0, 1))
            self.channels.addItem("real only", (0,))
            self.channels.addItem("imaginary only", (1,))
        else:
            self.channels.addItem("the only channel", None)
        self.channels.setEnabled(self.channels.count() > 1)
        # a step in the input's units: log-mel (dB-like), linear spectra, raw samples in [-1, 1]
        self.lr.setValue({"logmel": 0.5, "waveform": 0.02}.get(summary.front_end_kind, 0.1))
        self.patch_seconds = summary.patch_seconds

    def set_analysis(self, analysis: Analysis) -> None:
        i = self.target.findData(analysis.top[0][0]) if analysis.top else -1
        if i >= 0:
            self.target.setCurrentIndex(i)

    def options(self) -> dict:
        return {
            "target": self.target.currentData(),
            "minus": self.minus.currentData(),
            "start": self.start.currentData(),
            "update": self.update_kind.currentText(),
            "normalise_grad": self.normalise.isChecked(),
            "channels": self.channels.currentData(),
            "steps": self.steps.value(),
            "lr": self.lr.value(),
            "jitter": self.jitter.value(),
        }

    def _start(self) -> None:
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.play_button.setEnabled(False)
        self.export_button.setEnabled(False)
        self.progress.setValue(0)
        self.report.setText("starting…")
        self.start_requested.emit(self.options())

    def show_progress(self, fraction: float | None, message: str, display: np.ndarray | None) -> None:
        if fraction is not None:
            self.progress.setValue(int(1000 * fraction))
        self.report.setText(message)
        if display is not None:
            self._draw(display)

    def _draw(self, display: np.ndarray) -> None:
        self.preview_image.setImage(display, autoLevels=True)
        self.preview_image.setRect(QRectF(0, 0, self.patch_seconds, display.shape[0]))

    def finished(self, result: Dreamt | None, message: str = "") -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if result is None:  # failed or cancelled: the previous dream (if any) is back on screen
            kept = "; the previous dream is kept" if self.result is not None else ""
            self.report.setText((message or "stopped") + kept)
            if self.result is not None:
                self._draw(self.result.after)
                self.play_button.setEnabled(True)
                self.export_button.setEnabled(True)
            return
        self.result = result
        self.progress.setValue(1000 if not result.stopped else int(1000 * result.steps / max(1, result.total)))
        self._draw(result.after)
        target = self.target.currentData()
        before = result.probabilities_before.get(target)
        after = result.probabilities_after.get(target)
        change = f"; p({target}) {before:.3f} → {after:.3f}" if before is not None else ""
        stopped = f"stopped at step {result.steps}/{result.total}: " if result.stopped else ""
        self.report.setText(f"{stopped}objective {result.objective_before:.3f} → {result.objective_after:.3f}{change}")
        self.play_button.setEnabled(True)
        self.export_button.setEnabled(True)

    def export(self) -> None:
        if self.result is None:
            return
        path = ask_save_path(self, "Export dream", "dream.wav", "WAV (*.wav)")
        if path:
            from musiclens.core.audio import save

            save(path, self.result.audio, self.result.sample_rate, subtype="FLOAT")
