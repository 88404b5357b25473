"""One background thread that runs every torch job, so the GUI thread never blocks.

A job is a plain callable ``fn(ctx) -> result`` run in the worker thread. Long jobs call
``ctx.progress(fraction, message, payload)`` as they go and check ``ctx.cancelled`` (or
call ``ctx.check()``, which raises :class:`Cancelled`); generator-style engine code is
driven with :meth:`JobContext.drive`. Results, progress and errors come back to the GUI
thread as Qt signals of the :class:`Job` object (napari's generator-worker pattern).
A worker runs its jobs one at a time, in submission order; the window has two: one for
the analyses and one for long jobs (training), so a click never waits behind a training
run. ``Worker.changed`` fires whenever a job is queued, starts, reports or ends, for the
status bar's job list.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot


class Cancelled(Exception):
    """Raised inside a job when the user cancelled it.

    ``partial``: what the job made before it stopped and wants to hand back (e.g. the best
    model of a cancelled training); it reaches the GUI thread as ``Job.partial``, set
    before ``Job.cancelled`` fires.
    """

    def __init__(self, partial: Any = None) -> None:
        super().__init__()
        self.partial = partial


@dataclass
class JobProgress:
    """What a job shows in the window (progress bar, status line, preview): a display type.
    Training *events* are :class:`musiclens.core.training.events.Progress`; the training job
    turns them into these."""

    fraction: float | None  # 0..1, or None when unknown
    message: str
    payload: Any = None  # e.g. an intermediate result to preview


class JobContext:
    """Handed to a job function: report progress, honour cancellation."""

    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def cancelled(self) -> bool:
        return self._job._cancel.is_set()

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()

    def progress(self, fraction: float | None, message: str = "", payload: Any = None, *, check: bool = True) -> None:
        """Report progress; raises :class:`Cancelled` once cancelled unless ``check=False``
        (for jobs that must finish their own way, e.g. save what they have)."""
        if check:
            self.check()
        self._job._post("progress", JobProgress(fraction, message, payload))

    def drive(self, steps: Iterable[Any], describe: Callable[[Any], JobProgress]) -> Any:
        """Run an engine generator to its end (or until cancelled); returns the last step."""
        last = None
        iterator = iter(steps)
        try:
            for last in iterator:
                p = describe(last)
                self.progress(p.fraction, p.message, p.payload)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        return last


class Job(QObject):
    """A unit of work for the worker; connect to its signals before submitting."""

    progressed = Signal(object)  # JobProgress
    succeeded = Signal(object)  # the function's result
    failed = Signal(str)  # one readable message
    cancelled = Signal()
    finished = Signal()  # after any of the three above

    def __init__(self, name: str, fn: Callable[[JobContext], Any]) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self._cancel = threading.Event()
        self.started_at: float | None = None
        self.elapsed_s: float | None = None
        self.state = "queued"  # "queued" | "running" | "done" (GUI thread's view)
        self.last_progress: JobProgress | None = None
        self.partial: Any = None  # Cancelled(partial=...) of a cancelled job
        self.running_since: float | None = None  # perf_counter when the GUI heard it start
        self._first_mark: tuple[float, float] | None = None  # (time, fraction) of its first fraction
        self._last_mark: tuple[float, float] | None = None  # and of its latest

        self._post: Callable[[str, Any], None] = lambda kind, payload: None  # set by Worker

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def running_s(self, now: float | None = None) -> float:
        """Seconds since the job started (0 while queued)."""
        if self.running_since is None:
            return 0.0
        return (time.perf_counter() if now is None else now) - self.running_since

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left, from the rate of its progress fractions: (1 - f) at the rate between
        its first fraction and the latest (the elapsed time when it reported one fraction
        only), less the time since the latest; None without a fraction in (0, 1)."""
        if self._last_mark is None or self.running_since is None:
            return None
        now = time.perf_counter() if now is None else now
        t1, f1 = self._last_mark
        if not 0.0 < f1 < 1.0:
            return None
        t0, f0 = self._first_mark or (self.running_since, 0.0)
        if f1 <= f0 or t1 <= t0:
            t0, f0 = self.running_since, 0.0
        rate = (f1 - f0) / max(t1 - t0, 1e-9)  # fraction per second
        return max(0.0, (1.0 - f1) / rate - (now - t1))

    def _mark(self, fraction: float | None) -> None:
        """GUI thread: note when a fraction arrived (for :meth:`eta_s`)."""
        if fraction is None:
            return
        mark = (time.perf_counter(), float(fraction))
        if self._first_mark is None or fraction < self._first_mark[1]:  # a job that starts over
            self._first_mark = mark
        self._last_mark = mark


def readable_error(exc: BaseException) -> str:
    """One line for the status bar: our own errors as they are, others with their type."""
    from musiclens.core.errors import MusicLensError

    text = " ".join(str(exc).split())
    if isinstance(exc, MusicLensError):
        return text
    if isinstance(exc, MemoryError):
        return "out of memory: try a shorter selection or a smaller model"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Runner(QThread):
    # Emitted in the worker thread, received by Worker._dispatch in the GUI thread (queued),
    # so every Job signal fires in the GUI thread whatever its slots are.
    event = Signal(object, str, object)  # job, kind, payload

    def __init__(self, jobs: queue.Queue[Job | None], threads: int) -> None:
        super().__init__()
        self._jobs = jobs
        self._threads = threads
        self.current: Job | None = None

    def run(self) -> None:  # worker thread
        try:
            import torch

            torch.set_num_threads(self._threads)
        except Exception:  # noqa: BLE001 - torch missing is reported by the first job that needs it
            pass
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self.current = job
            job.started_at = time.perf_counter()
            try:
                if job.is_cancelled:
                    raise Cancelled()
                self.event.emit(job, "started", None)
                result = job.fn(JobContext(job))
                if job.is_cancelled:
                    raise Cancelled()
            except Cancelled as exc:
                outcome = ("cancelled", exc.partial)
            except BaseException as exc:  # noqa: BLE001 - the GUI must survive anything
                traceback.print_exc()
                outcome = ("failed", readable_error(exc))
            else:
                outcome = ("succeeded", result)
            job.elapsed_s = time.perf_counter() - job.started_at
            self.current = None
            self.event.emit(job, *outcome)


class Worker(QObject):
    """Owns the worker thread and its queue. ``submit`` from the GUI thread only."""

    busy_changed = Signal(bool, str)  # busy?, name of the running job
    changed = Signal()  # a job was queued, started, reported progress or ended

    def __init__(self, *, threads: int = 1, name: str = "worker", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._runner = _Runner(self._queue, threads)
        self._runner.event.connect(self._dispatch)
        self._pending: list[Job] = []
        self._runner.start()

    def submit(self, job: Job) -> Job:
        job.setParent(self)  # keep it alive until it finishes
        job._post = lambda kind, payload, job=job: self._runner.event.emit(job, kind, payload)
        self._pending.append(job)
        self._queue.put(job)
        self.busy_changed.emit(True, self._pending[0].name)
        self.changed.emit()
        return job

    def run(
        self,
        name: str,
        fn: Callable[[JobContext], Any],
        *,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_progress: Callable[[JobProgress], None] | None = None,
    ) -> Job:
        """Convenience: make a job, connect the callbacks, submit it."""
        job = Job(name, fn)
        if on_result:
            job.succeeded.connect(on_result)
        if on_error:
            job.failed.connect(on_error)
        if on_progress:
            job.progressed.connect(on_progress)
        return self.submit(job)

    def cancel_all(self, name: str | None = None) -> None:
        """Cancel queued and running jobs (only those called ``name`` when given)."""
        for job in list(self._pending):
            if name is None or job.name == name:
                job.cancel()

    def pending(self) -> list[Job]:
        """Jobs not finished yet (running first, then queued), in submission order."""
        return list(self._pending)

    def running(self) -> Job | None:
        return next((job for job in self._pending if job.state == "running"), None)

    @Slot(object, str, object)
    def _dispatch(self, job: Job, kind: str, payload: Any) -> None:
        """GUI thread: turn a worker event into the job's own signals."""
        if kind == "started":
            job.state = "running"
            job.running_since = time.perf_counter()
            self.changed.emit()
            return
        if kind == "progress":
            if not job.is_cancelled:
                job.last_progress = payload
                job._mark(payload.fraction)
                job.progressed.emit(payload)
                self.changed.emit()
            return
        job.state = "done"
        if kind == "succeeded":
            job.succeeded.emit(payload)
        elif kind == "failed":
            job.failed.emit(payload)
        else:
            job.partial = payload
            job.cancelled.emit()
        job.finished.emit()
        self._done(job)

    def _done(self, job: Job) -> None:
        if job in self._pending:
            self._pending.remove(job)
        job.deleteLater()
        if self._pending:
            self.busy_changed.emit(True, self._pending[0].name)
        else:
            self.busy_changed.emit(False, "")
        self.changed.emit()

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.cancel_all()
        self._queue.put(None)
        self._runner.wait(timeout_ms)
