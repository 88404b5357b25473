"""The status bar's job list: what runs now (with its progress) and what waits, over every
worker of the window, each job cancellable on its own from the button's menu."""

from __future__ import annotations

from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from musiclens.app.worker import Job, Worker

MESSAGE_CHARS = 48  # of a running job's last progress message
QUEUED_NAMED = 3  # queued jobs named in the text; the others are counted


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
        self.refresh()

    def jobs(self) -> list[tuple[Job, str]]:
        """(job, "running" | "queued"), the running ones first, in the workers' order."""
        pending = [job for worker in self.workers for job in worker.pending()]
        running = [(job, "running") for job in pending if job.state == "running"]
        return running + [(job, "queued") for job in pending if job.state != "running"]

    def refresh(self) -> None:
        self.setText(describe(self.jobs()))
        self.setVisible(bool(self.text()))

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


def running_text(job: Job) -> str:
    """A running job's name with its last progress message (shortened) or fraction."""
    p = job.last_progress
    if p is None:
        return job.name
    if p.message:
        message = p.message if len(p.message) <= MESSAGE_CHARS else p.message[: MESSAGE_CHARS - 1] + "…"
        return f"{job.name} ({message})"
    if p.fraction is not None:
        return f"{job.name} ({100 * p.fraction:.0f} %)"
    return job.name


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
