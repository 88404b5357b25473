"""Shared fixtures and helpers (``from conftest import …``). Tests that need ../shared/data
use ``shared_data`` and skip without it; the desktop app's tests use ``window`` (a shown
main window with ``isolated`` settings), ``main_window``, ``start_and_wait`` and ``wait_idle``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MUSICLENS_SHARED_DATA`` or ``<repo>/../shared/data``, if it exists."""
    env = os.environ.get("MUSICLENS_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; the test is skipped with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real-data tier: ../shared/data is not present on this machine")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tone(freqs=(440.0,), *, sr: int = 22050, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    """A sum of sines, float32 (samples,)."""
    t = np.arange(int(sr * seconds)) / sr
    return (amp * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


@pytest.fixture
def run_cli(capsys):
    """Run ``musiclens ARGS…`` in this process; returns (exit status, stdout, stderr)."""
    from musiclens import cli

    def run(*argv) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


# ------------------------------------------------------------------ the desktop app's window
# Qt is imported only when a GUI test asks: the other tests run without it. A test module
# sets QT_QPA_PLATFORM (and, for playback capture, ALSA_CONFIG_PATH) before importing Qt.

#: how long a test waits for the window to load a model and analyse a file
GUI_TIMEOUT_MS = 120_000


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """This test's own settings, crash-recovery file, app data (trained models) and training
    cache, all under ``tmp_path``, which is returned."""
    monkeypatch.setenv("MUSICLENS_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("MUSICLENS_RECOVERY", str(tmp_path / "recovery.json"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def open_window(qtbot, *, show: bool = True):
    """A new MainWindow, registered with qtbot (shown unless ``show`` is false)."""
    from musiclens.app.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    if show:
        win.show()
    return win


@contextlib.contextmanager
def main_window(qtbot, *, show: bool = True):
    """``open_window`` that closes the window on the way out, whatever happened."""
    win = open_window(qtbot, show=show)
    try:
        yield win
    finally:
        win.close()


@pytest.fixture
def window(qtbot, isolated):
    """A shown MainWindow with ``isolated`` settings; nothing loaded yet."""
    with main_window(qtbot) as win:
        yield win


def start_and_wait(qtbot, win, path=None, *, model: str | None = None, timeout: int = GUI_TIMEOUT_MS) -> None:
    """Load ``model`` (the window's default) and open ``path`` (the demo); wait for ``ready``."""
    from musiclens.app.main import demo_path

    kwargs = {} if model is None else {"model": model}
    with qtbot.waitSignal(win.ready, timeout=timeout):
        win.start(path=path or demo_path(), **kwargs)


def wait_idle(qtbot, win, timeout: int = GUI_TIMEOUT_MS) -> None:
    """Until the window's worker has nothing running or queued."""
    qtbot.waitUntil(lambda: not win.worker.pending(), timeout=timeout)
