"""Faithfulness in the window: "Score this map" beside the CAM panel's map, and the "Compare
methods" table (deletion and insertion AUC against random, sanity, time), computed on the worker
thread for the current file, target and patch, and cancellable (the real bundled MusiCNN)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import start_and_wait, wait_idle

SLOW_MS = 300_000  # the machine's cores are shared: MusiCNN maps and curves take a while


def test_score_this_map_shows_aucs_beside_the_map(qtbot, window):
    start_and_wait(qtbot, window)  # the first analysis shows a Grad-CAM of the top tag
    panel = window.attribution
    assert panel.result is not None and panel.score_button.isEnabled()
    window.faithfulness.steps.setValue(4)  # the curves' settings are the Compare panel's
    panel.score_button.click()
    assert not panel.score_button.isEnabled() and "scoring" in panel.scores.text()
    qtbot.waitUntil(lambda: "Faithfulness at" in panel.scores.text(), timeout=SLOW_MS)
    text = panel.scores.text()
    assert "deletion AUC" in text and "insertion AUC" in text and "random" in text
    assert "lower is better" in text and "higher is better" in text
    assert panel.score_button.isEnabled()
    panel.clear()  # another recording: the scores go with the map
    assert panel.scores.text() == "" and not panel.score_button.isEnabled()


def test_compare_methods_fills_the_table_and_can_be_cancelled(qtbot, window):
    start_and_wait(qtbot, window)
    wait_idle(qtbot, window)
    window.attribution.compare_button.click()
    dock = window.docks["Compare methods"]
    assert dock.isVisible()
    panel = window.faithfulness
    assert panel.table.rowCount() == 0 and "lower is better" in panel.better.text()
    for name, box in panel.choices.items():
        box.setChecked(name in ("gradient", "grad-cam"))
    panel.steps.setValue(4)
    panel.sanity.setChecked(True)
    panel.run_button.click()
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=SLOW_MS)
    result = panel.result
    target = window.attribution.target.currentData()
    assert result.target == target and target in panel.caption.text()
    assert panel.table.rowCount() == 2
    shown = [panel.table.item(r, 0).text() for r in range(2)]
    assert sorted(shown) == ["Grad-CAM", "Gradient (saliency)"] == sorted(s.label for s in result.methods)
    for row, s in enumerate(result.methods):
        assert not s.error and math.isfinite(s.deletion_auc)
        shown = panel.table.item(row, 1).text()
        assert shown.startswith(f"{s.deletion_auc:.3f}") and shown.endswith("✓" if s.beats_random[0] else "✗")
        assert panel.table.item(row, 3).text() == f"{s.random_deletion_auc:.3f} / {s.random_insertion_auc:.3f}"
        assert s.sanity is not None and panel.table.item(row, 4).text() == ("pass" if s.sanity.passed else "FAIL")
        assert panel.table.item(row, 5).text() == f"{s.seconds:.1f}"
    grad_cam = next(s for s in result.methods if s.method == "grad-cam")
    assert grad_cam.layer == window.attribution.layer.currentText()
    assert "lower is better" in panel.better.text() and "higher is better" in panel.better.text()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()

    # a slow comparison, cancelled: the table keeps the last result
    for name, box in panel.choices.items():
        box.setChecked(name == "integrated-gradients")
    panel.run_button.click()
    qtbot.waitUntil(lambda: "…" not in panel.status.text(), timeout=30_000)  # it has started
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.status.text() == "cancelled", timeout=SLOW_MS)
    assert panel.result is result and panel.table.rowCount() == 2 and panel.run_button.isEnabled()
    wait_idle(qtbot, window)
