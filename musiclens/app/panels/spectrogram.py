"""Spectrogram viewer: zoom/pan, axes in seconds and Hz, colour map and levels, playhead,
click to seek, a time selection, and an overlay (CAM, saliency, a filter's activation).

Overlays are scaled robustly (percentiles, :mod:`musiclens.core.interpret.display`): signed
maps in a diverging blue-transparent-red map symmetric around 0, unsigned ones in a
sequential map; a colour bar under the controls says what the colours mean, a contrast
control bends the scale, and the spectrogram turns grey under an overlay (optional) so
the overlay's colours stand out.

A raw-waveform model's attribution has one value per sample, not a map over bins: it is
drawn as a curve in a lane under the image (:class:`AttributionLane`), on the same time
axis (the two plots' x ranges are linked and their left axes have the same width)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "turbo", "CET-L1")

# Overlays fade to transparent where the map is near its neutral value (0, or the 1st
# percentile), so the spectrogram stays readable; colours: musiclens.core.interpret.display.
OVERLAY_SCALES = (("p99", 99.0), ("p99.9", 99.9), ("p95", 95.0), ("max", 100.0))
UNDER_OVERLAY_COLORMAP = "CET-L1"  # greys


def histogram_widget(image: pg.ImageItem) -> pg.HistogramLUTWidget:
    """pyqtgraph's levels and colour-map widget for ``image``, built without importing
    matplotlib.pyplot. With matplotlib installed (the studies' figures), pyqtgraph 0.14's
    colour-map menu imports pyplot only to decide whether to add its "matplotlib > Others"
    submenu: the window showed 1.3-1.7 s later for it (best of 3, offscreen, a loaded 2-core
    machine). Here the submenu is always added, and its maps are listed when it first opens."""
    import importlib

    menus = importlib.import_module("pyqtgraph.widgets.ColorMapMenu")
    leftovers = getattr(menus, "find_mpl_leftovers", None)
    if leftovers is None:  # another pyqtgraph: as it comes
        return pg.HistogramLUTWidget(image=image)
    menus.find_mpl_leftovers = lambda: True  # read by the menu's constructor only
    try:
        return pg.HistogramLUTWidget(image=image)
    finally:
        menus.find_mpl_leftovers = leftovers  # the submenu, when opened, lists the real ones


class OverlayLegend(QWidget):
    """A colour bar for the overlay: the gradient and one line saying what it means."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QLabel()
        self.bar.setFixedSize(140, 12)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label, 1)

    def show_scale(self, lut: np.ndarray, text: str) -> None:
        """lut: (n, 4) RGBA drawn left to right over a grey checker-free backdrop."""
        from PySide6.QtGui import QImage, QPixmap

        rgba = np.asarray(lut, dtype=np.float64)
        backdrop = np.array([200.0, 200.0, 200.0])  # as over a mid-grey spectrogram
        a = rgba[:, 3:4] / 255.0
        rgb = np.ascontiguousarray((rgba[:, :3] * a + backdrop * (1 - a)).round().astype(np.uint8)[None])
        image = QImage(rgb.data, rgb.shape[1], 1, 3 * rgb.shape[1], QImage.Format_RGB888).copy()
        self.bar.setPixmap(QPixmap.fromImage(image).scaled(self.bar.width(), self.bar.height()))
        self.label.setText(text)
        self.setToolTip(text)

    def text(self) -> str:
        return self.label.text()


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


LEFT_AXIS_WIDTH = 64  # px, the image's and the lane's, so that their time axes line up
LANE_POINTS = 2000  # a curve of more samples is drawn as its min/max envelope over this many bins


def envelope(values: np.ndarray, start_s: float, end_s: float, points: int = LANE_POINTS):
    """(n,) values over [start_s, end_s] -> (times, low, high) of at most ``points`` bins:
    each bin's min and max (the curve itself when it is short), times at the bins' centres."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = len(v)
    step = max(1, int(np.ceil(n / points)))
    m = n // step
    edges = v[: m * step].reshape(m, step) if m else v[None, :0]
    low, high = edges.min(axis=1), edges.max(axis=1)
    if m * step < n:
        low, high = np.append(low, v[m * step :].min()), np.append(high, v[m * step :].max())
    width = (end_s - start_s) / max(n, 1)
    times = start_s + (np.arange(len(low)) * step + step / 2) * width
    return times, low, high


class AttributionLane(pg.PlotWidget):
    """A curve under the spectrogram: one value per sample of a raw-waveform model's input
    (its attribution), drawn as the min/max envelope; red above 0 (toward the class),
    blue below (against it); unsigned curves in teal."""

    def __init__(self) -> None:
        super().__init__()
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=True, y=False)
        self.setFixedHeight(110)
        self.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self.hideAxis("bottom")
        self.positive = pg.FillBetweenItem(pg.PlotDataItem(), pg.PlotDataItem(), brush=pg.mkBrush(220, 60, 40, 200))
        self.negative = pg.FillBetweenItem(pg.PlotDataItem(), pg.PlotDataItem(), brush=pg.mkBrush(40, 90, 220, 200))
        self.addItem(self.positive)
        self.addItem(self.negative)
        self.addItem(pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen(150, 150, 150)))
        self.data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def set_curve(self, values: np.ndarray, start_s: float, end_s: float, *, signed: bool, what: str) -> None:
        times, low, high = envelope(values, start_s, end_s)
        self.data = (times, low, high)
        zero = np.zeros_like(times)
        self.positive.setCurves(pg.PlotDataItem(times, np.maximum(high, 0)), pg.PlotDataItem(times, zero))
        self.negative.setCurves(pg.PlotDataItem(times, np.minimum(low, 0)), pg.PlotDataItem(times, zero))
        colour = (220, 60, 40, 200) if signed else (30, 170, 160, 220)
        self.positive.setBrush(pg.mkBrush(*colour))
        self.negative.setVisible(signed)
        top = float(max(np.abs(low).max(), np.abs(high).max())) if len(times) else 1.0
        self.setYRange(-top if signed else 0.0, top or 1.0, padding=0.05)
        self.setToolTip(what)
        self.show()

    def clear_curve(self) -> None:
        self.data = None
        self.hide()


class SpectrogramView(QWidget):
    """The image, its overlay, playhead and selection. Time in seconds on x, bins on y."""

    seek_requested = Signal(float)  # seconds
    selection_changed = Signal(float, float)  # start, end seconds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.freq_axis = FrequencyAxis()
        self.freq_axis.setWidth(LEFT_AXIS_WIDTH)
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
        self.selection.sigRegionChangeFinished.connect(lambda: self.selection_changed.emit(*self.selection.getRegion()))
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        QShortcut(
            QKeySequence(Qt.Key_Escape), self, activated=self.clear_selection, context=Qt.WidgetWithChildrenShortcut
        )

        self.histogram = histogram_widget(self.image)  # without matplotlib.pyplot at start
        self.histogram.setMaximumWidth(110)
        self.cmap = QComboBox()
        self.cmap.addItems(COLORMAPS)
        self.cmap.currentTextChanged.connect(self.set_colormap)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(80)
        self.opacity.setMaximumWidth(120)
        self.opacity.setMinimumWidth(60)  # a long caption must not squeeze it away
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        self.contrast = QSlider(Qt.Horizontal)
        self.contrast.setRange(0, 100)
        self.contrast.setValue(50)  # gamma 0.5
        self.contrast.setMaximumWidth(100)
        self.contrast.setMinimumWidth(60)
        self.contrast.setToolTip(
            "overlay contrast: 0 = linear, 50 = square root, 100 = fourth root of the "
            "scaled values (weak values become visible)"
        )
        self.contrast.valueChanged.connect(lambda _v: self._draw_overlay())
        self.overlay_scale = QComboBox()
        for text, p in OVERLAY_SCALES:
            self.overlay_scale.addItem(text, p)
        self.overlay_scale.setToolTip(
            "the overlay's full colour is at this percentile of its values "
            "(|values| for signed maps); beyond it, colours saturate"
        )
        self.overlay_scale.currentIndexChanged.connect(lambda _i: self._draw_overlay())
        self.grey_under = QCheckBox("grey under overlay")
        self.grey_under.setChecked(True)
        self.grey_under.setToolTip("draw the spectrogram in greys while an overlay is shown")
        self.grey_under.toggled.connect(lambda _on: self._apply_colormap())
        self.legend = OverlayLegend()
        self.legend.hide()
        self._overlay_data: dict | None = None
        self.caption = QLabel("")
        self.caption.setStyleSheet("color: palette(mid);")
        # the caption takes what the controls leave (clipped, full text in its tooltip)
        self.caption.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.caption.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("colours"))
        controls.addWidget(self.cmap)
        controls.addWidget(QLabel("overlay opacity"))
        controls.addWidget(self.opacity)
        controls.addWidget(QLabel("contrast"))
        controls.addWidget(self.contrast)
        controls.addWidget(QLabel("scale"))
        controls.addWidget(self.overlay_scale)
        controls.addWidget(self.grey_under)
        controls.addWidget(self.caption, 1)
        self.lane = AttributionLane()
        self.lane.setXLink(self.plot)
        self.lane.hide()
        plots = QVBoxLayout()
        plots.setSpacing(0)
        plots.addWidget(self.plot, 1)
        plots.addWidget(self.lane)
        body = QHBoxLayout()
        body.addLayout(plots, 1)
        body.addWidget(self.histogram)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(self.legend)
        layout.addLayout(body, 1)
        self.duration_s = 0.0
        self.n_bins = 0
        self.set_colormap(COLORMAPS[0])

    # ------------------------------------------------------------------ content
    def set_colormap(self, name: str) -> None:
        if self.cmap.currentText() != name and self.cmap.findText(name) >= 0:
            self.cmap.setCurrentText(name)  # comes back here through currentTextChanged
            return
        self._apply_colormap()

    def _apply_colormap(self) -> None:
        """The chosen colour map, or greys while an overlay is shown (when asked)."""
        grey = self.grey_under.isChecked() and self._overlay_data is not None
        self.histogram.gradient.setColorMap(
            pg.colormap.get(UNDER_OVERLAY_COLORMAP if grey else self.cmap.currentText())
        )

    def set_spectrogram(self, values: np.ndarray, duration_s: float, bin_hz: np.ndarray, caption: str = "") -> None:
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
        self.caption.setToolTip(caption)
        self.plot.setLimits(xMin=-0.05 * self.duration_s, xMax=1.05 * self.duration_s, yMin=-1, yMax=self.n_bins + 1)
        self.plot.setRange(xRange=(0, self.duration_s), yRange=(0, self.n_bins), padding=0)
        self.selection.setRegion((0, 0))
        self.selection.hide()

    def set_overlay(
        self,
        values: np.ndarray,
        *,
        start_s: float = 0.0,
        end_s: float | None = None,
        symmetric: bool = False,
        caption: str = "",
        what: str = "",
        ends: tuple[str, str] = ("against", "toward"),
    ) -> None:
        """values: (F', T') drawn over [start_s, end_s] x all bins (rows resampled by Qt); a
        1-D ``values`` (n,) (a raw-waveform model's attribution, one value per sample) is
        drawn as a curve in the lane under the image, over [start_s, end_s].

        symmetric : a signed map (diverging colours around 0), else unsigned (sequential).
        what : what the values are, for the colour bar (e.g. "IG attribution for 'rock'").
        ends : what negative and positive values mean (signed maps).
        """
        end_s = self.duration_s if end_s is None else end_s
        if np.ndim(values) == 1:
            self.clear_overlay()
            negative, positive = ends
            text = what or caption.removeprefix("overlay: ")
            if symmetric:
                text += f" (red: {positive}, blue: {negative})"
            self.lane.set_curve(np.asarray(values), start_s, end_s, signed=symmetric, what=text)
            if caption:
                self.caption.setText(caption + " (curve under the spectrogram)")
                self.caption.setToolTip(text)
            return
        self.lane.clear_curve()
        self._overlay_data = {
            "values": np.asarray(values, dtype=np.float32),
            "signed": bool(symmetric),
            "what": what or caption.removeprefix("overlay: "),
            "ends": ends,
            "rect": QRectF(start_s, 0, end_s - start_s, self.n_bins),
        }
        self._draw_overlay()
        self.overlay.show()
        self.legend.show()
        self._apply_colormap()
        if caption:
            self.caption.setText(caption)
            self.caption.setToolTip(caption)

    def _draw_overlay(self) -> None:
        """(Re)draw the overlay with the current scale and contrast; update the colour bar."""
        from musiclens.core.interpret.display import contrast_to_gamma, overlay_lut, overlay_rgba

        d = self._overlay_data
        if d is None:
            return
        rgba, scale = overlay_rgba(
            d["values"],
            signed=d["signed"],
            percentile=self.overlay_scale.currentData(),
            gamma=contrast_to_gamma(self.contrast.value()),
        )
        self.overlay.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.overlay.setLookupTable(None)
        self.overlay.setRect(d["rect"])  # after setImage: the rect maps the image's own size
        negative, positive = d["ends"]
        self.legend.show_scale(
            overlay_lut(d["signed"]), scale.describe(d["what"], negative=negative, positive=positive)
        )
        self.overlay_scale_used = scale

    def clear_overlay(self) -> None:
        self._overlay_data = None
        self.lane.clear_curve()
        self.overlay.clear()
        self.overlay.hide()
        self.legend.hide()
        self._apply_colormap()

    def set_playhead(self, seconds: float) -> None:
        self.playhead.setValue(seconds)

    def set_selection(self, start_s: float, end_s: float) -> None:
        self.selection.setRegion((start_s, end_s))
        self.selection.show()

    def clear_selection(self) -> None:
        """Drop the time selection (Escape, or a plain click)."""
        self.selection.setRegion((0, 0))
        self.selection.hide()

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
        else:  # a plain click: seek, and drop the selection
            self.clear_selection()
            self.seek_requested.emit(t)
