"""Listening to filters (issue 13, item 4) and stopping dreams (item 5, the window's part).

Playback runs through the real :class:`Player` with a stand-in ``sounddevice`` module whose
output stream "plays" in a thread, faster than real time, so the tests need no sound card
(nor PortAudio) and still see a clip end as a user would."""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from typing import ClassVar

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt

from conftest import main_window, start_and_wait, wait_idle

TIMEOUT_MS = 120_000


class _CallbackStop(Exception):
    pass


class FakeOutputStream:
    """Calls the player's callback from a thread until it raises CallbackStop."""

    played: ClassVar[list[np.ndarray]] = []  # shared by every stream the test opens

    def __init__(self, *, samplerate, channels, dtype, callback, finished_callback=None):
        self.callback, self.channels = callback, channels
        self.active = False
        self._thread = None

    def start(self):
        self.active = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        out = np.zeros((2048, self.channels), np.float32)
        while self.active:
            try:
                self.callback(out, len(out), None, None)
                FakeOutputStream.played.append(out[:, 0].copy())
            except _CallbackStop:
                FakeOutputStream.played.append(out[:, 0].copy())
                break
            time.sleep(0.001)
        self.active = False

    def stop(self):
        self.active = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def close(self):
        pass


@pytest.fixture
def fake_audio(monkeypatch):
    module = types.ModuleType("sounddevice")
    module.OutputStream = FakeOutputStream
    module.CallbackStop = _CallbackStop
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    FakeOutputStream.played = []
    return module


@pytest.fixture
def window(qtbot, isolated, fake_audio):
    """The window with the demo analysed and nothing left running (playback: ``fake_audio``)."""
    with main_window(qtbot) as win:
        start_and_wait(qtbot, win, timeout=TIMEOUT_MS)
        wait_idle(qtbot, win, timeout=TIMEOUT_MS)
        yield win


def show_layer(qtbot, win, layer: str):
    assert win.layers.select_layer(layer)
    qtbot.waitUntil(lambda: win.layers.maps is not None and win.layers.maps.layer == layer, timeout=TIMEOUT_MS)
    return win.layers.maps


def click_filter(qtbot, win, row: int):
    """Click the grid's ``row``-th thumbnail; wait until its clip has played to the end."""
    item = win.layers.grid.item(row)
    before = getattr(win, "last_heard", None)
    rect = win.layers.grid.visualItemRect(item)
    qtbot.mouseClick(win.layers.grid.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: getattr(win, "last_heard", None) is not before, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not win.player.playing and not win.player._timer.isActive(), timeout=20_000)
    qtbot.wait(100)  # the last position report
    return win.last_heard, int(item.data(Qt.UserRole))


def test_a_filter_click_plays_the_patch_the_grid_shows_every_time(qtbot, window):
    maps = show_layer(qtbot, window, "mid end / conv 1 / conv")
    assert maps.start_s == 0.0  # the playhead is at the start
    for row in (0, 1, 2):
        heard, k = click_filter(qtbot, window, row)
        assert heard.label.startswith(f"mid end / conv 1 / conv #{k}")
        assert window.player.position_s > 0 or window.spectrogram.playhead.value() == pytest.approx(0.0)
        assert heard.start_s == pytest.approx(maps.start_s), f"click {row + 1} played {heard.start_s} s"
        # after the clip the playhead is back on the patch the grid shows
        assert window.current_patch() == maps.patch
    assert FakeOutputStream.played, "nothing was played"


def test_silent_filters_are_marked_and_ranked_by_what_is_heard(qtbot, window):
    """MusiCNN's mid-end conv 2 (read before its ReLU) on the demo's first patch: filters 24,
    57 and 18 have the largest mean square activation, all of it negative, so their
    auralisation (a ReLU'd mask) is digital silence."""
    from musiclens.core.interpret.auralise import auralise_filter

    layer = "mid end / conv 2 / conv"
    maps = show_layer(qtbot, window, layer)
    raw = (maps.maps**2).mean(axis=(1, 2))
    assert {24, 57, 18} <= set(np.argsort(-raw)[:5].tolist())  # what the old ranking put first
    grid = window.layers.grid
    order = [int(grid.item(i).data(Qt.UserRole)) for i in range(grid.count())]
    audio, _ = window.session.patch_audio(maps.patch)

    def level(k: int) -> float:
        y = auralise_filter(window.session.model, audio, layer=layer, filter=k).audio[0].astype(np.float64)
        rms = float(np.sqrt(np.mean(y**2)))
        return 20 * np.log10(rms) if rms > 0 else -np.inf

    top = order[0]
    assert level(top) > -40.0, "the first filter in the grid must be audible"
    assert maps.level_db[top] == pytest.approx(level(top), abs=0.05)
    for k in (24, 57, 18):
        assert level(k) == -np.inf and maps.silent[k]
        item = grid.item(order.index(k))
        assert "silent" in item.text() and "silent" in item.toolTip()
        assert order.index(k) > order.index(top)
    # every silent filter comes after every audible one, and is marked
    silent_rows = [i for i, k in enumerate(order) if maps.silent[k]]
    assert silent_rows and min(silent_rows) > max(i for i, k in enumerate(order) if not maps.silent[k])
    assert all("silent" in grid.item(i).text() for i in silent_rows)
    assert "silent" in window.layers.info.text()
    # ranked by the energy of the positive part: the part the auralisation is made of
    energy = (np.clip(maps.maps, 0, None) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(maps.energy, energy, rtol=1e-5)
    audible = [k for k in order if not maps.silent[k]]
    assert audible == sorted(audible, key=lambda k: -energy[k])


def test_loudness_normalised_listening_shows_its_gain(qtbot, window):
    layer = "mid end / conv 2 / conv"
    maps = show_layer(qtbot, window, layer)
    grid = window.layers.grid
    order = [int(grid.item(i).data(Qt.UserRole)) for i in range(grid.count())]
    quiet = min((k for k in order if not maps.silent[k]), key=lambda k: maps.level_db[k])
    assert maps.level_db[quiet] < -25
    window.layers.normalise.setChecked(True)
    heard, k = click_filter(qtbot, window, order.index(quiet))
    assert k == quiet
    rms = float(np.sqrt(np.mean(heard.audio.astype(np.float64) ** 2)))
    peak = float(np.abs(heard.audio).max())
    target = window.layers.target_dbfs
    # at the target level, or as close as a 0.99 peak allows
    assert 20 * np.log10(rms) == pytest.approx(target, abs=0.1) or peak == pytest.approx(0.99, abs=1e-3)
    assert heard.gain_db == pytest.approx(20 * np.log10(rms) - maps.level_db[quiet], abs=0.1)
    assert heard.gain_db > 5
    shown = f"{heard.gain_db:+.1f} dB"
    assert shown in window.playing_label.text() and shown in window.layers.info.text()
    # a silent filter is not "normalised": it says so
    silent = next(k for k in order if maps.silent[k] and maps.level_db[k] == -np.inf)
    heard, _ = click_filter(qtbot, window, order.index(silent))
    assert heard.gain_db == 0.0 and not np.abs(heard.audio).max() > 0
    assert "silent" in window.layers.info.text()


def test_after_stop_play_and_export_use_the_stopped_dream(qtbot, window, tmp_path, monkeypatch):
    panel = window.dream
    panel.start.setCurrentIndex(panel.start.findData("sweep"))
    panel.steps.setValue(2)  # a first dream that finishes
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not window.worker.pending(), timeout=TIMEOUT_MS)
    first = panel.result
    assert first.steps == 2 and not first.stopped

    panel.steps.setValue(2000)
    seen = []
    window.session.progress.connect(lambda p: p.payload is not None and seen.append(p))
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=TIMEOUT_MS)
    assert not panel.play_button.isEnabled()  # while dreaming, Play would play the old dream
    qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.worker.pending(), timeout=TIMEOUT_MS)
    stopped = panel.result
    assert stopped is not first and stopped.stopped
    last_preview = int(seen[-1].message.split("step ")[1].split("/")[0])
    assert last_preview <= stopped.steps < 2000
    assert f"stopped at step {stopped.steps}" in panel.report.text()
    # what is on screen is the stopped dream
    np.testing.assert_array_equal(panel.preview_image.image, stopped.after)
    # Play plays it
    played = []
    panel.play_requested.connect(played.append)
    assert panel.play_button.isEnabled()
    qtbot.mouseClick(panel.play_button, Qt.LeftButton)
    assert played == [stopped]
    # Export writes it
    from musiclens.app.panels import dream as dream_panel
    from musiclens.core import audio

    out = tmp_path / "dream.wav"
    monkeypatch.setattr(dream_panel, "ask_save_path", lambda *a, **k: out)
    qtbot.mouseClick(panel.export_button, Qt.LeftButton)
    y, sr = audio.load(out, sr=None)
    assert sr == stopped.sample_rate
    np.testing.assert_allclose(y, stopped.audio, atol=1e-6)
