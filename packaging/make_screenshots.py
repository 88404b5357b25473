"""Make the README's screenshots: drive the real window offscreen, save PNGs.

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_screenshots.py [OUT_DIR]

Opens the bundled demo with MSD_musicnn (the first-run view) in a 1280x800 window (a
laptop screen), then shows the kernels and
similarity panels and a finished dream, saving one PNG of the whole window for each; then
opens a short generated fiddle tune in the piano roll (saliency colours, a proposed flip to
"bach") for piano-roll.png. ``--piano-roll-only`` makes just that one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MUSICLENS_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.ini"))

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication

from musiclens.app.main import demo_path
from musiclens.app.window import MainWindow

SIZE = (1280, 800)  # every picture is exactly this: the window on a small laptop screen


def save(window: MainWindow, path: Path) -> None:
    picture = window.grab()
    assert (picture.width(), picture.height()) == SIZE, f"{path.name}: {picture.size()} is not {SIZE}"
    picture.save(str(path))


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


def tall(app: QApplication, window: MainWindow, title: str) -> None:
    """A short spectrogram above, so the tabbed panel ``title`` shows all it has."""
    window.resizeDocks([window.docks["Spectrogram"], window.docks[title]], [215, 555], Qt.Vertical)
    app.processEvents()


def fiddle_tune(path: Path) -> Path:
    """A jig-like tune over a drone-ish bass, written with pretty_midi (no shared data)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    fiddle = pretty_midi.Instrument(program=40, name="fiddle")
    melody = [67, 71, 74, 71, 67, 71, 72, 76, 79, 76, 74, 72, 71, 74, 67, 69, 71, 72, 74, 76] * 3
    t = 0.0
    for i, p in enumerate(melody):
        d = 0.25 if i % 3 else 0.5
        fiddle.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=t, end=t + d))
        t += d
    bass = pretty_midi.Instrument(program=32, name="bass")
    for i, p in enumerate([43, 43, 48, 50] * 5):
        bass.notes.append(pretty_midi.Note(velocity=70, pitch=p, start=i, end=i + 0.9))
    pm.instruments += [fiddle, bass]
    pm.write(str(path))
    return path


def piano_roll_shot(app: QApplication, window: MainWindow, out: Path) -> None:
    roll = window.piano_roll
    window.open_file(fiddle_tune(Path(tempfile.mkdtemp()) / "fiddle-tune.mid"))
    wait_idle(app, window)
    roll.flip_target.setCurrentText("bach")
    roll.flip_button.click()
    wait_idle(app, window)
    for title in ("Layers and filters", "Dream", "Similarity", "Kernels", "Training"):
        window.docks[title].hide()  # the piano roll gets the whole left column
    window.resizeDocks([window.docks["Spectrogram"], window.docks["Predictions"]], [SIZE[0] - 380, 380], Qt.Horizontal)
    for _ in range(5):
        app.processEvents()
    roll.view.setRange(xRange=(9, 21), yRange=(40, 82), padding=0)
    for _ in range(5):
        app.processEvents()
    save(window, out / "piano-roll.png")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "resources/screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.screenshot_mode = True  # no offer to restore piano-roll edits
    window.resize(*SIZE)
    window.show()
    if "--piano-roll-only" in sys.argv:
        piano_roll_shot(app, window, out)
        window.close()
        print(f"screenshot in {out}")
        return
    loop = QEventLoop()
    window.ready.connect(loop.quit)
    window.start(path=demo_path())
    loop.exec()
    wait_idle(app, window)
    save(window, out / "main-window.png")

    window.docks["Kernels"].raise_()
    tall(app, window, "Kernels")
    window.kernels.refresh_button.click()
    wait_idle(app, window)
    save(window, out / "kernels.png")

    window.docks["Similarity"].raise_()
    tall(app, window, "Similarity")
    window.similarity.requested.emit(str(demo_path()))
    wait_idle(app, window)
    save(window, out / "similarity.png")

    window.docks["Dream"].raise_()
    tall(app, window, "Dream")  # its result sits below its form
    window.dream.steps.setValue(30)
    window.dream.start_button.click()
    wait_idle(app, window)
    save(window, out / "dream.png")

    piano_roll_shot(app, window, out)
    window.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
