"""The "Hear the explanation" panel, driven as a user would (offscreen Qt, the bundled MusiCNN
and demo): compute, read the three scores, play used / ignored, export, change the top-k."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import GUI_TIMEOUT_MS, start_and_wait, wait_idle

pytestmark = pytest.mark.gui


def test_hear_what_the_model_used_and_ignored(qtbot, window, tmp_path, monkeypatch):
    start_and_wait(qtbot, window)
    wait_idle(qtbot, window)
    panel = window.explanation
    assert "Hear the explanation" in window.docks
    assert not panel.play_used.isEnabled()  # nothing to play yet
    panel.method.setCurrentIndex(panel.method.findData("gradient-x-input"))
    assert panel.target.currentData() == window.session.analysis.top[0][0]
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=GUI_TIMEOUT_MS)
    r = panel.result
    assert r.method == "gradient-x-input" and r.target == panel.target.currentData()
    assert r.used_share == pytest.approx(0.2, abs=0.01)
    for version in ("original", "used", "ignored"):
        assert panel.scores[version].text() == f"{r.scores[version]:.3f}"
    np.testing.assert_allclose(r.used + r.ignored, r.original, atol=1e-5)
    # the cells used are drawn over the spectrogram
    assert window.spectrogram._overlay_data["values"].shape == r.mask.shape

    played = []
    monkeypatch.setattr(window, "play", lambda audio, sr, label, **kw: played.append((audio, sr, label, kw)))
    panel.play_used.click()
    panel.play_ignored.click()
    assert [p[2].split(":")[0] for p in played] == ["used", "ignored"]
    assert played[0][0] is r.used and played[1][0] is r.ignored and played[0][1] == r.sample_rate

    paths = panel.export(tmp_path / "heard")
    assert [p.name for p in paths] == ["used.wav", "ignored.wav"] and all(p.stat().st_size > 1000 for p in paths)

    panel.top.setValue(50)  # a new top-k masks the same attribution again
    panel.top.sliderReleased.emit()
    qtbot.waitUntil(lambda: panel.result is not r, timeout=GUI_TIMEOUT_MS)
    assert panel.result.attribution is r.attribution
    assert r.used_share < panel.result.used_share <= 0.5 + 1e-6  # at most 50 %: only positive cells are used

    window.session.open(window.session.recording.path)  # a recording opens again: the result is gone
    qtbot.waitUntil(lambda: panel.result is None, timeout=GUI_TIMEOUT_MS)
    assert not panel.play_used.isEnabled() and panel.scores["used"].text() == "–"
