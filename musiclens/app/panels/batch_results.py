"""File > Open batch results…: the summary.parquet of a ``musiclens batch`` run as a sortable
table (file, status, class, confidence, the attribution and activation summary numbers);
double-clicking a row opens that file in the window with the run's model (loaded first when
the window has another one).

The table is read on the GUI thread, without its list columns (top tags, probabilities):
pyarrow reads the shown columns of a 10,000-row summary in about 0.1 s (measured by
``tests/test_gui_batch.py``; 0.2 s with the lists), less than the window's other synchronous
steps; a run of hundreds of thousands of files would want the worker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from musiclens.core.analyses.batch import BatchTable, read_table

#: the table's columns shown first, with their header; then every summary number of an analysis
FIRST = (("path", "file"), ("status", "status"), ("predicted", "class"), ("confidence", "confidence"))
NUMBERS = (".mean", ".max", ".entropy", ".energy")
STATUS_COLOURS = {"error": "#e5484d", "skipped": "#8b8d98"}


def shown_columns(table: BatchTable) -> list[tuple[str, str]]:
    """(column of the table, header) of what the dialog shows, in order."""
    cols = [(c, h) for c, h in FIRST if c in table.columns]
    cols += [(c, c) for c in table.columns if c.endswith(NUMBERS)]
    if "error" in table.columns:
        cols.append(("error", "error"))
    return cols


class BatchTableModel(QAbstractTableModel):
    """The shown columns of a :class:`BatchTable`; numbers sort as numbers (``Qt.UserRole``),
    missing values last."""

    def __init__(self, table: BatchTable, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = table
        self.shown = shown_columns(table)
        self._index = [table.columns.index(c) for c, _ in self.shown]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.table.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.shown)

    def value(self, row: int, column: int) -> Any:
        return self.table.rows[row][self._index[column]]

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid():
            return None
        v = self.value(index.row(), index.column())
        if role == Qt.DisplayRole:
            if v is None:
                return ""
            if isinstance(v, float):
                return "nan" if math.isnan(v) else f"{v:.4g}"
            return str(v)
        if role == Qt.UserRole:  # the sort key
            if isinstance(v, (int, float)):
                return -math.inf if math.isnan(v) else float(v)
            return -math.inf if v is None and self._numeric(index.column()) else ("" if v is None else str(v))
        if role == Qt.ToolTipRole:
            row = self.table.rows[index.row()]
            error = row[self.table.columns.index("error")] if "error" in self.table.columns else None
            return f"{self.table.file(index.row())}" + (f"\n{error}" if error else "")
        if role == Qt.ForegroundRole and self.shown[index.column()][0] == "status":
            from PySide6.QtGui import QColor

            colour = STATUS_COLOURS.get(str(v))
            return QColor(colour) if colour else None
        if role == Qt.TextAlignmentRole and isinstance(v, (int, float)):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def _numeric(self, column: int) -> bool:
        return any(isinstance(r[self._index[column]], (int, float)) for r in self.table.rows)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.shown[section][1]
        return super().headerData(section, orientation, role)


class BatchResultsDialog(QDialog):
    """A batch run's table; ``open_requested(file, model)`` on a double-click (or Open)."""

    open_requested = Signal(Path, str)

    def __init__(self, table: BatchTable, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = table
        meta = table.metadata
        self.setWindowTitle(f"Batch results — {table.path.parent.name}")
        self.resize(900, 480)
        self.model = BatchTableModel(table, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.UserRole)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.view.verticalHeader().setVisible(False)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.doubleClicked.connect(self._open_index)
        self.view.resizeColumnsToContents()
        statuses = [r[table.columns.index("status")] for r in table.rows] if "status" in table.columns else []
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "error", "skipped") if s in statuses)
        self.summary = QLabel(
            f"{len(table.rows)} files ({counts}) · model {meta.get('model_name', meta.get('model', '?'))} · "
            f"{', '.join(meta.get('analyses', []))}\n{table.folder}"
        )
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter files…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.open_button = QPushButton("Open in the window")
        self.open_button.setToolTip("open the selected file with the batch's model (or double-click a row)")
        self.open_button.clicked.connect(lambda: self._open_index(self.view.currentIndex()))
        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)

    def row_of(self, proxy_row: int) -> int:
        """The table's row shown at ``proxy_row`` (after sorting and filtering)."""
        return self.proxy.mapToSource(self.proxy.index(proxy_row, 0)).row()

    def _open_index(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        row = self.proxy.mapToSource(index).row()
        self.open_requested.emit(self.table.file(row), str(self.table.metadata.get("model", "")))


def open_batch_results(win: Any, path: str | Path | None = None) -> BatchResultsDialog | None:
    """File > Open batch results…: ask for a summary.parquet (or take ``path``: the file or its
    folder), show its dialog (non-modal; kept as ``win.batch_results``) and connect its rows
    to :func:`open_row`."""
    if path is None:
        chosen, _ = QFileDialog.getOpenFileName(
            win, "Open batch results (musiclens batch … --out DIR)", "", "Batch results (summary.parquet *.parquet)"
        )
        if not chosen:
            return None
        path = chosen
    try:
        table = read_table(path, lists=False)  # what the table shows (measured: tests/test_gui_batch.py)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: the window's error message, no crash
        win.show_error(f"open batch results: {exc}")
        return None
    dialog = BatchResultsDialog(table, win)
    dialog.open_requested.connect(lambda file, model: open_row(win, file, model))
    old = getattr(win, "batch_results", None)
    if old is not None:
        old.close()
    win.batch_results = dialog
    dialog.show()
    dialog.raise_()
    return dialog


def _same_model(summary: Any, model: str) -> bool:
    """Whether the window's model (its ModelSummary) is ``model`` (a bundled name or a folder)."""
    if summary is None:
        return False
    if model in (summary.name, summary.source):
        return True
    from musiclens.core.models import registry

    try:
        return bool(summary.source) and Path(summary.source).resolve() == registry.model_folder(model).resolve()
    except Exception:  # noqa: BLE001 - a model that is gone: not the same; loading it says why
        return False


def open_row(win: Any, file: Path, model: str) -> None:
    """Open ``file`` in the window with ``model``: loaded first when the window has another
    one (MIDI files go to the piano roll, with its MIDI model)."""
    from musiclens.core.midi import MIDI_EXTENSIONS

    if not Path(file).exists():
        win.show_error(f"open {Path(file).name}: {file} does not exist (moved since the batch run?)")
        return
    if Path(file).suffix.lower() in MIDI_EXTENSIONS or not model or _same_model(win.session.summary, model):
        win.open_file(file)
        return
    win._load_model(model, then=lambda: win.open_file(file))
