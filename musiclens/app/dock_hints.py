"""What the audio docks say while a MIDI file is open and no recording is: instead of staying
empty, each shows one line over its contents, "Open a recording to see … (a MIDI file is
open in the piano roll)", with buttons to open a recording or go to the piano roll.

The hint is a card laid over the dock's contents (:class:`DockHint`); nothing is moved,
closed or re-tabbed, so the user's saved layout stays as it is. A recording opening takes
the hints away. :class:`AudioDockHints` is the one place that knows which docks read audio.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

#: the docks that show a recording's analysis: dock title -> what a recording lets one do there
AUDIO_DOCKS = {
    "Spectrogram": "see its spectrogram",
    "Layers and filters": "see the layers' activation maps and hear their filters",
    "Predictions": "see the audio model's predictions over time",
    "CAM and saliency": "see which parts of the spectrogram the model used (CAM, saliency)",
    "Hear the explanation": "hear the cells that explain a class",
    "Compare methods": "compare how faithful the attribution methods are",
}
MIDI_OPEN = "a MIDI file is open in the piano roll"


def hint_text(what: str) -> str:
    """The one line a dock shows: "Open a recording to <what> (a MIDI file is open …)"."""
    return f"Open a recording to {what} ({MIDI_OPEN})."


class DockHint(QFrame):
    """A card over ``host`` (a dock's widget: the panel, or the area that scrolls it), following
    its place and size; hidden until :meth:`show_text`. It is the host's sibling (a child of
    the dock), so the host's own children, scroll bars included, stay under it."""

    def __init__(self, host: QWidget, on_open, on_piano_roll) -> None:
        super().__init__(host.parentWidget())
        self.host = host
        self.setObjectName("dock-hint")
        self.setAutoFillBackground(True)  # the empty panel does not show through
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignCenter)
        self.open_button = QPushButton("Open a recording…")
        self.open_button.clicked.connect(on_open)
        self.roll_button = QPushButton("Show the piano roll")
        self.roll_button.clicked.connect(on_piano_roll)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.roll_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        layout.addStretch(1)
        host.installEventFilter(self)
        self.hide()

    def show_text(self, text: str) -> None:
        self.label.setText(text)
        self.setGeometry(self.host.geometry())
        self.show()
        self.raise_()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.host and event.type() in (QEvent.Type.Resize, QEvent.Type.Move):
            self.setGeometry(obj.geometry())
        return False


class AudioDockHints(QObject):
    """The hints of ``window``'s audio docks (:data:`AUDIO_DOCKS`): shown when a MIDI file opens
    in the piano roll while no recording is open, gone once a recording opens."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.hints: dict[str, DockHint] = {}
        window.piano_roll.opened.connect(lambda _path: self.midi_opened())
        window.session.recording_changed.connect(lambda _rec: self.clear())

    def midi_opened(self) -> None:
        if self.window.session.recording is not None:  # the audio docks show that recording
            return
        for title, what in AUDIO_DOCKS.items():
            dock = self.window.docks.get(title)
            if dock is None:
                continue
            if title not in self.hints:
                self.hints[title] = DockHint(dock.widget(), self.window.open_dialog, self._show_piano_roll)
            self.hints[title].show_text(hint_text(what))

    def clear(self) -> None:
        for hint in self.hints.values():
            hint.hide()

    def shown(self) -> dict[str, str]:
        """{dock title: its hint's text} for each hint showing (hidden docks' hints included)."""
        return {title: hint.label.text() for title, hint in self.hints.items() if not hint.isHidden()}

    def _show_piano_roll(self) -> None:
        dock = self.window.docks["Piano roll"]
        dock.show()
        dock.raise_()
