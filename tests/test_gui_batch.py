"""File > Open batch results…: the table of a ``musiclens batch`` run, sortable; a double-click
opens the row's file with the run's model (loaded first when the window has another)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import interpret_nets as nets
from conftest import GUI_TIMEOUT_MS
from musiclens.core import analyses, audio
from musiclens.core.analyses.batch import batch, read_table
from musiclens.core.models import registry, study

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model folder, collection folder, batch output folder) of a tiny gap-cnn run."""
    root = tmp_path_factory.mktemp("gui-batch")
    m = study.create(
        "gap-cnn", ["low", "mid", "high"], front_end=nets.logmel_fe(), patch_seconds=0.5, filters=(4, 4, 4), maps=4
    )
    model_dir = registry.save(m, root / "tiny-gap")
    folder = root / "collection"
    folder.mkdir()
    for i, freqs in enumerate(((200.0, 400.0), (900.0, 1300.0), (2500.0, 3300.0))):
        audio.save(folder / f"s{i}.wav", nets.signal(1.2, freqs=freqs, sr=nets.SR, seed=i), nets.SR)
    (folder / "broken.wav").write_bytes(b"not audio")
    out = root / "out"
    analyses.run(batch(folder, model_dir, "tags,attribution:gradient", out, device="cpu"))
    return model_dir, folder, out


def test_reading_a_large_table_is_fast_enough_for_the_gui_thread(tmp_path):
    """10,000 rows: pyarrow reads and converts them in a fraction of a second (printed)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10_000
    table = pa.table(
        {
            "path": [f"genre{i % 10}/track{i:05d}.wav" for i in range(n)],
            "kind": ["audio"] * n,
            "status": ["ok"] * n,
            "error": [None] * n,
            "predicted": [f"tag{i % 50}" for i in range(n)],
            "confidence": [i / n for i in range(n)],
            "top_tags": [[f"tag{j}" for j in range(5)]] * n,
            "top_probabilities": [[0.5, 0.2, 0.1, 0.1, 0.1]] * n,
            "probabilities": [[0.02] * 50] * n,
            "attribution:gradient.mean": [0.1] * n,
            "attribution:gradient.max": [0.9] * n,
            "attribution:gradient.entropy": [0.5] * n,
        }
    ).replace_schema_metadata({"musiclens": json.dumps({"folder": "/x"})})
    pq.write_table(table, tmp_path / "summary.parquet")
    t0 = time.perf_counter()
    read = read_table(tmp_path, lists=False)  # what the dialog reads
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    everything = read_table(tmp_path)
    with_lists = time.perf_counter() - t0
    print(f"read_table of {n} rows: {seconds * 1000:.0f} ms, with the list columns {with_lists * 1000:.0f} ms")
    assert len(read.rows) == n and read.rows[7][0] == "genre7/track00007.wav" and "top_tags" not in read.columns
    assert everything.columns == list(table.column_names) and everything.rows[3][6] == [f"tag{j}" for j in range(5)]
    assert seconds < 5  # generous on a loaded CI machine; measured ~0.1 s on the dev machine


def test_batch_results_table_sorts_and_a_row_opens_its_file_with_the_model(qtbot, window, batch_out):
    from PySide6.QtCore import Qt

    model_dir, folder, out = batch_out
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert "Open &batch results…" in [a.text() for a in file_menu.actions()]

    dialog = window.open_batch_results(out / "summary.parquet")
    assert dialog is not None and dialog.isVisible() and window.batch_results is dialog
    headers = [dialog.model.headerData(c, Qt.Horizontal) for c in range(dialog.model.columnCount())]
    assert headers[:4] == ["file", "status", "class", "confidence"]
    assert "attribution:gradient.mean" in headers and headers[-1] == "error"
    assert dialog.proxy.rowCount() == 4
    assert [dialog.proxy.index(r, 0).data() for r in range(4)] == ["broken.wav", "s0.wav", "s1.wav", "s2.wav"]

    conf = headers.index("confidence")
    dialog.view.sortByColumn(conf, Qt.DescendingOrder)
    shown = [dialog.proxy.index(r, conf).data(Qt.UserRole) for r in range(4)]
    assert shown[:3] == sorted(shown[:3], reverse=True) and shown[3] == float("-inf")  # the error row last
    assert dialog.proxy.index(3, 0).data() == "broken.wav"
    assert dialog.proxy.index(3, 1).data() == "error"

    dialog.filter.setText("s1")
    assert dialog.proxy.rowCount() == 1
    dialog.filter.clear()

    # double-click the best row: the window has no model yet, so it loads the batch's, then opens the file
    first = dialog.proxy.index(0, 0)
    expected = folder.resolve() / first.data()
    with qtbot.waitSignal(window.ready, timeout=GUI_TIMEOUT_MS):
        rect = dialog.view.visualRect(first)
        qtbot.mouseClick(dialog.view.viewport(), Qt.LeftButton, pos=rect.center())  # a real double-click's press
        qtbot.mouseDClick(dialog.view.viewport(), Qt.LeftButton, pos=rect.center())
    assert Path(window.session.summary.source).resolve() == model_dir.resolve()
    assert window.session.recording.path == expected

    # another row, same model: opened without loading the model again
    loads = []
    window._load_model = lambda *a, **k: loads.append(a)
    second = dialog.proxy.index(1, 0)
    with qtbot.waitSignal(window.ready, timeout=GUI_TIMEOUT_MS):
        dialog.view.setCurrentIndex(second)
        dialog.open_button.click()
    assert loads == [] and window.session.recording.path == folder.resolve() / second.data()


def test_an_unreadable_table_is_an_error_message_not_a_crash(window, tmp_path):
    (tmp_path / "summary.parquet").write_bytes(b"not parquet")
    assert window.open_batch_results(tmp_path / "summary.parquet") is None
    assert "open batch results" in window.last_error
