"""Start the desktop application: the window first, the heavy engine in the worker."""

from __future__ import annotations

import sys
import time
from pathlib import Path

T0 = time.perf_counter()


def demo_path() -> Path:
    from musiclens.core.resources import demo_recording

    return demo_recording()


def run(
    *,
    file: str | None = None,
    model: str | None = None,
    demo: bool = False,
    screenshot: str | None = None,
    timeout_s: float = 300.0,
    geometry: tuple[int, int] | None = None,
    device: str | None = None,
) -> int:
    """Open the main window with ``model`` and ``file`` (the bundled demo by default).

    ``screenshot``: wait until the first analysis has finished, save a PNG of the whole
    window and quit (exit status 1 if an error or the timeout came first).
    ``geometry``: (width, height) of the window in pixels; a screenshot is exactly that size.
    ``device``: where the model runs this time (``"auto"``, ``"cpu"``, ``"cuda"``; default: the
    window's saved Model > Device setting, itself "auto" at first).
    """
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # no organisation name: Qt would put the data folder in …/MusicLens/MusicLens (musiclens.app.paths)
    app.setApplicationName("MusicLens")
    app.setDesktopFileName("musiclens")  # packaging/musiclens.desktop: icon, Wayland app id
    from musiclens.app.paths import migrate_data_home
    from musiclens.app.session import DEFAULT_MODEL
    from musiclens.app.window import MainWindow, settings

    moved = migrate_data_home(settings())  # once: the old doubled folder's files, moved up
    if moved:
        print(f"musiclens: {moved}", file=sys.stderr)

    window = MainWindow()
    window.screenshot_mode = bool(screenshot)
    if device:
        window.set_device(device, save=False)  # this run only; Model > Device saves a choice
    if geometry is not None:
        least = window.minimumSizeHint()
        if geometry[0] < least.width() or geometry[1] < least.height():
            window.worker.shutdown()
            window.collector.stop()
            from musiclens.core.errors import MusicLensError

            raise MusicLensError(
                f"--geometry {geometry[0]}x{geometry[1]}: the window needs at least {least.width()}x{least.height()}"
            )
        window.setWindowState(Qt.WindowNoState)  # not maximised: exactly that size
        window.resize(*geometry)
    window.show()
    shown_s = time.perf_counter() - T0
    if moved:
        window.statusBar().showMessage(moved, 30000)
    path = Path(file) if file else (demo_path() if demo or file is None else None)
    QTimer.singleShot(0, lambda: window.start(model=model or DEFAULT_MODEL, path=path))
    from musiclens.app.about import app_icon, maybe_show_first_run_guide

    app.setWindowIcon(app_icon())
    QTimer.singleShot(
        0,
        lambda: maybe_show_first_run_guide(
            window, screenshot=bool(screenshot), model=model or DEFAULT_MODEL, opened=Path(file).name if file else None
        ),
    )
    status = {"code": 0}
    if screenshot:

        def shoot(code: int) -> None:
            picture = window.grab()
            if geometry is not None and (picture.width(), picture.height()) != geometry:
                if (window.width(), window.height()) != geometry:  # e.g. a window manager said no
                    print(
                        f"musiclens: the window is {window.width()}x{window.height()}, not {geometry[0]}x{geometry[1]}",
                        file=sys.stderr,
                    )
                    code = code or 1
                else:  # a high-DPI screen: device pixels -> the asked size
                    picture = picture.scaled(*geometry, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
            if picture.save(screenshot):
                print(
                    f"window shown after {shown_s:.2f} s, analysed after "
                    f"{time.perf_counter() - T0:.2f} s; screenshot {screenshot}",
                    file=sys.stderr,
                )
            else:  # never claim a file that is not there
                print(f"musiclens: could not write the screenshot {screenshot}", file=sys.stderr)
                code = 2
            status["code"] = code
            window.close()
            app.quit()

        window.ready.connect(lambda: QTimer.singleShot(500, lambda: shoot(0)))
        window.session.error.connect(lambda m: QTimer.singleShot(200, lambda: shoot(1)))
        QTimer.singleShot(int(timeout_s * 1000), lambda: shoot(1))
    code = app.exec()
    return status["code"] or code
