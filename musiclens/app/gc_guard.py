"""Run Python's cycle collector on the GUI thread only.

CPython collects cycles in whichever thread happens to allocate past the threshold. When
that is the worker thread and the garbage holds Qt wrappers (a closed panel, an old
window), their C++ objects are destroyed in the wrong thread: Qt takes its locks there
while shiboken waits for the GIL held by the GUI thread — a deadlock we hit in the test
suite. While a window is open, automatic collection is off and a GUI-thread timer
collects with the same thresholds instead (pyqtgraph does the same for the same reason).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

_active = 0  # open guards; automatic collection comes back when the last one stops


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None, *, interval_ms: int = 500) -> None:
        global _active
        super().__init__(parent)
        _active += 1
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect)
        self._timer.start(interval_ms)
        self._stopped = False

    def collect(self) -> None:
        """Collect the generations whose allocation counts passed their thresholds."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        global _active
        if self._stopped:
            return
        self._stopped = True
        self._timer.stop()
        _active -= 1
        if _active == 0:
            gc.enable()
