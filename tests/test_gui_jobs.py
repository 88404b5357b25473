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
