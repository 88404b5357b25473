"""Benchmark: how long a layer click takes to show its maps while a training job runs.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_jobs.py [--epochs N] [--clicks K]

Opens the window with the demo (MSD MusiCNN), starts training vanilla-cnn from the Training
panel on a small synthetic folder (2 classes x 10 files of 30 s by default), waits for its first batch,
then selects ``--clicks`` layers one after the other and prints, for each, the time from
the click to the layer's filter maps being shown, and whether training was still running
when they were. Then it cancels the training and waits for it to end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MUSICLENS_SETTINGS", str(TMP / "settings.ini"))
os.environ.setdefault("XDG_DATA_HOME", str(TMP / "data"))
os.environ.setdefault("MUSICLENS_CACHE", str(TMP / "cache"))

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

LAYERS = (
    "mid end / conv 1",
    "front end / timbral 7x38",
    "mid end / conv 2",
    "front end / temporal 64x1",
    "mid end / conv 3",
)


def make_dataset(root: Path, files: int = 6, seconds: float = 6.0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    for label, make in (
        ("tones", lambda i: 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)),
        ("noise", lambda i: 0.1 * rng.standard_normal(len(t))),
    ):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(files):
            sf.write(root / label / f"{label}{i}.wav", make(i).astype(np.float32), sr)
    return root


def wait(app: QApplication, until, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not until():
        if time.perf_counter() > deadline:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--files", type=int, default=10, help="files per class")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    ap.add_argument("--timeout", type=float, default=300.0, help="longest wait for one click (s)")
    args = ap.parse_args()

    from musiclens.app.main import demo_path
    from musiclens.app.window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.show()
    ready = []
    window.ready.connect(lambda: ready.append(1))
    window.start(path=demo_path())
    wait(app, lambda: ready, 300)
    wait(app, lambda: not window.worker.pending(), 300)
    print("demo analysed")

    panel = window.training
    panel.folder.setText(str(make_dataset(TMP / "ds", args.files, args.seconds)))
    panel.epochs.setValue(args.epochs)
    if hasattr(panel, "patience"):
        panel.patience.setValue(0)  # never stop early
    panel.start_button.click()
    t_train = time.perf_counter()
    if not wait(app, lambda: "batch" in panel.report.text() or "epoch" in panel.report.text(), 300):
        raise SystemExit(f"training did not start: {panel.report.text()}")
    print(f"training started ({time.perf_counter() - t_train:.1f} s to its first batch)")

    latencies = []
    for k in range(args.clicks):
        layer = LAYERS[k % len(LAYERS)]
        t0 = time.perf_counter()
        window.layers.select_layer(layer)
        shown = wait(
            app, lambda layer=layer: window.layers.maps is not None and window.layers.maps.layer == layer, args.timeout
        )
        dt = time.perf_counter() - t0
        training = not panel.start_button.isEnabled()
        print(
            f"click {k + 1} ({layer}): {'maps shown' if shown else 'NOT shown'} after {dt:.2f} s; "
            f"training {'still running' if training else 'had finished'}"
            + (f" ({panel.report.text()[:60]})" if training else "")
        )
        latencies.append(dt)
    print(
        f"layer click -> maps during training: median {np.median(latencies):.2f} s, "
        f"worst {max(latencies):.2f} s over {len(latencies)} clicks"
    )
    panel.cancel_button.click()
    wait(app, lambda: panel.start_button.isEnabled(), 300)
    print(f"after cancel: {panel.report.text()}")
    window.close()


if __name__ == "__main__":
    main()
