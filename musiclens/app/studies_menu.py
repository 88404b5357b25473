"""The window's Studies menu (issue 21): one action per study of
:data:`musiclens.core.analyses.studies.STUDIES` (a study not built yet is greyed, the reason
in its tooltip), a dialog that asks for the data, the report folder and a quick run, the run
as a job of the session (progress, time left and cancel in the status bar), and the report
shown in the "Study report" dock (:mod:`musiclens.app.panels.study_report`), whose buttons
open the study's models, recordings and MIDI files in the window.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from musiclens.app.paths import data_home
from musiclens.app.window import settings
from musiclens.app.worker import Job
from musiclens.core.analyses.studies import STUDIES, Study

DOCK = "Study report"
READING_HEIGHT = 0.7  # of the window, for a report shown in its docked place
LAST_REPORT = "studies/last_report"  # setting: the report folder shown last


def studies_home() -> Path:
    """Where the window writes study reports by default (the user's data folder)."""
    return data_home() / "studies"


def report_start_folder() -> Path:
    """Where Studies > Open a report… starts: the folder holding the last report shown, so
    that it and its siblings are one click away (or, when that has gone, its nearest existing
    parent), else :func:`studies_home` (made if it is missing, so the dialog does not fall
    back to the current directory)."""
    last = str(settings().value(LAST_REPORT, "") or "")
    if last:
        folder = Path(last).parent
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        if folder.is_dir() and folder != folder.parent:
            return folder
    home = studies_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError:  # not writable: its nearest existing parent
        while not home.is_dir() and home != home.parent:
            home = home.parent
    return home


def _folder_row(edit: QLineEdit, parent: QWidget, title: str) -> QHBoxLayout:
    """``edit`` with a "Folder…" button that picks a folder into it."""
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton("Folder…")

    def pick() -> None:
        folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
        if folder:
            edit.setText(folder)

    button.clicked.connect(pick)
    row.addWidget(button)
    return row


class StudyDialog(QDialog):
    """Run one study: its data (an empty field: the study's default, if it has one), the
    report folder and "Quick run". The data folder and quick are remembered per study."""

    def __init__(self, study: Study, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.study = study
        self.setWindowTitle(f"Run the study {study.name}")
        st = settings()
        self.data = QLineEdit(str(st.value(f"studies/{study.name}/data", "") or ""))
        self.data.setPlaceholderText("a folder of your data (empty: the study's default, where it has one)")
        self.data.textChanged.connect(self._check)
        self.out = QLineEdit(str(studies_home() / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        self.out.textChanged.connect(self._check)
        self.quick = QCheckBox("Quick run (a few minutes on a laptop: less data, fewer epochs)")
        self.quick.setChecked(str(st.value(f"studies/{study.name}/quick", "true")).lower() == "true")
        what = QLabel(f"{study.title}.")
        what.setWordWrap(True)
        means = QLabel(f"Data: {study.data}.")
        means.setWordWrap(True)
        means.setObjectName("data-means")
        self.means = means
        self.message = QLabel("")
        self.message.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Data", _folder_row(self.data, self, f"Data for {study.name}"))
        form.addRow("", means)
        form.addRow("Report folder", _folder_row(self.out, self, "Write the report into"))
        form.addRow("", self.quick)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.run_button = self.buttons.button(QDialogButtonBox.Ok)
        self.run_button.setText("Run")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(what)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(640, self.sizeHint().height())
        self._check()

    def problem(self) -> str | None:
        """Why the study cannot run with these fields (None: it can)."""
        data, out = self.data.text().strip(), self.out.text().strip()
        missing = [part for part in data.split(":") if part and not Path(part).expanduser().exists()]
        if missing:  # several folders may be joined by ':' (genre-cnn, dreaming)
            return f"the data {missing[0]} does not exist"
        if not out:
            return "give a report folder"
        if Path(out).expanduser().is_file():
            return f"the report folder {out} is a file"
        return None

    def _check(self) -> None:
        problem = self.problem()
        self.message.setText(f"⚠ {problem[0].upper()}{problem[1:]}." if problem else "")
        self.run_button.setEnabled(problem is None)

    def choice(self) -> tuple[Path, bool, Path | None]:
        """(report folder, quick, data or None), the data remembered for next time."""
        data = self.data.text().strip()
        st = settings()
        st.setValue(f"studies/{self.study.name}/data", data)
        st.setValue(f"studies/{self.study.name}/quick", "true" if self.quick.isChecked() else "false")
        return (
            Path(self.out.text().strip()).expanduser(),
            self.quick.isChecked(),
            Path(data).expanduser() if data else None,
        )


class StudiesMenu(QObject):
    """Fills the window's Studies menu and runs what it asks for (``window``: the
    MainWindow, with its ``study_report`` panel in the "Study report" dock)."""

    def __init__(self, window, menu: QMenu) -> None:
        super().__init__(window)
        self.window = window
        self.panel = window.study_report
        self.dialog: StudyDialog | None = None  # the last one opened (tests drive it)
        self.job: Job | None = None  # the last study started
        menu.setToolTipsVisible(True)
        self.actions: dict[str, QAction] = {}
        for study in STUDIES.values():
            action = QAction(f"{study.name}…", window)
            action.setEnabled(study.built)
            action.setToolTip(study.title if study.built else f"Not built yet (issue 21): {study.title}")
            action.setStatusTip(action.toolTip())
            action.triggered.connect(lambda _=False, name=study.name: self.ask(name))
            menu.addAction(action)
            self.actions[study.name] = action
        menu.addSeparator()
        self.open_action = QAction("Open a &report…", window)
        self.open_action.setToolTip("Show a report folder written by `musiclens study` or by this menu")
        self.open_action.triggered.connect(lambda: self.open_report())
        menu.addAction(self.open_action)
        self.panel.open_requested.connect(self.open_entry)
        self.panel.open_midi_with.connect(self.open_midi_with)
        self.panel.cancel_requested.connect(lambda: self.job is not None and self.job.cancel())

    def ask(self, name: str) -> StudyDialog:
        """The dialog for study ``name``; Run starts it. Returns the (non-modal) dialog."""
        dialog = StudyDialog(STUDIES[name], self.window)
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.run(name, *dialog.choice()))
        dialog.open()
        self.dialog = dialog
        return dialog

    def run(self, name: str, out: Path, quick: bool = False, data: Path | None = None) -> Job:
        """Run study ``name`` as a job; its report comes to the dock when it is written."""
        self._show_dock()
        what = f"{name}{' (quick)' if quick else ''}"
        self.panel.show_running(f"Running {what} into {out}: its progress is in the status bar.")

        def done(report) -> None:
            self.show_report(report.folder)
            self.window.statusBar().showMessage(f"study {name}: report in {report.folder}", 15000)

        job = self.window.session.study(
            name, out, done, quick=quick, data=data, on_error=lambda m: self.panel.show_failed(f"study {name}: {m}")
        )
        job.cancelled.connect(lambda: self.panel.show_failed(f"study {what} cancelled"))
        job.finished.connect(lambda: self._ended(job))
        self.job = job
        return job

    def _ended(self, job: Job) -> None:
        if self.job is job:  # the panel's Cancel button no longer refers to it
            self.job = None

    def show_report(self, folder: str | Path) -> None:
        """The report in ``folder``, in the "Study report" dock, brought to the front and
        made tall enough to read (its tab group takes most of the window's height)."""
        dock = self._show_dock()
        self.panel.show_report(folder)
        if self.panel.folder == Path(folder):  # read: the folder Open a report… starts in next time
            settings().setValue(LAST_REPORT, str(Path(folder).resolve()))
        tall = int(self.window.height() * READING_HEIGHT)
        if not dock.isFloating() and dock.height() < tall:
            self.window.resizeDocks([dock], [tall], Qt.Vertical)

    def open_report(self, folder: str | Path | None = None) -> None:
        """Studies > Open a report…: a folder holding report.md."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self.window, "Open a study report", str(report_start_folder()))
            if not folder:
                return
        if not (Path(folder) / "report.md").is_file():
            self.window.show_error(f"open a study report: {folder} holds no report.md")
            return
        self.show_report(folder)

    def open_entry(self, kind: str, path: str) -> None:
        """A button of the report: a model joins the picker and loads (a MIDI model becomes the
        piano roll's), a recording opens in the spectrogram, a MIDI file in the piano roll, the
        folder in the file manager."""
        from musiclens.core.resources import model_input

        if kind == "folder":
            QDesktopServices.openUrl(QUrl.fromLocalFile(path))
        elif kind == "models" and model_input(Path(path)) == "midi":
            self.use_midi_model(path)
        elif kind == "models":
            self.window.open_model_folder(path)
        else:  # audio or MIDI: the window opens each where it belongs
            self.window.open_file(path)

    def open_midi_with(self, path: str, model: str) -> None:
        """A MIDI file of the report in the piano roll, read by the study's MIDI model ``model``
        (a folder), which stays the piano roll's model; if it cannot be loaded, the piano roll
        says why and keeps the model it had."""
        session, roll = self.window.session, self.window.piano_roll
        before = session.midi_model_name
        session.midi_model_name = model

        def failed(_message: str) -> None:
            if session.midi_model_name == model:
                session.midi_model_name = before

        self.window.docks["Piano roll"].show()
        self.window.docks["Piano roll"].raise_()
        roll.open_file(path, on_error=failed)
        self.window.statusBar().showMessage(f"{Path(path).name}: read by the study's model {Path(model).name}", 15000)

    def use_midi_model(self, model: str) -> None:
        """A MIDI model of the report: the piano roll reads with it from now on; the file it
        shows opens again with it, unless it holds edits (they are kept)."""
        roll = self.window.piano_roll
        editor = roll.editor
        if editor is not None and editor.source and not editor.undo_stack and Path(editor.source).is_file():
            self.open_midi_with(str(editor.source), model)
            return
        self.window.session.midi_model_name = model
        self.window.statusBar().showMessage(
            f"the piano roll reads the next MIDI file you open with the study's model {Path(model).name}", 15000
        )

    def _show_dock(self) -> QDockWidget:
        dock = self.window.docks[DOCK]
        dock.show()
        dock.raise_()
        return dock
