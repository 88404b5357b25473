"""Spectrogram viewer: zoom/pan, axes in seconds and Hz, colour map and levels, playhead,
click to seek, a time selection, and an overlay (CAM, saliency, a filter's activation)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget
from PySide6.QtCore import Qt

COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "turbo", "CET-L1")

# Overlays fade to transparent where the map is near zero, so the spectrogram stays readable.
SIGNED_OVERLAY = pg.ColorMap([0.0, 0.5, 1.0], [(30, 110, 255, 235), (255, 255, 255, 0), (255, 40, 30, 235)])
UNSIGNED_OVERLAY = pg.ColorMap([0.0, 0.4, 1.0], [(0, 255, 200, 0), (0, 255, 200, 90), (120, 255, 60, 240)])


class FrequencyAxis(pg.AxisItem):
    """Left axis for an image whose rows are frequency bins: ticks labelled in Hz."""

    def __init__(self) -> None:
        super().__init__("left")
        self.bin_hz = np.zeros(0)
        self.setLabel("frequency (Hz)")

    def set_bins(self, bin_hz: np.ndarray) -> None:
        self.bin_hz = np.asarray(bin_hz, dtype=float)
        self.picture = None
        self.update()

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (Qt naming)
        if not len(self.bin_hz):
            return [f"{v:g}" for v in values]
        out = []
        for v in values:
            i = int(np.clip(round(v - 0.5), 0, len(self.bin_hz) - 1))
            hz = self.bin_hz[i]
            out.append(f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}")
        return out


class SpectrogramView(QWidget):
    """The image, its overlay, playhead and selection. Time in seconds on x, bins on y."""

    seek_requested = Signal(float)  # seconds
    selection_changed = Signal(float, float)  # start, end seconds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.freq_axis = FrequencyAxis()
        self.plot = pg.PlotWidget(axisItems={"left": self.freq_axis})
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setMenuEnabled(False)
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setOpacity(0.8)
        self.overlay.setZValue(5)
        self.plot.addItem(self.image)
        self.plot.addItem(self.overlay)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#35e0ff", width=2))
        self.playhead.setZValue(20)
        self.plot.addItem(self.playhead)
        self.selection = pg.LinearRegionItem(values=(0, 0), brush=pg.mkBrush(255, 255, 255, 30))
        self.selection.setZValue(10)
        self.selection.hide()
        self.plot.addItem(self.selection)
        self.selection.sigRegionChangeFinished.connect(
            lambda: self.selection_changed.emit(*self.selection.getRegion()))
        self.plot.scene().sigMouseClicked.connect(self._clicked)

        self.histogram = pg.HistogramLUTWidget(image=self.image)
        self.histogram.setMaximumWidth(110)
        self.cmap = QComboBox()
        self.cmap.addItems(COLORMAPS)
        self.cmap.currentTextChanged.connect(self.set_colormap)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(80)
        self.opacity.setMaximumWidth(120)
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        self.caption = QLabel("")
        self.caption.setStyleSheet("color: palette(mid);")

        controls = QHBoxLayout()
        controls.addWidget(QLabel("colours"))
        controls.addWidget(self.cmap)
        controls.addWidget(QLabel("overlay opacity"))
        controls.addWidget(self.opacity)
        controls.addStretch(1)
        controls.addWidget(self.caption)
        body = QHBoxLayout()
        body.addWidget(self.plot, 1)
        body.addWidget(self.histogram)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addLayout(body, 1)
        self.duration_s = 0.0
        self.n_bins = 0
        self.set_colormap(COLORMAPS[0])

    # ------------------------------------------------------------------ content
    def set_colormap(self, name: str) -> None:
        cmap = pg.colormap.get(name)
        self.histogram.gradient.setColorMap(cmap)

    def set_spectrogram(self, values: np.ndarray, duration_s: float, bin_hz: np.ndarray,
                        caption: str = "") -> None:
        """values: (F, T) low frequencies in row 0 (drawn at the bottom)."""
        self.duration_s = float(duration_s)
        self.n_bins = values.shape[0]
        lo, hi = np.percentile(values, [1, 99.9]) if values.size else (0, 1)
        self.image.setImage(values, autoLevels=False, levels=(float(lo), float(hi)))
        self.image.setRect(QRectF(0, 0, self.duration_s, self.n_bins))
        self.histogram.setLevels(float(lo), float(hi))
        self.freq_axis.set_bins(bin_hz)
        self.clear_overlay()
        self.caption.setText(caption)
        self.plot.setLimits(xMin=-0.05 * self.duration_s, xMax=1.05 * self.duration_s,
                            yMin=-1, yMax=self.n_bins + 1)
        self.plot.setRange(xRange=(0, self.duration_s), yRange=(0, self.n_bins), padding=0)
        self.selection.setRegion((0, 0))
        self.selection.hide()

    def set_overlay(self, values: np.ndarray, *, start_s: float = 0.0, end_s: float | None = None,
                    symmetric: bool = False, caption: str = "") -> None:
        """values: (F', T') drawn over [start_s, end_s] x all bins (rows resampled by Qt)."""
        end_s = self.duration_s if end_s is None else end_s
        values = np.asarray(values, dtype=np.float32)
        hi = float(np.nanmax(np.abs(values))) or 1.0
        levels = (-hi, hi) if symmetric else (float(np.nanmin(values)), hi)
        self.overlay.setImage(values, autoLevels=False, levels=levels)
        self.overlay.setColorMap(SIGNED_OVERLAY if symmetric else UNSIGNED_OVERLAY)
        self.overlay.setRect(QRectF(start_s, 0, end_s - start_s, self.n_bins))
        self.overlay.show()
        if caption:
            self.caption.setText(caption)

    def clear_overlay(self) -> None:
        self.overlay.clear()
        self.overlay.hide()

    def set_playhead(self, seconds: float) -> None:
        self.playhead.setValue(seconds)

    def set_selection(self, start_s: float, end_s: float) -> None:
        self.selection.setRegion((start_s, end_s))
        self.selection.show()

    def selected_range(self) -> tuple[float, float] | None:
        if not self.selection.isVisible():
            return None
        a, b = self.selection.getRegion()
        return (a, b) if b - a > 1e-3 else None

    # ------------------------------------------------------------------ mouse
    def _clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or not self.duration_s:
            return
        point = self.plot.getViewBox().mapSceneToView(event.scenePos())
        t = float(np.clip(point.x(), 0, self.duration_s))
        if event.modifiers() & Qt.ShiftModifier:  # shift-click: extend the selection
            a = self.playhead.value()
            self.set_selection(min(a, t), max(a, t))
            self.selection_changed.emit(min(a, t), max(a, t))
        else:
            self.seek_requested.emit(t)
