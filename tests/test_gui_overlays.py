"""Overlays you can see (issue 13, item 3): robust percentile scaling, a diverging colour
map for signed methods, a colour bar that says what the colours mean, a contrast control.

The numeric part (``musiclens.core.interpret.display``) is tested without Qt; the window
part draws an Integrated-Gradients-like map and the real Grad-CAM of the demo."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import start_and_wait

OPACITY = 0.8  # the viewer's default overlay opacity
VISIBLE_ALPHA = 0.2  # a pixel counts as visibly coloured from 20 % effective opacity on


def ig_like(rng, shape=(96, 1870), p99_of_max=0.06) -> np.ndarray:
    """A heavy-tailed signed map like Integrated Gradients on MusiCNN: its 99th percentile
    of |values| is ``p99_of_max`` of its maximum (a few huge attributions)."""
    v = rng.laplace(size=shape).astype(np.float32)
    v *= np.abs(rng.standard_normal(shape)).astype(np.float32)  # heavier than Laplace
    p99 = float(np.percentile(np.abs(v), 99))
    spikes = rng.choice(v.size, 20, replace=False)
    v.flat[spikes] = np.sign(rng.standard_normal(20)) * p99 / p99_of_max * rng.uniform(0.5, 1.0, 20)
    v.flat[spikes[0]] = p99 / p99_of_max
    return v


def test_ig_like_map_is_mostly_visible_with_robust_scaling(rng):
    from musiclens.core.interpret.display import overlay_rgba, overlay_scale, visible_fraction

    v = ig_like(rng)
    a = np.abs(v)
    assert np.percentile(a, 99) / a.max() == pytest.approx(0.06, rel=0.05)
    rgba, scale = overlay_rgba(v, signed=True)
    assert rgba.shape == v.shape + (4,) and rgba.dtype == np.uint8
    seen = visible_fraction(rgba, opacity=OPACITY, min_alpha=VISIBLE_ALPHA)
    # the old scaling (levels ±max, linear alpha) coloured almost nothing
    old_alpha = np.abs(v) / a.max() * 235 / 255
    old = float(np.mean(old_alpha * OPACITY >= VISIBLE_ALPHA))
    print(f"IG-like map visibly coloured: before {old:.1%}, now {seen:.1%}")
    assert old < 0.01
    assert seen > 0.5
    # symmetric around 0 at the 99th percentile of |values|
    assert scale.signed and scale.hi == pytest.approx(np.percentile(a, 99), rel=1e-5)
    assert scale.lo == -scale.hi
    # diverging: positive red, negative blue, zero transparent
    pos, neg = v > scale.hi * 0.5, v < -scale.hi * 0.5
    assert (rgba[pos][:, 0].astype(int) > rgba[pos][:, 2]).all()
    assert (rgba[neg][:, 2].astype(int) > rgba[neg][:, 0]).all()
    zero, _ = overlay_rgba(np.zeros((4, 4), np.float32), signed=True)
    assert (zero[..., 3] == 0).all()
    # more contrast colours more of the map
    more, _ = overlay_rgba(v, signed=True, gamma=0.3)
    assert visible_fraction(more, opacity=OPACITY, min_alpha=VISIBLE_ALPHA) > seen
    linear, _ = overlay_rgba(v, signed=True, gamma=1.0)
    assert visible_fraction(linear, opacity=OPACITY, min_alpha=VISIBLE_ALPHA) < seen
    assert overlay_scale(v, signed=True, percentile=100).hi == pytest.approx(a.max())


def test_unsigned_maps_use_the_1st_to_99th_percentile_and_a_sequential_map(rng):
    from musiclens.core.interpret.display import overlay_rgba, overlay_scale

    v = 5.0 + rng.gamma(2.0, size=(64, 500)).astype(np.float32)  # an offset, a long tail
    s = overlay_scale(v, signed=False)
    assert not s.signed
    assert s.lo == pytest.approx(np.percentile(v, 1), rel=1e-5)
    assert s.hi == pytest.approx(np.percentile(v, 99), rel=1e-5)
    rgba, _ = overlay_rgba(v, signed=False)
    low, high = v <= s.lo, v >= s.hi
    assert (rgba[low][:, 3] == 0).all() and (rgba[high][:, 3] > 200).all()
    # sequential: brightness grows with the value
    lum = rgba[..., :3].astype(float).sum(-1)
    assert lum[high].mean() > lum[(v > s.lo) & (v < np.percentile(v, 30))].mean()
    # constant or empty maps do not divide by zero
    flat, _ = overlay_rgba(np.ones((3, 3), np.float32), signed=False)
    assert np.isfinite(flat).all()
    assert "p99" in s.describe("Grad-CAM (ReLU)")


# ---------------------------------------------------------------------- in the window
def rendered_alpha(item) -> np.ndarray:
    """Alpha (0..1) of what an ImageItem draws (its LUT and levels applied)."""
    from PySide6.QtGui import QImage

    item.render()
    q = item.qimage.convertToFormat(QImage.Format_RGBA8888)
    h, w = q.height(), q.width()
    buf = np.frombuffer(q.constBits(), dtype=np.uint8, count=q.sizeInBytes())
    return buf.reshape(h, q.bytesPerLine())[:, : 4 * w].reshape(h, w, 4)[..., 3] / 255.0


def test_overlays_are_visible_and_say_what_their_colours_mean(qtbot, window, rng):
    from musiclens.app.session import Attribution

    start_and_wait(qtbot, window)  # the first analysis also shows a Grad-CAM
    view = window.spectrogram
    cam = window.attribution.result
    assert cam is not None and cam.method == "grad-cam" and view.overlay.isVisible()
    cam_seen = float(np.mean(rendered_alpha(view.overlay) * view.overlay.opacity() >= VISIBLE_ALPHA))
    print(f"Grad-CAM overlay of the demo visibly coloured: {cam_seen:.1%}")
    assert cam_seen > 0.5
    assert "Grad-CAM" in view.legend.text() and "p99" in view.legend.text()
    assert view.legend.isVisible()

    v = ig_like(rng)
    ig = Attribution("ig", "electronic", None, v, 0.0, 30.0, signed=True)
    window._show_attribution(ig)
    seen = float(np.mean(rendered_alpha(view.overlay) * view.overlay.opacity() >= VISIBLE_ALPHA))
    print(f"IG-like overlay visibly coloured: {seen:.1%}")
    assert seen > 0.5
    text = view.legend.text()
    assert "p99" in text and "toward" in text and "against" in text
    # the contrast control redraws the overlay: more contrast, more colour
    view.contrast.setValue(view.contrast.maximum())
    more = float(np.mean(rendered_alpha(view.overlay) * view.overlay.opacity() >= VISIBLE_ALPHA))
    assert more > seen
    view.contrast.setValue(view.contrast.minimum())
    less = float(np.mean(rendered_alpha(view.overlay) * view.overlay.opacity() >= VISIBLE_ALPHA))
    assert less < seen
    # the opacity control is in the CAM panel too and drives the same overlay
    window.attribution.opacity.setValue(40)
    assert view.overlay.opacity() == pytest.approx(0.4)
    window.attribution.clear_button.click()
    assert not view.overlay.isVisible() and not view.legend.isVisible()
