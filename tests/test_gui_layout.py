"""The window fits a laptop: every default layout (audio, and after opening a MIDI file)
fits 1280x800 and 1366x768 with every dock on screen (visible, or a tab that raises into
view), and ``musiclens gui --screenshot OUT.png --geometry WxH`` saves exactly WxH."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from conftest import GUI_TIMEOUT_MS, start_and_wait
from midi_tunes import folk_tune

SCREENS = ((1280, 800), (1366, 768))
# a laptop's 768 px less a desktop panel and a title bar
MAX_MIN_HEIGHT = 700


def settle(qtbot, ms: int = 30) -> None:
    QApplication.processEvents()
    qtbot.wait(ms)


def assert_fits(qtbot, win, label: str) -> None:
    hint = win.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= MAX_MIN_HEIGHT, f"{label}: minimum {hint}"
    for w, h in SCREENS:
        win.resize(w, h)
        settle(qtbot)
        assert (win.width(), win.height()) == (w, h), f"{label}: asked {w}x{h}, got {win.size()}"
        inside = win.rect()
        for title, dock in win.docks.items():
            assert dock.toggleViewAction().isChecked(), f"{label}: {title} is closed in the default layout"
            dock.raise_()  # a tab comes to the front
            settle(qtbot, 10)
            geo = dock.geometry()
            assert dock.isVisible() and not dock.visibleRegion().isEmpty(), f"{label} {w}x{h}: {title} hidden"
            assert inside.contains(geo), f"{label} {w}x{h}: {title} at {geo} is outside {inside}"
            assert geo.width() >= 200 and geo.height() >= 100, f"{label} {w}x{h}: {title} squeezed to {geo}"


def test_default_layouts_fit_1280x800_and_1366x768(qtbot, window, isolated):
    assert_fits(qtbot, window, "bare window")
    start_and_wait(qtbot, window)
    window.reset_layout()
    assert_fits(qtbot, window, "audio")

    # a MIDI file with a long name, then a proposal bar and the recovery banner on top
    roll = window.piano_roll
    midi = folk_tune(isolated / ("a-rather-long-file-name-of-a-fiddle-tune-" * 3 + ".mid"), n=40)
    with qtbot.waitSignal(roll.classified, timeout=GUI_TIMEOUT_MS):
        window.open_file(midi)
    assert_fits(qtbot, window, "MIDI")
    roll.apply(lambda ed: ed.move([int(roll.editor.ids[0])], 0.25, 1))  # autosaves a recovery file
    assert roll.offer_restore()
    assert_fits(qtbot, window, "MIDI with the recovery banner")


def test_the_right_column_stacked_still_fits(qtbot, window, isolated):
    """A user who drags "Hear the explanation" out of its tab under "CAM and saliency" (a
    saved layout restores it so): the two forms scroll inside their docks, so the window
    still fits a laptop screen (it grew to 871 px tall before)."""
    start_and_wait(qtbot, window)
    cam, heard = window.docks["CAM and saliency"], window.docks["Hear the explanation"]
    window.removeDockWidget(heard)  # untab it, then put it under CAM and saliency
    window.addDockWidget(Qt.RightDockWidgetArea, heard)
    heard.show()
    window.splitDockWidget(cam, heard, Qt.Vertical)
    settle(qtbot)
    assert not window.tabifiedDockWidgets(cam), "the two docks are still tabbed"
    hint = window.minimumSizeHint()
    assert hint.height() <= MAX_MIN_HEIGHT, f"stacked right column: minimum {hint}"


def test_screenshot_geometry_is_exact(isolated):
    import subprocess
    import sys

    from PIL import Image

    out = isolated / "missing" / "folder" / "shot.png"  # the output rule: folders are made
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")  # a process of its own: it quits its app
    r = subprocess.run(
        [sys.executable, "-m", "musiclens", "gui", "--demo", "--screenshot", str(out), "--geometry", "1366x768"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as image:
        assert image.size == (1366, 768)


@pytest.mark.parametrize("bad", ["1280", "1280x", "x800", "1280*800", "10x10", "99999x800"])
def test_bad_geometry_is_one_line_and_status_2(bad, isolated, run_cli):
    status, out, err = run_cli("gui", "--demo", "--screenshot", isolated / "x.png", "--geometry", bad)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--geometry" in err and bad in err, err
    assert not (isolated / "x.png").exists()
