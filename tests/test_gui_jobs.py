"""Jobs in the window: analyses answer while a training job runs, the status bar lists the
running and queued jobs (each can be cancelled alone), and a cancelled training keeps the
best model so far and offers it in the model picker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt

from conftest import start_and_wait, wait_idle


def make_folder(root: Path, *, files: int = 6, seconds: float = 6.0) -> Path:
    """Two classes (tones / noise) of ``files`` recordings each."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    for label, make in (
        ("tones", lambda i: 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)),
        ("noise", lambda i: 0.1 * rng.standard_normal(len(t))),
    ):
        (root / label).mkdir(parents=True)
        for i in range(files):
            sf.write(root / label / f"{label}{i}.wav", make(i).astype(np.float32), sr)
    return root


def start_training(qtbot, window, folder: Path, epochs: int = 500) -> None:
    panel = window.training
    panel.folder.setText(str(folder))
    panel.epochs.setValue(epochs)
    if hasattr(panel, "patience"):
        panel.patience.setValue(0)  # never stop early: it runs until cancelled
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)


def test_layer_click_is_answered_while_training_runs(qtbot, window, tmp_path):
    start_and_wait(qtbot, window, model="MSD_musicnn")
    wait_idle(qtbot, window)
    panel = window.training
    start_training(qtbot, window, make_folder(tmp_path / "ds"))
    qtbot.waitUntil(lambda: "epoch" in panel.report.text(), timeout=120_000)  # training is in its batches

    layer = "mid end / conv 1"
    t0 = time.perf_counter()
    assert window.layers.select_layer(layer)
    qtbot.waitUntil(lambda: window.layers.maps is not None and window.layers.maps.layer == layer, timeout=15_000)
    latency = time.perf_counter() - t0
    assert not panel.start_button.isEnabled(), "training should still be running"
    print(f"layer click answered after {latency:.2f} s while training runs")

    # the status bar names the running training (with its epoch) and what waits in the queue
    assert window.layers.select_layer("mid end / conv 2")
    kernels_done = []
    kernels_job = window.session.kernels(kernels_done.append)
    text = window.job_queue.text()
    assert "train vanilla-cnn" in text and "epoch" in text, text
    assert "kernel statistics queued" in text, text
    names = [job.name for job, _state in window.job_queue.jobs()]
    assert names[0] == "train vanilla-cnn" and "kernel statistics" in names
    # cancel one queued job from the jobs menu: the others go on
    menu = window.job_queue.menu()
    menu.aboutToShow.emit()
    action = next(a for a in menu.actions() if a.text() == "Cancel kernel statistics")
    action.trigger()
    assert kernels_job.is_cancelled
    qtbot.waitUntil(lambda: window.layers.maps.layer == "mid end / conv 2", timeout=15_000)
    assert not kernels_done and not panel.start_button.isEnabled()

    # the Training panel's Cancel stops the training only, not an analysis queued meanwhile
    assert window.layers.select_layer("mid end / conv 3")
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=60_000)
    qtbot.waitUntil(lambda: window.layers.maps.layer == "mid end / conv 3", timeout=15_000)
    assert "Training cancelled" in panel.report.text(), panel.report.text()
    qtbot.waitUntil(lambda: window.job_queue.text() == "", timeout=15_000)


def test_cancel_all_also_stops_training(qtbot, window, tmp_path):
    panel = window.training
    start_training(qtbot, window, make_folder(tmp_path / "ds", files=4, seconds=3.5))
    qtbot.waitUntil(lambda: "batch" in panel.report.text() or "epoch" in panel.report.text(), timeout=120_000)
    window.cancel_button.click()  # the status bar's Cancel: every job
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=60_000)
    assert not window.worker.pending() and not window.train_worker.pending()


def test_cancelled_training_offers_the_best_model_so_far(qtbot, window, tmp_path):
    import json

    from musiclens.app.panels.training import models_home
    from musiclens.core.models import registry

    panel = window.training
    start_training(qtbot, window, make_folder(tmp_path / "ds"))
    qtbot.waitUntil(lambda: len(panel.history["val score"]) >= 2, timeout=180_000)  # two epochs done
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=60_000)
    text = panel.report.text()
    assert text.startswith("Training cancelled; best model so far (epoch "), text
    saved = list(models_home().iterdir())
    assert len(saved) == 1 and str(saved[0]) in text
    meta = json.loads((saved[0] / "model.json").read_text())
    best = meta["provenance"]["best_epoch"]
    assert best >= 1 and f"(epoch {best}, val acc " in text
    assert meta["provenance"]["note"].startswith("cancelled at epoch ")
    assert registry.load(saved[0]).labels == ["noise", "tones"]
    assert window.model_picker.findData(str(saved[0])) >= 0  # offered in the model picker


def test_time_left_from_the_rate_of_progress(monkeypatch):
    """ETA = (1 - f) at the rate between the first and the latest fraction, counting down
    between reports; "m:ss so far" without fractions; nothing in the first second."""
    from musiclens.app import worker as w
    from musiclens.app.jobs import clock, running_text

    now = [100.0]
    monkeypatch.setattr(w.time, "perf_counter", lambda: now[0])
    job = w.Job("dream", lambda ctx: None)
    job.running_since = 100.0
    assert job.eta_s() is None and running_text(job) == "dream"
    now[0] = 104.0  # 4 s of loading, then the first fraction
    job._mark(0.0)
    now[0] = 106.0
    job._mark(0.25)  # 0.25 in 2 s: 6 s left
    job.last_progress = w.JobProgress(0.25, "step 25/100")
    assert job.eta_s() == 6.0
    assert running_text(job) == "dream (step 25/100, ETA 0:06)"
    now[0] = 107.5  # no report since: it counts down
    assert running_text(job) == "dream (step 25/100, ETA 0:05)"
    other = w.Job("predict", lambda ctx: None)
    other.running_since = 100.0
    now[0] = 100.5
    assert running_text(other) == "predict"
    now[0] = 172.2
    assert running_text(other) == "predict (1:13 so far)"
    assert clock(3725) == "1:02:05" and clock(0.2) == "0:01"


def test_status_bar_shows_time_left_of_a_running_job(qtbot):
    """A real worker job that reports fractions for over a second shows "ETA m:ss" in the
    status bar's job list, and the list empties when it ends."""
    import threading

    from musiclens.app.jobs import JobQueueButton
    from musiclens.app.worker import Worker

    worker = Worker(name="eta test")
    button = JobQueueButton([worker])
    qtbot.addWidget(button)
    release = threading.Event()

    def slow(ctx):
        for i in range(1, 41):
            time.sleep(0.04)
            ctx.progress(i / 100, f"step {i}/100")
        release.wait(20)
        return "done"

    try:
        job = worker.run("slow job", slow)
        qtbot.waitUntil(lambda: "ETA" in button.text(), timeout=15000)
        assert button.text().startswith("⏳ slow job (step ")
        eta = job.eta_s()
        assert eta is not None and 0 < eta < 60
        release.set()
        qtbot.waitUntil(lambda: button.text() == "", timeout=15000)
        assert not button._clock.isActive()
    finally:
        release.set()
        worker.shutdown()
