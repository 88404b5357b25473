"""The "Study report" dock: a study's ``report.md`` with its figures, and buttons that open
what the study made (its models, recordings and MIDI files) in the window's panels.

A report folder (``musiclens study`` or Studies > …) holds ``report.md``, the figures as PNG
and ``numbers.json``, whose optional ``"open_in_window"`` lists ``{"models": [...], "audio":
[...], "midi": [...]}`` paths relative to the folder. The panel only reads and shows; it asks
the window to open things through :attr:`StudyReportPanel.open_requested`.

A MIDI model folder among the models (``model.json`` ``"input": "midi"``, e.g. midi-rnn's
fold-1 models) is a model for the piano roll: its button says so, and each of the report's
MIDI files opens in the piano roll *with* the study's model (:attr:`StudyReportPanel.open_midi_with`),
one menu item per model; the model a file is named after (``flip_<model>_….mid``) comes first.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from PySide6.QtCore import QEvent, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImageReader, QTextCursor, QTextImageFormat
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QTextBrowser,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

#: the kinds of "open_in_window" entries, in button order: (key, button text)
OPEN_KINDS = (("models", "Open model"), ("audio", "Open recording"), ("midi", "Open MIDI"))
WRAP_SLACK_PX = 3  # the text is laid out this much narrower than the view
EMPTY_TEXT = "No study report yet: run one from the Studies menu, or open a report folder (Studies > Open a report…)."


def open_in_window(folder: Path) -> dict[str, list[Path]]:
    """``numbers.json``'s ``"open_in_window"`` entries as absolute paths, by kind (models,
    audio, midi); empty lists when the file or the entry is absent."""
    try:
        numbers = json.loads((folder / "numbers.json").read_text())
    except (OSError, ValueError):
        numbers = {}
    entries = numbers.get("open_in_window") if isinstance(numbers, dict) else None
    entries = entries if isinstance(entries, dict) else {}
    return {kind: [folder / p for p in entries.get(kind) or [] if isinstance(p, str)] for kind, _text in OPEN_KINDS}


def midi_models(models: list[Path]) -> list[Path]:
    """The MIDI model folders among a report's models (those the piano roll reads with)."""
    from musiclens.core.resources import model_input

    return [m for m in models if m.is_dir() and model_input(m) == "midi"]


def readers(midi: Path, models: list[Path]) -> list[Path]:
    """``models`` in the order offered for the MIDI file ``midi``: first those it is named after
    (a ``_``-separated part of its name is the model's folder name, or that name without a
    ``-fold<k>`` ending: ``flip_midi-lstm_x.mid`` -> ``midi-lstm-fold1``), then the others."""
    parts = set(midi.stem.split("_"))

    def named_after(model: Path) -> bool:
        return model.name in parts or re.sub(r"-fold\d+$", "", model.name) in parts

    return sorted(models, key=lambda m: not named_after(m))


class ReportBrowser(QTextBrowser):
    """Markdown with its images scaled down to the view's width (figures are ~1300 px wide)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self._fit = QTimer(self, singleShot=True, interval=50)
        self._fit.timeout.connect(self.fit_images)
        # a few pixels short of the view: Qt's tables round their columns up by a pixel
        # at some widths, which would show a horizontal scroll bar for nothing
        self.setLineWrapMode(QTextEdit.FixedPixelWidth)
        self._wrap()

    def _wrap(self) -> None:
        self.setLineWrapColumnOrWidth(max(100, self.viewport().width() - WRAP_SLACK_PX))

    def show_markdown(self, text: str, folder: Path) -> None:
        self.folder = folder
        self.setSearchPaths([str(folder)])
        # Qt's Markdown reader drops the rest of a table at an HTML "<br>" in a cell (the
        # line break GitHub renders) but reads "<br/>" as one
        self.setMarkdown(text.replace("<br>", "<br/>"))
        self.fit_images()

    def image_names(self) -> list[str]:
        """The images the document shows (their names as written in the Markdown)."""
        return [name for _pos, _len, name, _indent in self._images()]

    def image_widths(self) -> dict[str, float]:
        """{name: the width it is shown at, in pixels} (0: its own width)."""
        widths = {}
        for pos, _len, name, _indent in self._images():
            cursor = QTextCursor(self.document())
            cursor.setPosition(pos + 1)  # the format of the character before the cursor
            widths[name] = cursor.charFormat().toImageFormat().width()
        return widths

    def _images(self) -> list[tuple[int, int, str, float]]:
        """(position, length, name, indent in pixels) of each image fragment of the document
        (the indent of a list item's image)."""
        found = []
        doc = self.document()
        block = doc.begin()
        while block.isValid():
            listed = block.textList()
            indent = block.blockFormat().leftMargin() + (listed.format().indent() * doc.indentWidth() if listed else 0)
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid() and fragment.charFormat().isImageFormat():
                    name = fragment.charFormat().toImageFormat().name()
                    found.append((fragment.position(), fragment.length(), name, indent))
                it += 1
            block = block.next()
        return found

    def fit_images(self) -> None:
        """Each image at its own size, or as wide as the view leaves beside its indent when it
        is wider (aspect kept); a second pass takes off what still overflows (list bullets)."""
        if self.folder is None:
            return
        images = self._images()
        sizes = {name: QImageReader(str(self.folder / name)).size() for _p, _l, name, _i in images}
        self._wrap()
        room = self.lineWrapColumnOrWidth() - 2 * self.document().documentMargin()
        self._set_widths(images, sizes, room)
        over = self.document().size().width() - self.lineWrapColumnOrWidth()
        if over > 0:
            self._set_widths(images, sizes, room - math.ceil(over) - 1)

    def _set_widths(self, images: list[tuple[int, int, str, float]], sizes: dict, room: float) -> None:
        cursor = QTextCursor(self.document())
        for pos, length, name, indent in images:
            size = sizes[name]
            if not size.isValid() or size.width() <= 0:
                continue
            w = max(60, min(size.width(), int(room - indent)))
            image = QTextImageFormat()
            image.setName(name)
            image.setWidth(w)
            image.setHeight(size.height() * w / size.width())
            cursor.setPosition(pos)
            cursor.setPosition(pos + length, QTextCursor.KeepAnchor)
            cursor.setCharFormat(image)

    def viewportEvent(self, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize:  # the dock resized, or a scroll bar came or went
            self._wrap()
            self._fit.start()
        return super().viewportEvent(event)


class StudyReportPanel(QWidget):
    """A study's report and what it made. ``open_requested(kind, path)``: kind is "models",
    "audio" or "midi" (an ``open_in_window`` entry) or "folder" (the report folder);
    ``open_midi_with(midi path, model folder)``: a MIDI file, read by one of the study's
    MIDI models in the piano roll."""

    open_requested = Signal(str, str)
    open_midi_with = Signal(str, str)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.entries: dict[str, list[Path]] = {kind: [] for kind, _text in OPEN_KINDS}
        self.midi_models: list[Path] = []  # the MIDI model folders among the entries' models
        #: per kind, (path, the MIDI model that reads it or None, the button or menu action)
        self.openers: dict[str, list[tuple[Path, Path | None, object]]] = {kind: [] for kind, _t in OPEN_KINDS}
        self.title = QLabel(EMPTY_TEXT)
        self.title.setWordWrap(True)
        self.note = QLabel("")  # running / failed / cancelled: one line
        self.note.setWordWrap(True)
        self.note.hide()
        self.cancel_button = QPushButton("Cancel the study")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.folder_button = QPushButton("Open report folder")
        self.folder_button.setToolTip("Show the report's files (report.md, figures, numbers.json) in the file manager")
        self.folder_button.clicked.connect(lambda: self.folder and self.open_requested.emit("folder", str(self.folder)))
        self.open_buttons: dict[str, QPushButton] = {}
        buttons = QHBoxLayout()
        for kind, text in OPEN_KINDS:
            button = QPushButton(text)
            button.hide()
            button.clicked.connect(lambda _=False, kind=kind: self._open_only(kind))
            self.open_buttons[kind] = button
            buttons.addWidget(button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        self.browser = ReportBrowser()
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self._link)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addLayout(buttons)
        layout.addWidget(self.browser, 1)
        self._set_buttons()

    # ------------------------------------------------------------------ what runs
    def show_running(self, text: str) -> None:
        self.title.setVisible(self.folder is not None)  # the report shown before stays, named
        self.note.setText(text)
        self.note.show()
        self.cancel_button.show()

    def show_failed(self, message: str) -> None:
        """One line: why the study stopped (the report shown before, if any, stays)."""
        self.note.setText(f"⚠ {message}")
        self.note.show()
        self.cancel_button.hide()

    # ------------------------------------------------------------------ the report
    def show_report(self, folder: str | Path) -> None:
        """Show ``folder``'s report.md with its figures, and a button per kind of entry in
        its ``numbers.json``'s ``open_in_window`` (a menu when there are several)."""
        folder = Path(folder)
        report = folder / "report.md"
        try:
            text = report.read_text()
        except OSError as exc:
            self.show_failed(f"cannot read {report}: {exc.strerror or exc}")
            return
        self.folder = folder
        self.entries = open_in_window(folder)
        self.midi_models = midi_models(self.entries["models"])
        self.title.setText(f"<b>{folder.name}</b> — {folder}")
        self.title.show()
        self.note.hide()
        self.cancel_button.hide()
        self.browser.show_markdown(text, folder)
        self._set_buttons()

    def _set_buttons(self) -> None:
        self.folder_button.setEnabled(self.folder is not None)
        for kind, text in OPEN_KINDS:
            button, choices = self.open_buttons[kind], self._choices(kind)
            self.openers[kind] = []
            button.setMenu(None)
            button.setVisible(bool(choices))
            if not choices:
                continue
            if len(choices) == 1:
                path, model, _item, alone = choices[0]
                button.setText(alone)
                button.setToolTip(self._tip(path, model))
                button.setEnabled(path.exists() and (model is None or model.exists()))
                self.openers[kind] = [(path, model, button)]
                continue
            n = len(self.entries[kind])
            with_models = kind == "midi" and bool(self.midi_models)
            button.setText(f"{text} in the piano roll ({n})" if with_models else f"{text} ({n})")
            button.setToolTip(
                f"{n} files the study wrote, each with the study's MIDI models: pick one"
                if with_models
                else f"{n} files the study wrote: pick one"
            )
            button.setEnabled(True)
            menu = QMenu(button)
            menu.setToolTipsVisible(True)
            for i, (path, model, item, _alone) in enumerate(choices):
                if with_models and i and path != choices[i - 1][0]:
                    menu.addSeparator()  # one group per MIDI file
                action = menu.addAction(item, lambda kind=kind, path=path, model=model: self._emit(kind, path, model))
                action.setEnabled(path.exists() and (model is None or model.exists()))
                action.setToolTip(self._tip(path, model))
                self.openers[kind].append((path, model, action))
            button.setMenu(menu)

    def _choices(self, kind: str) -> list[tuple[Path, Path | None, str, str]]:
        """(path, the MIDI model that reads it or None, text as a menu item, text as the only
        button) of each thing of ``kind`` to open: a MIDI file once per MIDI model of the report
        (when it has some), a MIDI model as the piano roll's model."""
        text = dict(OPEN_KINDS)[kind]
        paths = self.entries[kind]
        if kind == "midi" and self.midi_models:
            return [
                (p, m, f"{p.name} with {m.name}", f"Open {p.name} in the piano roll with {m.name}")
                for p in paths
                for m in readers(p, self.midi_models)
            ]
        return [
            (p, None, f"{p.name} (for the piano roll)", f"Use {p.name} in the piano roll")
            if p in self.midi_models
            else (p, None, p.name, f"{text} {p.name}")
            for p in paths
        ]

    @staticmethod
    def _tip(path: Path, model: Path | None) -> str:
        if not path.exists():
            return f"missing: {path}"
        if model is None:
            return str(path)
        if not model.exists():
            return f"missing: {model}"
        return f"{path}\nread by the study's MIDI model {model}"

    def _emit(self, kind: str, path: Path, model: Path | None) -> None:
        if model is None:
            self.open_requested.emit(kind, str(path))
        else:
            self.open_midi_with.emit(str(path), str(model))

    def _open_only(self, kind: str) -> None:
        """A button with one entry (several: its menu opens them)."""
        if len(self.openers[kind]) == 1:
            path, model, _button = self.openers[kind][0]
            self._emit(kind, path, model)

    def open_actions(self, kind: str) -> list[tuple[Path, QPushButton | object]]:
        """(path, what opens it: the button, or its menu's action) for each entry of ``kind``
        (a MIDI file once per MIDI model of the report: :attr:`openers` says which)."""
        return [(path, opener) for path, _model, opener in self.openers[kind]]

    def _link(self, url: QUrl) -> None:
        """A link in the report: a file of the report folder or a web page, opened outside."""
        if url.isRelative() and self.folder is not None:
            url = QUrl.fromLocalFile(str(self.folder / url.path()))
        QDesktopServices.openUrl(url)
