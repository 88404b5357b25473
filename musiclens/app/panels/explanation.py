"""Hear the explanation: the top-k % of an attribution's time-frequency cells mask the
recording ("what the model used"), the rest is "what it ignored"; both play through the
window's player, export as WAV, and show the model's probability for the target on each.

The panel asks (signals) and shows; the session computes
(:func:`musiclens.core.analyses.explanation.hear_explanation`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from musiclens.core.analyses.explanation import VERSIONS, HeardExplanation
from musiclens.core.analyses.results import Analysis, ModelSummary
from musiclens.core.interpret import methods

DEFAULT_METHOD = "integrated-gradients"
#: what each version is, for the score rows
WHAT = {
    "original": "the recording",
    "used": "what the model used",
    "ignored": "what it ignored",
}


class ExplanationPanel(QWidget):
    requested = Signal(str, str, object, float, bool, object)  # method, target, layer, top %, soft, Attribution|None
    play_requested = Signal(object, int, str, float)  # audio, rate, label, start (s)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: HeardExplanation | None = None
        self.method = QComboBox()
        for m in methods.select(kind="audio"):
            self.method.addItem(m.label, m.name)
            self.method.setItemData(self.method.count() - 1, m.description, Qt.ToolTipRole)
        i = self.method.findData(DEFAULT_METHOD)
        self.method.setCurrentIndex(max(i, 0))
        self.method.currentIndexChanged.connect(self._method_changed)
        self.target = QComboBox()
        self.target.setToolTip("classes sorted by the model's mean probability for this file")
        self.layer = QComboBox()
        self.top = QSlider(Qt.Horizontal)
        self.top.setRange(1, 100)
        self.top.setValue(20)
        self.top.setToolTip("the share of time-frequency cells with the largest positive attribution kept as 'used'")
        self.top_label = QLabel()
        self.top.valueChanged.connect(self._show_top)
        self.top.sliderReleased.connect(self._remask)
        self.soft = QCheckBox("soft mask")
        self.soft.setToolTip("weaker positive cells fade in, in proportion to their attribution")
        self.soft.toggled.connect(lambda _on: self._remask())
        self.run_button = QPushButton("Hear what the model used / ignored")
        self.run_button.clicked.connect(self._run)
        self.play_used = QPushButton("▶ Play used")
        self.play_used.clicked.connect(lambda: self._play("used"))
        self.play_ignored = QPushButton("▶ Play ignored")
        self.play_ignored.clicked.connect(lambda: self._play("ignored"))
        self.export_button = QPushButton("Export WAV…")
        self.export_button.setToolTip("used.wav and ignored.wav in a folder")
        self.export_button.clicked.connect(self.export)
        self.scores = {v: QLabel("–") for v in VERSIONS}
        self.note = QLabel("")
        self.note.setWordWrap(True)

        top_row = QHBoxLayout()
        top_row.addWidget(self.top, 1)
        top_row.addWidget(self.top_label)
        top_row.addWidget(self.soft)
        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("target", self.target)
        form.addRow("layer", self.layer)
        form.addRow("top cells", top_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.play_used)
        buttons.addWidget(self.play_ignored)
        buttons.addWidget(self.export_button)
        self.score_title = QLabel("model's probability for the target")
        scores = QFormLayout()
        for v in VERSIONS:
            scores.addRow(f"{WHAT[v]}:", self.scores[v])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addLayout(buttons)
        layout.addWidget(self.score_title)
        layout.addLayout(scores)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self._show_top(self.top.value())
        self._method_changed()
        self._enable_playback(False)

    def sizeHint(self):  # noqa: N802 (Qt naming)
        from PySide6.QtCore import QSize

        return QSize(480, 300)

    # ------------------------------------------------------------------ model, recording
    def set_model(self, summary: ModelSummary) -> None:
        self.layer.clear()
        convs = [name for name, _group, kind in summary.layers if kind == "conv"]
        self.layer.addItems(convs)  # the first conv layer by default (2-D maps in any CNN)
        self.target.clear()
        for label in summary.labels:
            self.target.addItem(label, label)
        self.clear()

    def set_analysis(self, analysis: Analysis) -> None:
        """Targets ranked by the model's mean probability; the top class is preselected."""
        self.target.clear()
        for label, p in analysis.top:
            self.target.addItem(f"{label}  ({p:.2f})", label)
        self.target.setCurrentIndex(0)

    def clear(self) -> None:
        """Forget the result (another model or recording is open)."""
        self.result = None
        for label in self.scores.values():
            label.setText("–")
        self.score_title.setText("model's probability for the target")
        self.note.setText("")
        self._enable_playback(False)

    # ------------------------------------------------------------------ asking
    def _method_changed(self) -> None:
        self.layer.setEnabled(methods.get(self.method.currentData()).needs_layer)

    def _show_top(self, value: int) -> None:
        self.top_label.setText(f"{value:3d} %")

    def _ask(self, attribution) -> None:
        method = self.method.currentData()
        layer = self.layer.currentText() or None if methods.get(method).needs_layer else None
        target = self.target.currentData()
        if target is None:
            self.note.setText("open a recording first")
            return
        self.note.setText(f"computing {self.method.currentText()} for '{target}'…")
        self.requested.emit(method, target, layer, float(self.top.value()), self.soft.isChecked(), attribution)

    def _run(self) -> None:
        self._ask(None)

    def _remask(self) -> None:
        """A new top-k or soft setting: mask again with the same attribution (fast)."""
        r = self.result
        same = (
            r is not None
            and r.method == self.method.currentData()
            and r.target == self.target.currentData()
            and (r.layer is None or r.layer == self.layer.currentText())
        )
        if same:
            self._ask(r.attribution)

    # ------------------------------------------------------------------ showing
    def set_result(self, result: HeardExplanation) -> None:
        self.result = result
        s = result.scores
        for v in VERSIONS:
            self.scores[v].setText(f"{s[v]:.3f}")
        self.score_title.setText(f"model's probability for '{result.target}'")
        where = f" at {result.layer}" if result.layer else ""
        verdict = (
            "The score stays with what was used: the map points at evidence the model relies on"
            if s["used"] > s["ignored"]
            else "The ignored part scores higher: this map misses what the model relies on"
        )
        self.note.setText(
            f"{methods.label(result.method)}{where}: top {result.top:g} % of cells "
            f"({100 * result.used_share:.1f} % used{', soft' if result.soft else ''}), "
            f"{result.start_s:.1f}–{result.end_s:.1f} s. {verdict}."
        )
        self._enable_playback(True)

    def _enable_playback(self, on: bool) -> None:
        for b in (self.play_used, self.play_ignored, self.export_button):
            b.setEnabled(on)

    def _play(self, version: str) -> None:
        r = self.result
        if r is not None:
            label = f"{version}: {r.method} for {r.target}, top {r.top:g} %"
            self.play_requested.emit(getattr(r, version), r.sample_rate, label, r.start_s)

    def export(self, folder: str | Path | None = None) -> list[Path]:
        """Write used.wav and ignored.wav into ``folder`` (asked when None); returns the paths."""
        from musiclens.core.audio import save

        r = self.result
        if r is None:
            return []
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Export used.wav and ignored.wav to a folder")
            if not folder:
                return []
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = [save(out / f"{v}.wav", getattr(r, v), r.sample_rate) for v in ("used", "ignored")]
        self.note.setText(f"saved {paths[0]} and {paths[1].name}")
        return paths
