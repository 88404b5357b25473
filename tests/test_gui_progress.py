"""The window's long jobs show progress and the time left (issue 20, goal 6): loading a
model, opening a recording and a wide layer's activation maps (the jobs that took over a
second on the demo, measured by hand) report at least two fractions between 0 and 1 before
their result, and the status bar shows "ETA m:ss" once a fraction is known."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from conftest import GUI_TIMEOUT_MS, wait_idle

pytestmark = pytest.mark.gui

WIDE_LAYER = "back end / pool"  # MSD_musicnn's widest layer: 1,506 filters, each heard


class Watch:
    """A job's progress as the window shows it: the fractions before its result, and the
    status bar's text after each of its progress reports (``(seconds running, fraction, text)``)."""

    def __init__(self, window, job) -> None:
        self.window, self.job = window, job
        self.fractions: list[float] = []
        self.shown: list[tuple[float, float | None, str]] = []
        self.eta_texts: list[str] = []  # time_text as the status bar computes it, a second in
        self.result = None
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self._succeeded)
        window.worker.changed.connect(self._changed)  # after the status bar's own refresh

    def _progressed(self, p) -> None:
        from musiclens.app.jobs import SHOW_TIME_AFTER_S, time_text

        if self.result is None and p.fraction is not None and 0 < p.fraction < 1:
            self.fractions.append(p.fraction)
            later = self.job.running_since + SHOW_TIME_AFTER_S  # what the bar says once a second has run
            self.eta_texts.append(time_text(self.job, now=max(later, self.job.running_s() + self.job.running_since)))

    def _changed(self) -> None:
        if self.result is None and self.job.state == "running" and self.job.last_progress is not None:
            text = self.window.job_queue.text()
            self.shown.append((self.job.running_s(), self.job.last_progress.fraction, text))

    def _succeeded(self, result) -> None:
        self.result = result
        self.window.worker.changed.disconnect(self._changed)

    def check(self, qtbot) -> None:
        from musiclens.app.jobs import SHOW_TIME_AFTER_S

        qtbot.waitUntil(lambda: self.result is not None, timeout=GUI_TIMEOUT_MS)
        name = self.job.name
        assert len(set(self.fractions)) >= 2, (name, self.fractions)
        assert self.fractions == sorted(self.fractions), (name, self.fractions)  # it never goes back
        assert all(t.startswith("ETA ") for t in self.eta_texts), (name, self.eta_texts)
        # every report of a fraction after the first second is shown with the time left
        late = [text for s, f, text in self.shown if s >= SHOW_TIME_AFTER_S and f is not None and 0 < f < 1]
        assert all(f"{name} (" in text and "ETA " in text for text in late), (name, late)
        if self.job.elapsed_s > SHOW_TIME_AFTER_S + 0.5:  # a long job reports after its first second
            assert late, (name, self.job.elapsed_s, self.shown)


def test_long_jobs_show_progress_and_time_left(qtbot, window):
    from musiclens.app.main import demo_path
    from musiclens.core.resources import DEFAULT_MODEL

    session = window.session
    load = Watch(window, session.load_model(DEFAULT_MODEL))
    load.check(qtbot)
    assert session.summary.name == DEFAULT_MODEL

    opened = Watch(window, session.open(demo_path()))
    opened.check(qtbot)
    assert opened.result.duration_s > 1
    wait_idle(qtbot, window)  # the prediction that follows
    assert session.analysis is not None

    maps = Watch(window, session.layer_maps(WIDE_LAYER, 0, lambda result: None))
    maps.check(qtbot)
    assert maps.result.maps.shape[0] == 1506 and len(maps.fractions) >= 20  # one report per 64 filters
    wait_idle(qtbot, window)
    assert window.job_queue.text() == ""
