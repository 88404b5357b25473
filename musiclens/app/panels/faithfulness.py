"""Compare methods: how faithful each attribution method's map is, for the current file, target
and patch. Deletion and insertion AUCs against a random order of the cells (scored in the
same run), the weight-randomisation sanity check and the time each method took, in one table;
computed by the session on the worker thread (cancellable)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from musiclens.core.analyses.faithfulness import BETTER, Faithfulness
from musiclens.core.interpret import methods

#: checked at first: the common three (the table lists every audio method)
DEFAULT_METHODS = ("gradient", "integrated-gradients", "grad-cam")
COLUMNS = ("Method", "Deletion AUC ↓", "Insertion AUC ↑", "Random (del / ins)", "Sanity", "Time (s)")
HEADER_TIPS = (
    "the attribution method (a layer method's map is upsampled to the spectrogram)",
    "area under the deletion curve: the cells the map ranks highest are removed first; LOWER is better",
    "area under the insertion curve: the cells the map ranks highest are put back first; HIGHER is better",
    "the same curves for a random order of the cells, scored in the same run: the bar to beat",
    "weight-randomisation check (Adebayo et al. 2018): pass = the map changes once the model's layers "
    "are re-initialised, so it reflects what the model learned",
    "seconds to compute the method's map",
)
GOOD, BAD = QColor(20, 130, 60), QColor(190, 40, 40)
COLUMNS_OF_BOXES = 5  # the method check boxes: three rows for the table's 14 methods
BASELINES = (
    ("noisy-linear", "noisy linear (ROAD)"),
    ("mean", "the patch's mean"),
    ("silence", "silence"),
)


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def scores_line(s: Any) -> str:
    """One method's scores in words (rich text): each AUC beside the random one, ✓ when it beats it."""

    def mark(ok: bool) -> str:
        return f"<span style='color:{(GOOD if ok else BAD).name()}'>{'✓' if ok else '✗'}</span>"

    del_ok, ins_ok = s.beats_random
    return (
        f"deletion AUC <b>{_num(s.deletion_auc)}</b> (random {_num(s.random_deletion_auc)}) {mark(del_ok)}"
        f" · insertion AUC <b>{_num(s.insertion_auc)}</b> (random {_num(s.random_insertion_auc)}) {mark(ins_ok)}"
    )


class ElidedLabel(QLabel):
    """One line that ends in "…" where the panel is too narrow (the whole text in its tooltip)."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.full = ""
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long messages never widen the dock
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt naming)
        self.full = text
        self.setToolTip(text)
        super().setText(self.fontMetrics().elidedText(text, Qt.ElideRight, max(self.width(), 40)))

    def text(self) -> str:
        return self.full

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        super().setText(self.fontMetrics().elidedText(self.full, Qt.ElideRight, max(self.width(), 40)))


class FaithfulnessPanel(QWidget):
    """Choose methods and settings, press Compare; the table fills when the job ends."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: Any = None
        self.context: Callable[[], tuple[str | None, str | None, int]] | None = None
        self.job: Any = None
        self.result: Faithfulness | None = None
        self.caption = QLabel("Open a recording, choose a target in “CAM and saliency”, then compare.")
        self.caption.setWordWrap(True)
        self.choices: dict[str, QCheckBox] = {}
        boxes = QGridLayout()
        boxes.setHorizontalSpacing(12)
        boxes.setVerticalSpacing(2)
        for i, m in enumerate(methods.select(kind="audio")):
            box = QCheckBox(m.label)
            box.setToolTip(m.description)
            box.setChecked(m.name in DEFAULT_METHODS)
            self.choices[m.name] = box
            boxes.addWidget(box, i // COLUMNS_OF_BOXES, i % COLUMNS_OF_BOXES)
        self.steps = QSpinBox()
        self.steps.setRange(2, 64)
        self.steps.setValue(10)
        self.steps.setToolTip("points on each curve besides the start")
        self.cells = QComboBox()
        for text in ("8x16", "4x8", "16x32", "96x8"):
            self.cells.addItem(text, text)
        self.cells.setToolTip("bins x frames: the time-frequency cells removed or put back together")
        self.baseline = QComboBox()
        for key, text in BASELINES:
            self.baseline.addItem(text, key)
        self.baseline.setToolTip("what a removed cell becomes")
        self.sanity = QCheckBox("sanity check")
        self.sanity.setChecked(True)
        self.sanity.setToolTip(
            "re-initialise every layer, output first, and see if each map changes (one map per layer: slow)"
        )
        self.run_button = QPushButton("Compare")
        self.run_button.clicked.connect(self.compare)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = ElidedLabel("")
        settings = QHBoxLayout()  # the settings and the buttons on one row: the table gets the height
        for label, w in (("cells", self.cells), ("steps", self.steps), ("baseline", self.baseline)):
            settings.addWidget(QLabel(label))
            settings.addWidget(w)
        for w in (self.sanity, self.run_button, self.cancel_button):
            settings.addWidget(w)
        settings.addWidget(self.status, 1)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for i, tip in enumerate(HEADER_TIPS):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        row = self.fontMetrics().height() + 8  # compact rows: a few methods fit a short dock
        self.table.verticalHeader().setDefaultSectionSize(row)
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + 3 * row + 4)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for i in range(1, len(COLUMNS)):
            header.setSectionResizeMode(i, QHeaderView.ResizeToContents)
        self.better = QLabel(f"{BETTER}. ✓ beats random, ✗ does not.")
        self.better.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.caption)
        layout.addLayout(boxes)
        layout.addLayout(settings)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.better)

    def attach(self, session: Any, attribution: Any, current_patch: Callable[[], int]) -> None:
        """Work with ``session``; the target and layer are those of the ``attribution`` panel
        (whose "Score this map" this panel also serves), the patch the one at the playhead."""
        self.session = session
        self.context = lambda: (
            attribution.target.currentData(),
            attribution.layer.currentText() or None,
            current_patch(),
        )
        session.recording_changed.connect(lambda _r: self.clear())
        session.model_changed.connect(lambda _s: self.clear())

        def score() -> None:
            if attribution.result is None or session.recording is None:
                return
            session.score_map(
                attribution.result,
                current_patch(),
                {k: v for k, v in self.options().items() if k != "sanity_layers"},
                attribution.set_scores,
                on_error=attribution.score_failed,
            )

        attribution.score_requested.connect(score)

    def selected(self) -> list[str]:
        return [name for name, box in self.choices.items() if box.isChecked()]

    def options(self) -> dict[str, Any]:
        from musiclens.core.interpret.faithfulness import parse_cells

        return {
            "cells": parse_cells(self.cells.currentData()),
            "steps": self.steps.value(),
            "baseline": self.baseline.currentData(),
            "sanity_layers": None if self.sanity.isChecked() else 0,
        }

    def compare(self) -> None:
        if self.session is None or self.context is None or self.session.recording is None:
            self.status.setText("open a recording first")
            return
        target, layer, patch = self.context()
        chosen = self.selected()
        if not target or not chosen:
            self.status.setText("choose a target and at least one method")
            return
        start = self.session.patch_audio(patch)[1]
        where = f", layer methods at {layer}" if layer and any(methods.get(n).needs_layer for n in chosen) else ""
        self.caption.setText(
            f"<b>{target}</b> at {start:.1f}–{start + self.session.summary.patch_seconds:.1f} s "
            f"(patch {patch + 1}){where}"
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("computing…")
        self.job = self.session.compare_methods(
            chosen,
            target,
            layer,
            patch,
            self.options(),
            self.set_result,
            on_progress=lambda p: self.status.setText(p.message),
            on_error=self.failed,
        )
        self.job.cancelled.connect(lambda: self._idle("cancelled"))

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _idle(self, text: str) -> None:
        self.job = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(text)

    def failed(self, message: str) -> None:
        self._idle(f"failed: {message}")

    def clear(self) -> None:
        """Another recording or model: the table no longer applies."""
        self.result = None
        self.table.setRowCount(0)
        self.caption.setText("Open a recording, choose a target in “CAM and saliency”, then compare.")

    def set_result(self, result: Faithfulness) -> None:
        self.result = result
        seconds = sum(s.seconds or 0.0 for s in result.methods)
        self._idle(f"done: {len(result.methods)} methods, maps {seconds:.1f} s")
        self.table.setRowCount(len(result.methods))
        for row, s in enumerate(result.methods):
            del_ok, ins_ok = s.beats_random
            sanity = "—" if s.sanity is None else ("pass" if s.sanity.passed else "FAIL")
            cells = [
                s.label,
                _num(s.deletion_auc),
                _num(s.insertion_auc),
                f"{_num(s.random_deletion_auc)} / {_num(s.random_insertion_auc)}",
                sanity,
                _num(s.seconds, 1),
            ]
            if s.error:
                cells[1:] = ["could not run", "", "", "", ""]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignCenter)
                if not s.error and col in (1, 2):
                    ok = del_ok if col == 1 else ins_ok
                    item.setText(f"{text} {'✓' if ok else '✗'}")
                    item.setForeground(QBrush(GOOD if ok else BAD))
                if col == 4 and s.sanity is not None:
                    item.setForeground(QBrush(GOOD if s.sanity.passed else BAD))
                    item.setToolTip(
                        f"after {s.sanity.randomised_layers} layers re-initialised: Spearman "
                        f"{_num(s.sanity.final_spearman, 2)}, SSIM {_num(s.sanity.final_ssim, 2)} "
                        f"(fails at ≥ {s.sanity.threshold:g})"
                    )
                if s.error:
                    item.setToolTip(s.error)
                self.table.setItem(row, col, item)
        self.better.setText(
            f"{BETTER}. ✓ beats random, ✗ does not. Cells {result.cells[0]}x{result.cells[1]}, "
            f"{result.steps} steps, removed cells become {dict(BASELINES)[result.baseline]}; "
            f"probability of '{result.target}' at the input {result.score:.3f}."
        )
