"""Benchmark the desktop app: start-up times and GUI responsiveness while torch works.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_gui.py [--steps N]

Prints (1) time from process start to window shown and to the demo fully analysed
(``musiclens gui --demo --screenshot``, a fresh process), (2) the worst and the 99th
percentile event-loop stall while idle (the baseline) and while a dream runs in the worker,
measured by a 10 ms QTimer, (3) the latency from a filter click to its auralisation
starting to play (3 s patch, CPU). Target: worst stall < 100 ms, click-to-sound < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MUSICLENS_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.ini"))

import numpy as np
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
from PySide6.QtWidgets import QApplication


def startup_times() -> tuple[float, float]:
    out = Path(tempfile.mkdtemp()) / "shot.png"
    r = subprocess.run(
        [sys.executable, "-m", "musiclens", "gui", "--demo", "--screenshot", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    m = re.search(r"window shown after ([\d.]+) s, analysed after ([\d.]+) s", r.stderr)
    if not m:
        raise SystemExit(f"could not start the app: {r.stderr[-500:]}")
    return float(m.group(1)), float(m.group(2))


def stalls_during(app: QApplication, seconds: float, busy=lambda: True) -> np.ndarray:
    """Intervals (ms) between 10 ms timer ticks for ``seconds`` or until ``busy()`` is False."""
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]
    timer = QTimer()
    timer.setInterval(10)

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer.timeout.connect(tick)
    timer.start()
    loop = QEventLoop()
    stop = QTimer()
    stop.timeout.connect(lambda: (clock.elapsed() > seconds * 1000 or not busy()) and loop.quit())
    stop.start(20)
    loop.exec()
    timer.stop()
    stop.stop()
    return np.asarray(gaps[1:], float)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    shown, analysed = startup_times()
    print(f"start-up: window shown after {shown:.2f} s, demo fully analysed after {analysed:.2f} s")

    from musiclens.app.main import demo_path
    from musiclens.app.window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.show()
    loop = QEventLoop()
    window.ready.connect(loop.quit)
    window.start(path=demo_path())
    loop.exec()

    idle = stalls_during(app, 3.0)
    window.dream.steps.setValue(args.steps)
    window.dream.start_button.click()
    t0 = time.perf_counter()
    busy = stalls_during(app, 600.0, busy=lambda: bool(window.worker.pending()))
    dream_s = time.perf_counter() - t0
    for name, gaps in (("idle (baseline)", idle), (f"dream of {args.steps} steps", busy)):
        print(
            f"event-loop interval, {name:>22}: worst {gaps.max():6.1f} ms, p99 "
            f"{np.percentile(gaps, 99):6.1f} ms, median {np.median(gaps):5.1f} ms over {len(gaps)} ticks"
        )
    print(f"dream: {args.steps / dream_s:.1f} steps/s in the worker (3 s patch, MusiCNN, 1 torch thread)")

    # click-to-sound: a filter of the selected layer, the time until the player starts
    window.docks["Layers and filters"].raise_()
    layer = "mid end / conv 1"
    window.layers.select_layer(layer)
    while window.layers.maps is None or window.layers.maps.layer != layer:
        app.processEvents()
    latencies = []
    for row in range(5):
        started = []
        # B023: the slot lives for this iteration only (disconnected below)
        window.player.state_changed.connect(lambda playing: playing and started.append(time.perf_counter()))  # noqa: B023
        t0 = time.perf_counter()
        window.layers._filter_clicked(window.layers.grid.item(row), "activation")
        deadline = time.perf_counter() + 30
        while not started and time.perf_counter() < deadline:
            app.processEvents()
        window.player.state_changed.disconnect()
        window.player.stop()
        if started:
            latencies.append(started[0] - t0)
    if latencies:
        print(
            f"filter click -> playback starts: median {1000 * np.median(latencies):.0f} ms, "
            f"worst {1000 * max(latencies):.0f} ms over {len(latencies)} clicks"
        )
    else:
        print("filter click -> playback: no audio device, not measured")
    window.close()


if __name__ == "__main__":
    main()
