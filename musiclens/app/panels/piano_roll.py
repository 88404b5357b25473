"""Piano roll: MIDI notes coloured by saliency, editing with undo, live re-classification, flips.

The notes live in a :class:`~musiclens.core.midi_edit.NoteEditor` (pure Python, undo/redo,
JSON recovery). This panel draws them (:class:`NotesItem`, one pyqtgraph GraphicsObject),
turns mouse and keyboard input into editor commands, and asks the session for the model's
output after each edit (debounced; superseded jobs are cancelled). Nothing is computed
here: classification, saliency, flips and synthesis run in the worker.

Mouse: drag a note to move it (time and pitch; every selected note moves), drag its right
edge to resize, click to select (Ctrl+click adds), Shift+drag on empty space to select a
rectangle, double-click on empty space to add a note, drag empty space to scroll, wheel to
zoom. Keys: Delete, Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y), Ctrl+C / Ctrl+V (at the last click),
Ctrl+A, Up/Down (semitone), Left/Right (one grid step).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QKeySequence, QPainter, QPen, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.panels.common import ask_save_path, save_table, small_tick_font
from musiclens.app.paths import data_home
from musiclens.app.session import MIDI_CLASSIFY_JOB, MIDI_FLIP_JOB
from musiclens.core.midi_edit import Clipboard, Note, NoteEditor, diff_notes, snap

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FEATURE_CHOICES = (("all features", None), ("pitch", 0), ("step", 1), ("duration", 2))
SNAP_CHOICES = (
    ("snap: 1/16", 0.25),
    ("snap: 1/8", 0.5),
    ("snap: beat", 1.0),
    ("snap: 1/32", 0.125),
    ("snap: off", 0.0),
)
DEBOUNCE_MS = 120
SALIENCY_DECADES = 3.0  # colour scale: log10, from max / 1000 (dark) to max (bright)


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


def recovery_path() -> Path:
    """``$MUSICLENS_RECOVERY`` or ``recovery.json`` in the data folder (musiclens.app.paths)."""
    env = os.environ.get("MUSICLENS_RECOVERY")
    return Path(env) if env else data_home() / "recovery.json"


class KeyboardAxis(pg.AxisItem):
    """Left axis: pitch rows named like C4 (every semitone when zoomed in, else every C)."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802
        lo, hi = max(int(np.ceil(minVal)), 0), min(int(np.floor(maxVal)), 127)
        rows = max(hi - lo, 1)
        step = next((s for s in (1, 2, 3, 4, 6, 12, 24) if rows / s * 14 <= size), 24)
        return [(step, [p for p in range(lo, hi + 1) if p % step == 0])]  # one level: all labelled

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        return [note_name(v) if 0 <= v <= 127 else "" for v in values]


class BeatAxis(pg.AxisItem):
    """Top axis: time in beats (the bottom axis is seconds)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.beat = 0.5

    def tickValues(self, minVal, maxVal, size):  # noqa: N802
        beats = (maxVal - minVal) / self.beat
        every = next((e for e in (1, 2, 4, 8, 16, 32, 64, 128) if beats / e <= size / 40), 256)
        first = int(np.ceil(minVal / self.beat / every)) * every
        vals = [b * self.beat for b in range(first, int(maxVal / self.beat) + 1, every)]
        return [(every * self.beat, vals)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        return [f"{v / self.beat + 1:g}" for v in values]  # beats counted from 1


class NotesItem(pg.GraphicsObject):
    """All notes as rectangles (pitch row ± 0.5), the beat grid, selection and a flip overlay."""

    def __init__(self, panel: PianoRollPanel) -> None:
        super().__init__()
        self.panel = panel
        self.colors: list[QColor] = []
        self.preview: tuple[float, int, float] | None = None  # (dt, dpitch, dduration) while dragging
        self.band: QRectF | None = None
        self.proposal = None  # (current Notes, proposed Notes, diff)
        self._drag = None

    # ------------------------------------------------------------------ drawing
    def boundingRect(self) -> QRectF:  # noqa: N802
        ed = self.panel.editor
        end = float(ed.notes.end.max()) if ed is not None and len(ed) else 10.0
        others = self.panel.others
        if others is not None and len(others):
            end = max(end, float(others.end.max()))
        if self.proposal is not None and len(self.proposal[1]):
            end = max(end, float(self.proposal[1].end.max()))
        return QRectF(0, -0.5, end + 4.0, 128.0)

    def paint(self, p: QPainter, *args) -> None:
        ed = self.panel.editor
        if ed is None:
            return
        rect = self.boundingRect()
        view = self.getViewBox()
        shown = view.viewRect() if view is not None else rect
        t0, t1 = max(shown.left(), 0.0), min(shown.right(), rect.right())
        beat = ed.beat
        grid = QPen(QColor(90, 90, 90, 110), 0)
        bar = QPen(QColor(140, 140, 140, 160), 0)
        if beat > 0 and (t1 - t0) / beat < 2000:
            for b in range(int(t0 / beat), int(t1 / beat) + 2):
                p.setPen(bar if b % 4 == 0 else grid)
                p.drawLine(QPointF(b * beat, -0.5), QPointF(b * beat, 127.5))
        p.setPen(QPen(QColor(110, 110, 110, 90), 0))
        for c in range(0, 128, 12):
            p.drawLine(QPointF(t0, c - 0.5), QPointF(t1, c - 0.5))
        others = self.panel.others
        if others is not None and len(others):  # tracks the model does not read: kept, not editable
            p.setPen(Qt.NoPen)
            p.setBrush(QBrush(QColor(200, 200, 200, 150), Qt.Dense3Pattern))
            least = 4 * self.pixelWidth()  # drum hits are short: at least a few pixels wide
            for s, d, pitch in zip(others.start.tolist(), others.duration.tolist(), others.pitch.tolist()):
                if s <= t1 and s + d >= t0:
                    p.drawRect(QRectF(s, pitch - 0.3, max(d, least), 0.6))
        notes, ids = ed.notes, ed.ids
        sel = self.panel.selection
        outline = QPen(QColor(20, 20, 20), 0)
        chosen = QPen(QColor(53, 224, 255), 0)
        chosen.setWidthF(2.0)
        chosen.setCosmetic(True)
        dt, dp, dd = self.preview or (0.0, 0, 0.0)
        for row in range(len(notes)):
            s, d, pitch = float(notes.start[row]), float(notes.duration[row]), int(notes.pitch[row])
            if s > t1 or s + d < t0:
                continue
            selected = int(ids[row]) in sel
            if selected and self.preview is not None:
                s, pitch, d = s + dt, pitch + dp, max(d + dd, 1e-3)
            p.setPen(chosen if selected else (outline if row < self.panel.window_notes else Qt.NoPen))
            p.setBrush(QBrush(self.colors[row] if row < len(self.colors) else QColor("#4c9be8")))
            p.drawRect(QRectF(s, pitch - 0.42, d, 0.84))
        if self.proposal is not None:
            self._paint_proposal(p)
        if self.band is not None:
            p.setPen(QPen(QColor(53, 224, 255), 0, Qt.DashLine))
            p.setBrush(QBrush(QColor(53, 224, 255, 40)))
            p.drawRect(self.band)

    def _paint_proposal(self, p: QPainter) -> None:
        current, proposed, diff = self.proposal
        gone = QPen(QColor(255, 80, 80), 0, Qt.DashLine)
        gone.setWidthF(1.5)
        gone.setCosmetic(True)
        p.setBrush(Qt.NoBrush)
        p.setPen(gone)
        for i in [a for a, _ in diff["moved"]] + list(diff["removed"]):  # where notes were
            p.drawRect(QRectF(float(current.start[i]), int(current.pitch[i]) - 0.42, float(current.duration[i]), 0.84))
        p.setPen(QPen(QColor(30, 30, 30), 0))
        p.setBrush(QBrush(QColor(255, 170, 40, 230)))  # moved: orange
        for _, j in diff["moved"]:
            p.drawRect(
                QRectF(float(proposed.start[j]), int(proposed.pitch[j]) - 0.42, float(proposed.duration[j]), 0.84)
            )
        p.setBrush(QBrush(QColor(70, 220, 90, 230)))  # added: green
        for j in diff["added"]:
            p.drawRect(
                QRectF(float(proposed.start[j]), int(proposed.pitch[j]) - 0.42, float(proposed.duration[j]), 0.84)
            )
        link = QPen(QColor(255, 170, 40, 200), 0)
        p.setPen(link)
        for i, j in diff["moved"]:
            p.drawLine(
                QPointF(float(current.start[i]), float(current.pitch[i])),
                QPointF(float(proposed.start[j]), float(proposed.pitch[j])),
            )

    # ------------------------------------------------------------------ mouse
    def _hit(self, pos: QPointF) -> tuple[int | None, bool]:
        ed = self.panel.editor
        if ed is None:
            return None, False
        i = ed.at(pos.x(), pos.y())
        if i is None:
            return None, False
        n = ed.note(i)
        edge = max(6 * self.pixelWidth(), 0.0)
        return i, pos.x() >= n.end - min(edge, n.duration * 0.4)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() != Qt.LeftButton or self.panel.editor is None:
            ev.ignore()
            return
        ev.accept()
        pos = ev.pos()
        self.panel.cursor_time = max(0.0, float(snap(pos.x(), self.panel.grid())))
        hit, _ = self._hit(pos)
        if ev.double() and hit is None:
            self.panel.add_note(self.panel.cursor_time, int(round(pos.y())))
            return
        ctrl = bool(ev.modifiers() & Qt.ControlModifier)
        if hit is None:
            if not ctrl:
                self.panel.set_selection(set())
        elif ctrl:
            self.panel.set_selection(self.panel.selection ^ {hit})
        else:
            self.panel.set_selection({hit})

    def mouseDragEvent(self, ev) -> None:  # noqa: N802
        panel = self.panel
        if ev.button() != Qt.LeftButton or panel.editor is None:
            ev.ignore()
            return
        if ev.isStart():
            start = ev.buttonDownPos()
            hit, edge = self._hit(start)
            if hit is None:
                if ev.modifiers() & Qt.ShiftModifier:
                    self._drag = ("band", start, None, False)
                else:
                    self._drag = None
                    ev.ignore()  # the view scrolls
                    return
            else:
                if hit not in panel.selection:
                    panel.set_selection({hit})
                self._drag = ("resize" if edge else "move", start, hit, False)
        if self._drag is None:
            ev.ignore()
            return
        ev.accept()
        kind, start, hit, _ = self._drag
        pos = ev.pos()
        if kind == "band":
            self.band = QRectF(start, pos).normalized()
            if ev.isFinish():
                ids = panel.editor.in_rect(start.x(), pos.x(), start.y(), pos.y())
                self.band = None
                panel.set_selection(set(ids) | (panel.selection if ev.modifiers() & Qt.ControlModifier else set()))
            self.update()
            return
        n = panel.editor.note(hit)
        grid = panel.grid()
        if kind == "move":
            new_start = max(0.0, float(snap(n.start + pos.x() - start.x(), grid)))
            dt, dp = new_start - n.start, int(round(pos.y() - start.y()))
            self.preview = (dt, dp, 0.0)
        else:
            new_end = float(snap(n.end + pos.x() - start.x(), grid))
            if new_end <= n.start:
                new_end = n.start + (grid or 0.01)
            self.preview = (0.0, 0, new_end - n.end)
        if ev.isFinish():
            dt, dp, dd = self.preview
            self.preview = None
            self._drag = None
            if kind == "move":
                panel.apply(lambda ed: ed.move(panel.selection, dt, dp))
            else:
                panel.apply(lambda ed: ed.resize(panel.selection, dd))
        self.update()


class PianoRollPanel(QWidget):
    """The piano-roll dock. Call :meth:`attach` once with the session and the window's player."""

    status = Signal(str)
    classified = Signal(object)  # MidiClassified, after the view shows it
    flip_ready = Signal(object)  # MidiFlip proposal shown
    edited = Signal()
    opened = Signal(object)  # Path of a MIDI file now shown
    train_requested = Signal()  # "Train on a folder of your own…": the window shows the Training panel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = None
        self._play = None
        self.editor: NoteEditor | None = None
        self.others = None  # Notes of the file's tracks the model does not read (drawn, kept, not edited)
        self.labels: list[str] = []
        self.model_name = ""  # the MIDI model that read the file shown (the bundled one, or a study's, a trained one)
        self.window_notes = 100
        self.selection: set[int] = set()
        self.clipboard = Clipboard()
        self.cursor_time = 0.0
        self.result = None  # the MidiClassified shown
        self.scope_result: dict | None = None  # how far the piece lies from the training pieces
        self.summary_text = ""
        self.proposal = None  # a MidiFlip waiting for accept/reject
        self.play_label = ""
        self.edit_times: dict[int, float] = {}  # revision -> time of the edit (latency)
        self.last_latency_s: float | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.reclassify)

        # ---- toolbar
        self.target = QComboBox()
        self.target.setToolTip("Colour notes by the saliency for this class")
        self.target.currentIndexChanged.connect(lambda _: self.schedule(0))
        self.feature = QComboBox()
        for text, value in FEATURE_CHOICES:
            self.feature.addItem(text, value)
        self.feature.setToolTip(
            "Saliency of which note feature: pitch, step (time since the previous note) "
            "or duration; or all (the sum: of magnitudes, or signed for a signed method such as note presence)"
        )
        self.feature.currentIndexChanged.connect(lambda _: self.recolor())
        self.snap_box = QComboBox()
        for text, value in SNAP_CHOICES:
            self.snap_box.addItem(text, value)
        self.velocity = QSpinBox()
        self.velocity.setRange(1, 127)
        self.velocity.setValue(90)
        self.velocity.setPrefix("vel ")
        self.velocity.setToolTip("Velocity of the selected notes (and of new notes)")
        self.velocity.editingFinished.connect(self._velocity_changed)
        self.undo_button = QPushButton("↶")
        self.undo_button.setToolTip("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("↷")
        self.redo_button.setToolTip("Redo (Ctrl+Shift+Z)")
        self.redo_button.clicked.connect(self.redo)
        self.play_button = QPushButton("▶ Play MIDI")
        self.play_button.clicked.connect(self.play)
        self.flip_target = QComboBox()
        self.flip_button = QPushButton("Flip to class…")
        self.flip_button.setToolTip(
            "Find a small change to the notes the model reads that makes it "
            "predict the chosen class (input optimisation, in the background)"
        )
        self.flip_button.clicked.connect(lambda: self.propose_flip(self.flip_target.currentText()))
        self.save_button = QPushButton("Save .mid…")
        self.save_button.clicked.connect(
            lambda: self._ask_and(self.save_midi, "Save MIDI", "edited.mid", "MIDI (*.mid *.midi)")
        )
        self.png_button = QPushButton("PNG…")
        self.png_button.clicked.connect(
            lambda: self._ask_and(self.export_png, "Export the note map", "piano-roll.png", "PNG (*.png)")
        )
        self.csv_button = QPushButton("CSV…")
        self.csv_button.clicked.connect(
            lambda: self._ask_and(self.export_csv, "Export the notes", "notes.csv", "CSV (*.csv)")
        )
        # two rows (what the colours show and the flip; editing and files), so the dock fits
        # a 1280 px laptop screen beside the predictions
        top = QHBoxLayout()
        for w in (QLabel("saliency for"), self.target, self.feature):
            top.addWidget(w)
        # the scope in a word where it is always seen (the whole sentence in its tooltip and in
        # the side texts, which scroll out of sight on a 1280x800 screen); clipped, never widening
        self.scope_badge = QLabel("")
        self.scope_badge.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        top.addWidget(self.scope_badge, 1)
        for w in (self.flip_target, self.flip_button):
            top.addWidget(w)
        tools = QHBoxLayout()
        for w in (self.snap_box, self.velocity, self.undo_button, self.redo_button, self.play_button):
            tools.addWidget(w)
        tools.addStretch(1)
        for w in (self.save_button, self.png_button, self.csv_button):
            tools.addWidget(w)

        # ---- restore bar and proposal bar
        self.restore_bar = QFrame()
        self.restore_bar.setStyleSheet("QFrame { background: #4a3b12; border-radius: 3px; }")
        rb = QHBoxLayout(self.restore_bar)
        rb.setContentsMargins(6, 2, 6, 2)
        self.restore_label = QLabel("")
        self.restore_label.setWordWrap(True)  # a long file name must not widen the window
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(self.restore_recovery)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard_recovery)
        rb.addWidget(self.restore_label, 1)
        rb.addWidget(self.restore_button)
        rb.addWidget(self.discard_button)
        self.restore_bar.hide()

        self.proposal_bar = QFrame()
        self.proposal_bar.setStyleSheet("QFrame { background: #173a4a; border-radius: 3px; }")
        pb = QHBoxLayout(self.proposal_bar)
        pb.setContentsMargins(6, 2, 6, 2)
        self.proposal_label = QLabel("")
        self.proposal_label.setWordWrap(True)
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(self.accept_flip)
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(self.reject_flip)
        pb.addWidget(self.proposal_label, 1)
        pb.addWidget(self.accept_button)
        pb.addWidget(self.reject_button)
        self.proposal_bar.hide()

        # ---- the roll
        self.beat_axis = BeatAxis("top")
        self.plot = pg.PlotWidget(axisItems={"left": KeyboardAxis("left"), "top": self.beat_axis})
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("top", "beat")
        self.plot.showAxis("top")
        self.plot.setLabel("left", "pitch")
        self.view = self.plot.getViewBox()
        self.view.setLimits(xMin=-1, yMin=-1, yMax=129)
        self.view.setMouseEnabled(x=True, y=True)
        self.items = NotesItem(self)
        self.plot.addItem(self.items)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#35e0ff", width=1))
        self.plot.addItem(self.playhead)
        self.window_line = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#ff5050", width=1, style=Qt.DashLine))
        self.window_line.hide()
        self.plot.addItem(self.window_line)

        # ---- probabilities
        self.bars_plot = pg.PlotWidget()
        self.bars_plot.setMenuEnabled(False)
        self.bars_plot.setMouseEnabled(x=False, y=False)
        self.bars_plot.setXRange(0, 1)
        self.bars_plot.setLabel("bottom", "probability")
        small_tick_font(self.bars_plot)
        self.bars = pg.BarGraphItem(x0=[], y=[], height=0.35, width=[], brush="#4c9be8")
        self.after_bars = pg.BarGraphItem(x0=[], y=[], height=0.35, width=[], brush="#ffaa28")
        self.bars_plot.addItem(self.bars)
        self.bars_plot.addItem(self.after_bars)
        self.summary = QLabel("Open a MIDI file (File ▸ Open or drop it on the window).")
        self.summary.setWordWrap(True)
        # the model's scope: how far this piece lies from what the model was trained on
        self.scope = QLabel("")
        self.scope.setWordWrap(True)
        self.train_own = QPushButton("Train on a folder of your own…")
        self.train_own.setToolTip("a folder of <label>/*.mid: the Training panel trains a model for your music")
        self.train_own.clicked.connect(self.train_requested)
        # the texts scroll when the dock is short (1280x800): never cut off under the plot
        texts = QWidget()
        tl = QVBoxLayout(texts)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.summary)
        tl.addWidget(self.scope)
        tl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(texts)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumHeight(30)
        self.bars_plot.setMinimumHeight(60)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(QLabel("MIDI predictions"))
        sl.addWidget(self.bars_plot, 2)
        sl.addWidget(scroll, 3)
        sl.addWidget(self.train_own)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(side)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([900, 260])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addLayout(tools)
        layout.addWidget(self.restore_bar)
        layout.addWidget(self.proposal_bar)
        self.reads_label = QLabel("")  # which notes the model reads (and which tracks it does not)
        self.reads_label.setWordWrap(True)
        layout.addWidget(self.reads_label)
        layout.addWidget(split, 1)

        # undo/redo anywhere in the panel; keys that also edit text (Delete, arrows, copy/paste)
        # only on the roll itself, so the velocity box and the combo boxes keep them
        for keys, slot in ((QKeySequence.Undo, self.undo), ("Ctrl+Shift+Z", self.redo), ("Ctrl+Y", self.redo)):
            QShortcut(QKeySequence(keys), self, activated=slot, context=Qt.WidgetWithChildrenShortcut)
        for keys, slot in (
            (QKeySequence.Delete, self.delete_selected),
            (Qt.Key_Backspace, self.delete_selected),
            (QKeySequence.Copy, self.copy),
            (QKeySequence.Paste, self.paste),
            (QKeySequence.SelectAll, self.select_all),
            (Qt.Key_Up, lambda: self.nudge(0, 1)),
            (Qt.Key_Down, lambda: self.nudge(0, -1)),
            (Qt.Key_Left, lambda: self.nudge(-1, 0)),
            (Qt.Key_Right, lambda: self.nudge(1, 0)),
        ):
            QShortcut(QKeySequence(keys), self.plot, activated=slot, context=Qt.WidgetWithChildrenShortcut)
        self._enable(False)

    def sizeHint(self):  # noqa: N802
        from PySide6.QtCore import QSize

        return QSize(1000, 600)

    # ------------------------------------------------------------------ wiring
    def attach(self, session, player, play) -> None:
        """``play(audio, sr, label)`` plays through the window (which keeps one playhead offset)."""
        self.session, self._play = session, play
        player.position_changed.connect(
            lambda s: self.playhead.setValue(s) if player.label == self.play_label and self.play_label else None
        )

    def _enable(self, on: bool) -> None:
        for w in (
            self.undo_button,
            self.redo_button,
            self.play_button,
            self.flip_button,
            self.save_button,
            self.png_button,
            self.csv_button,
            self.velocity,
        ):
            w.setEnabled(on)
        if on and self.editor is not None:
            self.undo_button.setEnabled(bool(self.editor.undo_stack))
            self.redo_button.setEnabled(bool(self.editor.redo_stack))

    def grid(self) -> float:
        """Snap grid in seconds (0 = off)."""
        beats = float(self.snap_box.currentData() or 0.0)
        return beats * self.editor.beat if self.editor is not None else 0.0

    # ------------------------------------------------------------------ opening
    def open_file(self, path: str | Path, on_error=None) -> None:
        path = Path(path)
        self.summary.setText(f"reading {path.name}…")

        def failed(message: str) -> None:
            self.summary.setText(f"⚠ {message}")
            if on_error:
                on_error(message)

        def opened(o) -> None:
            self.model_name = o.model
            self.set_editor(NoteEditor(o.notes, source=o.path), o.labels, o.window, repairs=o.repairs)
            self.opened.emit(o.path)
            self.scope.setText("")
            self.scope_badge.setText("")
            self.session.midi_scope(o.notes, self.show_scope)  # the notes read: no second reading

        self.session.open_midi(path, opened, on_error=failed)

    def show_scope(self, scope: dict | None) -> None:
        """Say whether the piece looks like the model's training pieces (``training_distance``)."""
        self.scope_result = scope
        if scope is None:
            badge, sentence = (
                "scope unknown",
                "This model keeps no statistics of its training pieces: its scope is unknown.",
            )
        elif scope["outside"]:
            badge, sentence = (
                "⚠ outside its training pieces",
                f"⚠ Outside this model's training pieces: distance {scope['distance']:.1f} "
                f"(95 % of them ≤ {scope['training_p95']:.1f}; farthest: {', '.join(scope['farthest'])}). "
                "Its answer here is a guess.",
            )
        else:
            badge, sentence = (
                "like its training pieces",
                f"Like this model's training pieces (distance {scope['distance']:.1f} ≤ {scope['training_p95']:.1f}).",
            )
        warn = scope is None or scope["outside"]
        self.scope.setText(sentence)
        self.scope.setStyleSheet("color: #e8a33c;" if warn else "")
        self.scope_badge.setText(badge)
        self.scope_badge.setToolTip(f"<p>{html.escape(sentence)}</p>")  # rich text: wrapped
        self.scope_badge.setStyleSheet("color: #e8a33c;" if warn else "color: gray;")

    def set_editor(self, editor: NoteEditor, labels: list[str], window: int = 100, *, repairs=()) -> None:
        from musiclens.core.midi import other_notes

        self.reject_flip()
        self.editor = editor
        self.others = other_notes(editor.template)
        self.labels = list(labels)
        self.window_notes = window
        self.selection = set()
        self.result = None
        self.items.colors = []
        for box in (self.target, self.flip_target):
            box.blockSignals(True)
            box.clear()
            box.addItems(self.labels)
            box.blockSignals(False)
        self.target.insertItem(0, "top class", None)
        self.target.setCurrentIndex(0)
        ticks = [[(i, lab) for i, lab in enumerate(self.labels)]]
        self.bars_plot.getAxis("left").setTicks(ticks)
        self.bars_plot.setYRange(-0.6, len(self.labels) - 0.4)
        # one line of the axis's small text per class and the probability axis: shorter,
        # pyqtgraph draws the class names over each other (capped: a model with many
        # classes scrolls its names rather than pushing the window past a laptop screen)
        self.bars_plot.setMinimumHeight(min(160, max(60, 14 * len(self.labels) + 34)))
        self.beat_axis.beat = editor.beat
        self._enable(True)
        self._refresh_view(fit=True)
        name = Path(editor.source).name if editor.source else "piece"
        fixed = f" (repaired: {'; '.join(repairs)})" if repairs else ""
        self.summary.setText(f"{name}: {len(editor)} notes, the model reads the first {window}{fixed}")
        self.reads_label.setText(self.reads_text())
        self.schedule(0)

    def _refresh_view(self, fit: bool = False) -> None:
        ed = self.editor
        notes = ed.notes
        k = min(self.window_notes, len(notes))
        if k and k < len(notes):
            self.window_line.setValue(float(notes.start[k]) if k < len(notes) else float(notes.end.max()))
            self.window_line.show()
        else:
            self.window_line.hide()
        self.recolor()
        self.items.prepareGeometryChange()
        self.items.update()
        if fit and len(notes):
            k_end = float(notes.end[: max(k, 1)].max())
            lo, hi = int(notes.pitch.min()), int(notes.pitch.max())
            self.view.setRange(xRange=(0, max(k_end, 4 * ed.beat)), yRange=(lo - 3, hi + 3), padding=0.02)
        self.undo_button.setEnabled(bool(ed.undo_stack))
        self.redo_button.setEnabled(bool(ed.redo_stack))
        self.reads_label.setText(self.reads_text())

    def model_reads(self) -> np.ndarray:
        """Per row of ``editor.notes``: True for the notes the model reads (the first N)."""
        n = len(self.editor) if self.editor is not None else 0
        return np.arange(n) < self.window_notes

    def reads_text(self) -> str:
        """ "The model reads notes 1–100 of 2930 …; 1019 drum notes … kept, not read"."""
        if self.editor is None:
            return ""
        n = len(self.editor)
        k = min(self.window_notes, n)
        who = f"The model {self.model_name}" if self.model_name else "The model"  # which model reads it
        text = (
            f"{who} reads notes 1–{k} of {n} (left of the dashed red line; the later notes are drawn faded)."
            if k < n
            else f"{who} reads all {n} notes."
        )
        others = self.others
        if others is not None and len(others):
            n_drum = int(others.is_drum.sum())
            what = [f"{n_drum} drum notes"] if n_drum else []
            what += [f"{len(others) - n_drum} notes of other instruments"] if len(others) > n_drum else []
            n_tracks = len({int(i) for i in np.unique(others.instrument)})
            text += (
                f" {' and '.join(what)} ({n_tracks} track{'s' if n_tracks > 1 else ''}, hatched grey) "
                "are kept in the file and played, but not read by the model or edited."
            )
        return text

    # ------------------------------------------------------------------ saliency colours
    def saliency_signed(self) -> bool:
        """Whether the shown saliency keeps its sign: the method table's ``shown_as`` of the
        method that computed it (note presence: signed, since only the signed ranking is
        faithful; the plain gradient: its magnitude)."""
        from musiclens.core.interpret import methods

        r = self.result
        m = methods.find(getattr(r, "method", "gradient")) if r is not None else None
        return bool(m is not None and m.shown_signed)

    def note_saliency(self) -> np.ndarray:
        """Per note of ``editor.notes``: the saliency for the chosen feature (NaN: not read):
        signed (the sum over the note's features, + for the class) when :meth:`saliency_signed`,
        else the magnitude."""
        n = len(self.editor) if self.editor is not None else 0
        out = np.full(n, np.nan)
        r = self.result
        if r is None or r.revision != self.editor.revision:
            return out
        f = self.feature.currentData()
        sal = np.asarray(r.saliency, dtype=np.float64)
        if not self.saliency_signed():
            sal = np.abs(sal)
        vals = sal.sum(axis=1) if f is None else sal[:, f]
        out[: len(vals)] = vals[:n]
        return out

    def note_levels(self, vals: np.ndarray) -> np.ndarray:
        """Per note: where its colour lies on the colour map, in [0, 1] (NaN stays NaN).

        Log scale over :data:`SALIENCY_DECADES` below the largest magnitude (a recurrent model's
        gradients fall off by orders of magnitude towards the first notes; a linear scale shows
        one note only). Signed: a diverging scale, 0.5 = no effect, 1 = the most for the class,
        0 = the most against it; unsigned: 0.05 (dark) .. 1 (the largest)."""
        finite = np.abs(vals[np.isfinite(vals)])
        top = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.clip((np.log10(np.maximum(np.abs(vals), 1e-30) / top) + SALIENCY_DECADES) / SALIENCY_DECADES, 0, 1)
        if self.saliency_signed():
            return np.where(np.isfinite(vals), 0.5 + 0.5 * np.sign(vals) * mag, np.nan)
        return np.where(np.isfinite(vals), 0.05 + 0.95 * mag, np.nan)

    def recolor(self) -> None:
        if self.editor is None:
            return
        vals = self.note_saliency()
        signed = self.saliency_signed()
        cmap = pg.colormap.get("CET-D8" if signed else "plasma")  # blue (against) - dark grey - red (for)
        colors = []
        for level in self.note_levels(vals):
            if np.isfinite(level):
                c = cmap.map(float(level), mode="qcolor")
            else:
                c = QColor(150, 150, 150) if self.result is not None else QColor("#4c9be8")
            if len(colors) >= self.window_notes:  # not read by the model: faded
                c = QColor(c)
                c.setAlpha(70)
            colors.append(c)
        self.items.colors = colors
        self.items.update()

    def legend_text(self) -> str:
        """What the colours mean, for the summary under the probabilities."""
        r = self.result
        if r is None:
            return ""
        from musiclens.core.interpret import methods

        name, label = r.labels[r.target], methods.label(getattr(r, "method", "gradient"))
        if self.saliency_signed():
            return (
                f"colour: {label} for {name}, signed: red = the note speaks for {name} (deleting it would "
                f"lower its score), blue = against it, grey = no effect; log scale (strongest ≥ max/1000)"
            )
        return f"colour: |{label}| for {name}, log scale (bright = max, dark ≤ max/1000)"

    # ------------------------------------------------------------------ editing
    def apply(self, fn) -> None:
        """Run an editor command, then redraw, autosave and re-classify."""
        if self.editor is None:
            return
        before = self.editor.revision
        fn(self.editor)
        if self.editor.revision != before:
            self._after_edit()

    def _after_edit(self) -> None:
        if self.proposal is not None:  # a proposal is for the notes before this edit
            self.reject_flip()
        self.edit_times[self.editor.revision] = time.perf_counter()
        self.selection &= {int(i) for i in self.editor.ids}
        self._refresh_view()
        self.autosave()
        self.edited.emit()
        self.schedule()

    def set_selection(self, ids: set[int]) -> None:
        self.selection = set(ids)
        if len(self.selection) == 1 and self.editor is not None:
            self.velocity.setValue(self.editor.note(next(iter(self.selection))).velocity)
        self.items.update()

    def select_all(self) -> None:
        if self.editor is not None:
            self.set_selection({int(i) for i in self.editor.ids})

    def add_note(self, start: float, pitch: int, duration: float | None = None) -> list[int]:
        if self.editor is None:
            return []
        dur = duration or (self.grid() or self.editor.beat / 2)
        ids: list[int] = []
        self.apply(lambda ed: ids.extend(ed.add([Note(pitch, start, dur, self.velocity.value(), 0)])))
        self.set_selection(set(ids))
        return ids

    def delete_selected(self) -> None:
        self.apply(lambda ed: ed.delete(self.selection))

    def nudge(self, steps: int, semitones: int) -> None:
        if self.selection:
            dt = steps * (self.grid() or (self.editor.beat / 4 if self.editor else 0.1))
            self.apply(lambda ed: ed.move(self.selection, dt, semitones))

    def _velocity_changed(self) -> None:
        if self.selection:
            self.apply(lambda ed: ed.set_velocity(self.selection, self.velocity.value()))

    def copy(self) -> None:
        if self.editor is not None and self.selection:
            self.clipboard = self.editor.copy(self.selection)
            self.status.emit(f"copied {len(self.clipboard.notes)} note(s)")

    def paste(self) -> None:
        if self.editor is not None and self.clipboard:
            ids: list[int] = []
            self.apply(lambda ed: ids.extend(ed.paste(self.clipboard, self.cursor_time)))
            self.set_selection(set(ids))

    def undo(self) -> None:
        self.apply(lambda ed: ed.undo())

    def redo(self) -> None:
        self.apply(lambda ed: ed.redo())

    # ------------------------------------------------------------------ recovery
    def autosave(self) -> None:
        from musiclens.core.midi_edit import write_recovery

        try:
            write_recovery(self.editor, recovery_path())
        except OSError as exc:
            self.status.emit(f"⚠ cannot write the recovery file: {exc}")

    def offer_restore(self) -> bool:
        """Show the (non-modal) restore bar if a recovery file exists."""
        from musiclens.core.midi_edit import recovery_summary

        path = recovery_path()
        text = recovery_summary(path) if path.is_file() else None
        if text is None:
            return False
        self.restore_label.setText(f"Unsaved piano-roll edits were recovered: {text}.")
        self.restore_bar.show()
        return True

    def restore_recovery(self) -> None:
        from musiclens.core.errors import MusicLensError
        from musiclens.core.midi_edit import read_recovery
        from musiclens.core.resources import DEFAULT_MIDI_MODEL

        self.restore_bar.hide()
        try:
            editor = read_recovery(recovery_path())
        except MusicLensError as exc:
            self.status.emit(f"⚠ {exc}")
            return
        labels = self.labels
        if not labels:  # the labels come with the model: read them from its model.json
            import json

            from musiclens.core.models.midi_lstm import midi_model_folder

            labels = json.loads((midi_model_folder(DEFAULT_MIDI_MODEL) / "model.json").read_text())["labels"]
        self.set_editor(editor, labels, self.window_notes)
        self.status.emit(f"restored {len(editor.undo_stack)} edit(s)")

    def discard_recovery(self) -> None:
        self.restore_bar.hide()
        recovery_path().unlink(missing_ok=True)

    # ------------------------------------------------------------------ classification
    def schedule(self, delay_ms: int | None = None) -> None:
        """Re-classify after ``delay_ms`` (debounced: a new edit restarts the wait)."""
        if self.editor is None or self.session is None:
            return
        self._timer.start(DEBOUNCE_MS if delay_ms is None else delay_ms)

    def reclassify(self) -> None:
        if self.editor is None or self.session is None or not len(self.editor):
            return
        self.session.worker.cancel_all(MIDI_CLASSIFY_JOB)  # superseded
        target = self.labels.index(self.target.currentText()) if self.target.currentIndex() > 0 else None
        self.session.midi_classify(self.editor.notes, target, self.editor.revision, self._classified)

    def _classified(self, r) -> None:
        if self.editor is None or r.revision != self.editor.revision:
            return  # an older state of the notes
        self.result = r
        edited_at = self.edit_times.pop(r.revision, None)
        if edited_at is not None:
            self.last_latency_s = time.perf_counter() - edited_at
        p = r.probabilities
        y = np.arange(len(p))
        self.bars.setOpts(x0=np.zeros(len(p)), y=y + (0.18 if self.proposal else 0.0), width=p)
        self.recolor()
        top = int(np.argmax(p))
        latency = f"; updated {self.last_latency_s * 1000:.0f} ms after the edit" if edited_at else ""
        self.summary_text = (
            f"{r.labels[top]} {p[top]:.2f} · {self.legend_text()} · {r.notes_used} notes read"
            f" ({r.elapsed_s * 1000:.0f} ms{latency}) · {len(self.editor)} notes, "
            f"{len(self.editor.undo_stack)} edit(s)"
        )
        self.summary.setText(self.summary_text)
        self.classified.emit(r)

    @property
    def probabilities(self) -> dict[str, float]:
        r = self.result
        return {} if r is None else {lab: float(v) for lab, v in zip(r.labels, r.probabilities)}

    # ------------------------------------------------------------------ flip
    def propose_flip(self, to: str, steps: int = 300) -> None:
        if self.editor is None or self.session is None:
            return
        self.reject_flip()
        self.session.worker.cancel_all(MIDI_FLIP_JOB)
        self.flip_button.setEnabled(False)
        revision = self.editor.revision
        notes = self.editor.notes

        def done(flip) -> None:
            self.flip_button.setEnabled(True)
            if self.editor is None or self.editor.revision != revision:
                self.status.emit("the notes changed while flipping: flip again")
                return
            self.show_proposal(flip)

        def failed(message: str) -> None:
            self.flip_button.setEnabled(True)
            self.proposal_label.setText(f"⚠ flip failed: {message}")

        job = self.session.midi_flip(
            notes, to, done, steps=steps, on_error=failed, on_progress=lambda p: self.summary.setText(p.message)
        )
        job.cancelled.connect(lambda: self.flip_button.setEnabled(True))

    def show_proposal(self, flip) -> None:
        r = flip.result
        current = self.editor.notes
        diff = diff_notes(current, flip.proposal)
        self.proposal = flip
        self.items.proposal = (current, flip.proposal, diff)
        self.items.prepareGeometryChange()
        self.items.update()
        pb, pa = r.probabilities_before, r.probabilities_after
        y = np.arange(len(pa))
        self.bars.setOpts(x0=np.zeros(len(pb)), y=y + 0.18, width=pb)
        self.after_bars.setOpts(x0=np.zeros(len(pa)), y=y - 0.18, width=pa)
        tgt = flip.labels[r.target]
        ok = "flips" if r.flipped else "does not flip (closest attempt)"
        self.proposal_label.setText(
            f"Flip to {tgt} {ok}: {flip.labels[r.source]} {pb[r.source]:.2f} → {tgt} {pa[r.target]:.2f} "
            f"(blue before, orange after). {len(diff['moved'])} moved (orange, dashed red = old place), "
            f"{len(diff['added'])} added (green), {len(diff['removed'])} removed (dashed red)."
        )
        self.proposal_bar.show()
        self.summary.setText(self.summary_text)
        self.flip_ready.emit(flip)

    def accept_flip(self) -> None:
        flip = self.proposal
        if flip is None:
            return
        self.reject_flip()
        tgt = flip.labels[flip.result.target]
        self.apply(lambda ed: ed.replace_all(flip.proposal, f"flip to {tgt}"))

    def reject_flip(self) -> None:
        self.proposal = None
        self.items.proposal = None
        self.proposal_bar.hide()
        self.after_bars.setOpts(x0=[], y=[], width=[])
        if self.result is not None:
            p = self.result.probabilities
            self.bars.setOpts(x0=np.zeros(len(p)), y=np.arange(len(p)), width=p)
        self.items.prepareGeometryChange()
        self.items.update()

    # ------------------------------------------------------------------ play, save, export
    def play(self) -> None:
        if self.editor is None or self.session is None:
            return
        name = Path(self.editor.source).name if self.editor.source else "piece"

        def ready(out) -> None:
            audio, sr, how = out
            self.play_label = f"{name} (MIDI, {how})"
            self._play(audio, sr, self.play_label)

        self.session.midi_audio(self.editor.notes, ready)

    def _ask_and(self, fn, title: str, default: str, filters: str) -> None:
        path = ask_save_path(self, title, default, filters)
        if path:
            fn(path)

    def save_midi(self, path: str | Path) -> Path:
        from musiclens.core.midi import write_midi

        out = write_midi(self.editor.notes, path)
        self.editor.mark_saved()
        recovery_path().unlink(missing_ok=True)
        self.status.emit(f"saved {out}")
        return out

    def export_png(self, path: str | Path) -> Path:
        self.plot.grab().save(str(path))
        self.status.emit(f"saved {path}")
        return Path(path)

    def export_csv(self, path: str | Path) -> Path:
        notes = self.editor.notes
        sal = np.full((len(notes), 3), np.nan)
        if self.result is not None and self.result.revision == self.editor.revision:
            k = min(len(self.result.saliency), len(notes))
            sal[:k] = self.result.saliency[:k, :3]  # a whole-piece model's map has 7 columns
        rows = [
            [
                i,
                note_name(int(notes.pitch[i])),
                int(notes.pitch[i]),
                f"{notes.start[i]:.6f}",
                f"{notes.start[i] / self.editor.beat:.4f}",
                f"{notes.step[i]:.6f}",
                f"{notes.duration[i]:.6f}",
                int(notes.velocity[i]),
                i < self.window_notes,
            ]
            + [f"{v:.6g}" for v in sal[i]]
            for i in range(len(notes))
        ]
        target = self.labels[self.result.target] if self.result is not None else ""
        save_table(
            Path(path),
            [
                "index",
                "name",
                "pitch",
                "start_s",
                "start_beats",
                "step_s",
                "duration_s",
                "velocity",
                "read_by_model",
                f"saliency_pitch_{target}",
                f"saliency_step_{target}",
                f"saliency_duration_{target}",
            ],
            rows,
        )
        self.status.emit(f"saved {path}")
        return Path(path)
