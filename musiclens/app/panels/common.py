"""Small shared pieces of the panels: array -> QImage, class-name ticks, export helpers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QWidget


def to_pixmap(
    values: np.ndarray, *, width: int, height: int, colormap: str = "magma", levels: tuple[float, float] | None = None
) -> QPixmap:
    """(F, T) array, row 0 = low frequency, -> a colour pixmap (low rows at the bottom)."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    lo, hi = levels if levels is not None else (float(v.min()), float(v.max()))
    scaled = np.zeros_like(v) if hi <= lo else (v - lo) / (hi - lo)
    lut = pg.colormap.get(colormap).getLookupTable(nPts=256, alpha=False)  # (256, 3) uint8
    rgb = np.ascontiguousarray(lut[np.clip((scaled * 255).astype(int), 0, 255)][::-1])
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(width, height)


def thinned_ticks(ticks: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """Class names (position, name), best first, as pyqtgraph tick levels it thins when
    crowded: every 4th name, then the names halfway between, then the rest. pyqtgraph always
    draws the first level and leaves out a further one whose text would fill too much of the
    axis, so a short plot labels every 4th or 2nd class (the best always) instead of drawing
    the names over each other, and a tall one labels all."""
    return [ticks[0::4], ticks[2::4], ticks[1::2]]


def small_tick_font(plot: pg.PlotWidget, axis: str = "left", points: int = 8) -> None:
    """Tick labels of ``plot``'s ``axis`` in a ``points``-point font (class names)."""
    font = QFont()
    font.setPointSize(points)
    plot.getAxis(axis).setTickFont(font)


def ask_save_path(parent: QWidget, title: str, default: str, filters: str) -> Path | None:
    path, _ = QFileDialog.getSaveFileName(parent, title, default, filters)
    return Path(path) if path else None


def save_table(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
