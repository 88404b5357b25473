"""Make the README's screenshots: drive the real window offscreen, save PNGs.

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_screenshots.py [OUT_DIR]

Opens the bundled demo with MSD_musicnn (the first-run view), then shows the kernels and
similarity panels and a finished dream, saving one PNG of the whole window for each.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MUSICLENS_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.ini"))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from musiclens.app.main import demo_path  # noqa: E402
from musiclens.app.window import MainWindow  # noqa: E402


def wait_idle(app: QApplication, window: MainWindow, timeout_s: float = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    timer = QTimer()
    timer.timeout.connect(lambda: not window.worker.pending() and loop.quit())
    timer.start(100)
    loop.exec()
    timer.stop()
    for _ in range(5):
        app.processEvents()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "resources/screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.show()
    loop = QEventLoop()
    window.ready.connect(loop.quit)
    window.start(path=demo_path())
    loop.exec()
    wait_idle(app, window)
    window.grab().save(str(out / "main-window.png"))

    window.docks["Kernels"].raise_()
    window.kernels.refresh_button.click()
    wait_idle(app, window)
    window.grab().save(str(out / "kernels.png"))

    window.docks["Similarity"].raise_()
    window.similarity.requested.emit(str(demo_path()))
    wait_idle(app, window)
    window.grab().save(str(out / "similarity.png"))

    window.docks["Dream"].raise_()
    window.dream.steps.setValue(30)
    window.dream.start_button.click()
    wait_idle(app, window)
    window.grab().save(str(out / "dream.png"))
    window.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
