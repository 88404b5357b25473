"""The status bar's job list: what runs now (with its progress) and what waits, over every
worker of the window, each job cancellable on its own from the button's menu."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from musiclens.app.worker import Job, Worker

MESSAGE_CHARS = 48  # of a running job's last progress message
QUEUED_NAMED = 3  # queued jobs named in the text; the others are counted
SHOW_TIME_AFTER_S = 1.0  # a running job shows its time left (or its time so far) after this


class JobQueueButton(QToolButton):
    """``⏳ train vanilla-cnn (epoch 3/30 batch 2/9: loss 0.41) · activations of conv 2 ·
    kernel statistics queued``; click for a menu that cancels one job or all of them.

    ``workers``: the window's workers, the one whose jobs are listed first first (training)."""

    def __init__(self, workers: list[Worker], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workers = list(workers)
        self.setPopupMode(QToolButton.InstantPopup)
        self.setAutoRaise(True)
        self.setToolTip("Running and queued jobs: click to cancel one of them, or all")
        self._menu = QMenu(self)
        self._menu.aboutToShow.connect(self._fill_menu)
        self.setMenu(self._menu)
        for worker in self.workers:
            worker.changed.connect(self.refresh)
        self._clock = QTimer(self)  # the time left counts down between progress reports
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self.refresh)
        self.refresh()

    def jobs(self) -> list[tuple[Job, str]]:
        """(job, "running" | "queued"), the running ones first, in the workers' order."""
        pending = [job for worker in self.workers for job in worker.pending()]
        running = [(job, "running") for job in pending if job.state == "running"]
        return running + [(job, "queued") for job in pending if job.state != "running"]

    def refresh(self) -> None:
        jobs = self.jobs()
        self.setText(describe(jobs))
        self.setVisible(bool(self.text()))
        running = any(state == "running" for _, state in jobs)
        if running and not self._clock.isActive():
            self._clock.start()
        elif not running:
            self._clock.stop()

    def cancel_all(self) -> None:
        for worker in self.workers:
            worker.cancel_all()
        self.refresh()

    def _fill_menu(self) -> None:
        self._menu.clear()
        jobs = self.jobs()
        for state in ("running", "queued"):
            listed = [job for job, s in jobs if s == state]
            if listed:
                self._menu.addSection(state)
            for job in listed:
                action = self._menu.addAction(f"Cancel {job.name}")
                action.setStatusTip(running_text(job) if state == "running" else f"{job.name} (queued)")
                action.setEnabled(not job.is_cancelled)
                action.triggered.connect(job.cancel)
                action.triggered.connect(self.refresh)
        self._menu.addSeparator()
        everything = self._menu.addAction("Cancel all")
        everything.setEnabled(bool(jobs))
        everything.triggered.connect(self.cancel_all)


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on), rounded up to whole seconds."""
    total = int(-(-max(0.0, seconds) // 1))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def time_text(job: Job, now: float | None = None) -> str:
    """ "ETA m:ss" for a job that has run over :data:`SHOW_TIME_AFTER_S` and reports fractions,
    "m:ss so far" for one that has run that long without; "" before."""
    if job.running_s(now) < SHOW_TIME_AFTER_S:
        return ""
    eta = job.eta_s(now)
    return f"ETA {clock(eta)}" if eta is not None else f"{clock(job.running_s(now))} so far"


def running_text(job: Job, now: float | None = None) -> str:
    """A running job's name with its last progress message (shortened) or fraction, and its
    time left (:func:`time_text`)."""
    p = job.last_progress
    parts = []
    if p is not None and p.message:
        parts.append(p.message if len(p.message) <= MESSAGE_CHARS else p.message[: MESSAGE_CHARS - 1] + "…")
    elif p is not None and p.fraction is not None:
        parts.append(f"{100 * p.fraction:.0f} %")
    if when := time_text(job, now):
        parts.append(when)
    return f"{job.name} ({', '.join(parts)})" if parts else job.name


def describe(jobs: list[tuple[Job, str]]) -> str:
    """One line for the status bar; "" when nothing runs or waits."""
    if not jobs:
        return ""
    parts = [
        running_text(job) + (" (cancelling)" if job.is_cancelled else "") for job, state in jobs if state == "running"
    ]
    queued = [job.name for job, state in jobs if state == "queued" and not job.is_cancelled]
    if queued:
        named = ", ".join(queued[:QUEUED_NAMED])
        more = f" and {len(queued) - QUEUED_NAMED} more" if len(queued) > QUEUED_NAMED else ""
        parts.append(f"{named}{more} queued")
    return "⏳ " + " · ".join(parts) if parts else ""
