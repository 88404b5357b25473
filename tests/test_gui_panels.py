"""Panels: the Training panel's settings reach the trainer, the similarity curves are drawn
over layer names grouped by layer kind, and dead kernels are visible in the Kernels panel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt

SHOTS = os.environ.get("MUSICLENS_PANEL_SHOTS")  # a folder: save a PNG of each panel there


def shot(widget, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(Path(SHOTS) / f"{name}.png"))


# ----------------------------------------------------------------------------- training
def test_training_controls_reach_the_trainer(qtbot, tmp_path, monkeypatch):
    from musiclens.app.window import MainWindow
    from musiclens.core.training import entry, events

    monkeypatch.setenv("MUSICLENS_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    seen = {}

    def fake_train(root, out, arch, **kw):  # what the window's training job asks the core for
        seen.update(kw, arch=arch, root=root, out=out)
        yield events.Finished(
            None,
            {
                "arch": arch,
                "classes": ["a", "b"],
                "split": {"train": 1, "val": 1, "test": 1},
                "test_accuracy": 1.0,
                "test_track_accuracy": 1.0,
                "chance": 0.5,
                "out": str(out),
            },
        )

    monkeypatch.setattr(entry, "train", fake_train)
    win = MainWindow()
    qtbot.addWidget(win)
    panel = win.training
    panel.folder.setText(str(tmp_path))
    panel.epochs.setValue(7)
    panel.lr.setValue(0.005)
    panel.batch_size.setValue(8)
    panel.val_fraction.setValue(0.2)
    panel.test_fraction.setValue(0.15)
    panel.patience.setValue(3)
    shot(panel, "training")
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=60_000)
    config = seen["config"]
    assert (config.epochs, config.lr, config.batch_size, config.patience) == (7, 0.005, 8, 3)
    assert seen["fractions"] == pytest.approx((0.65, 0.2, 0.15))
    assert seen["arch"] == "vanilla-cnn" and seen["root"] == str(tmp_path)
    assert "Saved to" in panel.report.text()
    # patience 0 reads "never": no early stopping
    panel.patience.setValue(0)
    assert panel.options()["patience"] is None and panel.patience.text() == "never"
    win.close()


def test_training_panel_refuses_splits_that_leave_nothing_to_train(qtbot):
    from musiclens.app.panels.training import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    requested = []
    panel.start_requested.connect(requested.append)
    panel.folder.setText("/somewhere")
    panel.val_fraction.setValue(0.5)
    panel.test_fraction.setValue(0.5)
    panel.start_button.click()
    assert not requested and "split" in panel.report.text()


# ----------------------------------------------------------------------------- similarity
LAYERS = [
    "input / batch norm",
    "block 1 / conv",
    "block 1 / batch norm",
    "block 1",
    "block 2 / conv",
    "block 2 / batch norm",
    "block 2",
    "pool",
    "dense",
]
KINDS = {
    "input / batch norm": "batchnorm",
    "block 1 / conv": "conv",
    "block 1 / batch norm": "batchnorm",
    "block 1": "block",
    "block 2 / conv": "conv",
    "block 2 / batch norm": "batchnorm",
    "block 2": "block",
    "pool": "pool",
    "dense": "dense",
}


def layer_ticks(plot) -> tuple[str, dict[str, float]]:
    """The axis whose ticks name layers ("left" or "bottom") and layer -> its coordinate."""
    for name in ("bottom", "left"):
        levels = plot.getAxis(name)._tickLevels or []
        ticks = {label: float(pos) for level in levels for pos, label in level}
        if set(ticks) & set(LAYERS):
            return name, ticks
    raise AssertionError("no axis is labelled with layer names")


def check_grouped(plot) -> None:
    axis, ticks = layer_ticks(plot)
    assert set(ticks) == set(LAYERS)  # every layer by its name, no bare index
    order = sorted(LAYERS, key=ticks.get)
    kinds_in_order = [KINDS[name] for name in order]
    runs = [k for i, k in enumerate(kinds_in_order) if i == 0 or k != kinds_in_order[i - 1]]
    assert len(runs) == len(set(runs)), f"layers of one kind are not contiguous: {kinds_in_order}"
    for kind in set(KINDS.values()):  # within a kind, input -> output order
        members = [n for n in order if KINDS[n] == kind]
        assert members == [n for n in LAYERS if KINDS[n] == kind]
    by_pos = {round(v, 6): k for k, v in ticks.items()}
    items = plot.listDataItems()
    assert items
    for item in items:  # no line joins two layers of different kinds
        xs, ys = item.getData()
        pos = np.asarray(ys if axis == "left" else xs, float)
        val = np.asarray(xs if axis == "left" else ys, float)
        ok = np.isfinite(pos) & np.isfinite(val)
        for i in range(len(pos) - 1):
            if ok[i] and ok[i + 1]:
                a, b = by_pos[round(pos[i], 6)], by_pos[round(pos[i + 1], 6)]
                assert KINDS[a] == KINDS[b], f"{a} joined to {b}"


def test_similarity_curves_are_over_layer_names_grouped_by_kind(qtbot):
    from musiclens.app.panels.similarity import SimilarityPanel
    from musiclens.app.session import ClassSimilarity, Similarity

    panel = SimilarityPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 520)
    rng = np.random.default_rng(0)
    values = {k: rng.uniform(0, 1, len(LAYERS)) for k in ("pearson", "cosine", "nmse", "cka", "cka_baseline")}
    values["cka"][-1] = values["cka_baseline"][-1] = np.nan  # CKA of a dense layer
    maps = [("input", np.zeros((4, 5)), np.ones((4, 5)))] + [(n, np.zeros((2, 3)), np.ones((2, 3))) for n in LAYERS]
    r = Similarity("a.wav", "b.wav", 0.0, list(LAYERS), values, maps)
    r.kinds = dict(KINDS)
    panel.set_result(r)
    shot(panel, "similarity")
    check_grouped(panel.curves)

    per_class = {
        lab: {k: rng.uniform(0, 1, len(LAYERS)) for k in ("pearson", "cka", "cka_baseline")}
        for lab in ("guitar", "piano")
    }
    c = ClassSimilarity("/data", list(LAYERS), per_class, {"guitar": 3, "piano": 1})
    c.kinds = dict(KINDS)
    panel.set_classes(c)
    panel.metric_choice.setCurrentText("cka")
    shot(panel, "similarity-classes")
    check_grouped(panel.curves)


# ----------------------------------------------------------------------------- kernels
def test_dead_kernels_are_drawn_visibly(qtbot):
    from musiclens.app.panels.kernels import KernelsPanel

    panel = KernelsPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    norms = [3.0, 0.0, 2.0, 0.0, 1.0, 2.5, 0.0, 1.5]
    stats = {
        "model": "toy",
        "dead_rel_tol": 1e-3,
        "dead_abs_tol": 1e-8,
        "conv": [
            {
                "layer": "conv 1",
                "kernel_shape": [8, 1, 3, 3],
                "frobenius": norms,
                "dead": 3,
                "dead_indices": [1, 3, 6],
                "max_norm": 3.0,
                "median_norm": 1.75,
            }
        ],
        "batchnorm": [],
        "dense": [],
        "totals": {"kernels": 8, "dead": 3},
    }
    panel.set_stats(stats)
    qtbot.wait(50)
    shot(panel, "kernels")
    image = panel.norms.grab().toImage()
    red = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            red += c.red() > 180 and c.green() < 110 and c.blue() < 110
    assert red > 3 * 20, f"dead kernels cover only {red} red pixels"
    assert "dead: 3 of 8" in panel.dead_label.text()


def test_similarity_plot_is_whole_in_the_window_at_laptop_sizes(qtbot, window):
    """The demo compared with itself (pearson = cosine = 1, nMSE = 0) in the window at
    1280x800 and 1366x768, MSD MusiCNN's long layer names on the axis: the x range reaches 1,
    every point, group heading and legend entry is drawn inside the plot widget, the widget
    lies inside the dock, and the feature maps beside it have room for a layer's two maps."""
    import itertools

    from PySide6.QtCore import QRect, QRectF
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QApplication

    from conftest import start_and_wait, wait_idle
    from musiclens.app.main import demo_path
    from musiclens.app.panels.similarity import KIND_TITLES

    window.resize(1280, 800)
    start_and_wait(qtbot, window)
    dock = window.docks["Similarity"]
    dock.raise_()
    panel = window.similarity
    panel.requested.emit(str(demo_path()))
    wait_idle(qtbot, window)
    r = panel.result
    assert r is not None and r.name_a == r.name_b == demo_path().name
    assert np.nanmin(r.values["pearson"]) == pytest.approx(1.0, abs=1e-6)
    plot = panel.curves
    for w, h in ((1280, 800), (1366, 768)):
        window.resize(w, h)
        for _ in range(5):
            QApplication.processEvents()
        qtbot.wait(50)
        assert (window.width(), window.height()) == (w, h)
        shot(window, f"similarity-window-{w}x{h}")
        where = f"at {w}x{h}"

        # the plot widget lies wholly inside the dock
        in_dock = QRect(plot.mapTo(dock, plot.rect().topLeft()), plot.size())
        assert dock.rect().contains(in_dock), f"{where}: plot at {in_dock}, dock {dock.rect()}"

        # x covers [0, 1] and every point lies inside the view
        (x0, x1), (y0, y1) = plot.plotItem.vb.viewRange()
        assert x0 <= 0.0 and x1 >= 1.0, f"{where}: x range {x0:.2f}..{x1:.2f}"
        for item in plot.listDataItems():
            xs, ys = item.getData()
            ok = np.isfinite(xs) & np.isfinite(ys)
            assert np.all((xs[ok] >= x0) & (xs[ok] <= x1) & (ys[ok] >= min(y0, y1)) & (ys[ok] <= max(y0, y1)))

        # the plot, its legend and its group headings are drawn inside the widget
        shown = QRectF(plot.viewport().rect()).adjusted(-1, -1, 1, 1)  # mapFromScene rounds outwards

        def on_screen(item) -> QRectF:
            return plot.mapFromScene(item.sceneBoundingRect()).boundingRect().toRectF()

        assert shown.contains(on_screen(plot.plotItem)), f"{where}: plot {on_screen(plot.plotItem)} in {shown}"
        legend = plot.plotItem.legend
        assert len(legend.items) == len(r.values)
        assert shown.contains(on_screen(legend)), f"{where}: legend {on_screen(legend)} in {shown}"
        view = on_screen(plot.plotItem.vb)
        headings = [item for item in plot.plotItem.vb.addedItems if getattr(item, "label", None) is not None]
        kinds = {r.kinds.get(n, "layer") for n in r.layers}
        assert {h.label.toPlainText() for h in headings} == {KIND_TITLES.get(k, k) for k in kinds}
        for h in headings:
            text = h.label.toPlainText()
            assert view.contains(on_screen(h.label)), f"{where}: heading {text!r} at {on_screen(h.label)} in {view}"
        # layer names on the left axis: no wider than the axis, not on top of each other
        axis = plot.getAxis("left")
        ticks = sorted((pos, label) for level in axis._tickLevels for pos, label in level)
        metrics = QFontMetrics(panel.tick_font)
        assert ticks and max(metrics.horizontalAdvance(s) for _pos, s in ticks) < axis.width()
        pitch = view.height() / abs(y1 - y0)  # px per row
        assert min(b[0] - a[0] for a, b in itertools.pairwise(ticks)) * pitch >= metrics.capHeight() - 0.5
        for pos, label in ticks:  # a layer's name, or its end after "…"
            name = next(n for n, row in panel.layer_rows.items() if row == pos)
            assert label == name or (label.startswith("…") and name.endswith(label[1:]))
        # the feature maps beside it get the rest: a layer's two maps side by side
        maps = panel.maps_scroll
        pair = max(panel.maps_grid.cellRect(2, c).right() for c in (0, 1))
        assert maps.isVisible() and maps.viewport().width() > pair, f"{where}: maps pane {maps.width()} px"
