"""Colours for maps drawn over a spectrogram (attributions, CAMs, filter activations).

Pure numpy (no Qt), so the scaling is tested headless and the window only draws the RGBA.

Attribution maps are heavy-tailed: a few cells hold most of the range (Integrated
Gradients on MusiCNN: the 99th percentile of |values| is ~6-10 % of the maximum), so scaling
to the maximum leaves almost every cell transparent. Maps are therefore scaled **robustly**:

* signed maps (IG, signed Grad-CAM): symmetric around 0, ``±p`` where ``p`` is the
  ``percentile`` (default 99th) of ``|values|``; a **diverging** colour map: blue for
  negative (against the class), transparent at 0, red for positive (toward the class);
* unsigned maps (Grad-CAM after ReLU, gradient magnitudes, filter masks): from the
  ``100 - percentile`` to the ``percentile`` percentile (1st..99th); a **sequential** map
  (transparent teal -> green -> yellow).

Values beyond the scale saturate. ``gamma`` (< 1 = more contrast) bends the magnitude
``|u| -> |u|**gamma`` after scaling, so weak cells become visible. Opacity rises from 0 at
the neutral value to full at ``ALPHA_RAMP`` of the scale, so the spectrogram shows through
where the map says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA_MAX = 235  # of 255: full-scale cells still let a trace of the spectrogram through
ALPHA_RAMP = 0.35  # opacity reaches ALPHA_MAX at this fraction of the scale
LUT_SIZE = 256
DEFAULT_GAMMA = 0.5  # the window's default contrast (50 of 100)
# (position in [0, 1] of |u| or u, RGB)
_NEGATIVE = ((0.0, (120, 175, 255)), (1.0, (10, 50, 235)))
_POSITIVE = ((0.0, (255, 170, 120)), (1.0, (225, 15, 15)))
_SEQUENTIAL = ((0.0, (20, 150, 170)), (0.5, (70, 205, 100)), (1.0, (255, 235, 30)))


@dataclass(frozen=True)
class OverlayScale:
    """How a map's values become colours.

    signed : diverging map, symmetric around 0 (``lo == -hi``); else sequential.
    lo, hi : the values drawn at the two ends of the colour map (saturated beyond).
    percentile : where ``hi`` came from (100 = the maximum, no clipping).
    gamma : contrast, applied to the scaled magnitude (1 = linear, < 1 = more contrast).
    """

    signed: bool
    lo: float
    hi: float
    percentile: float
    gamma: float = 1.0

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """values -> u in [-1, 1] (signed) or [0, 1] (unsigned), gamma applied; NaN -> 0."""
        v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
        if self.signed:
            u = np.clip(v / np.float32(self.hi), -1.0, 1.0)
            signed: np.ndarray = np.sign(u) * np.abs(u) ** np.float32(self.gamma)
            return signed
        u = np.clip((v - np.float32(self.lo)) / np.float32(self.hi - self.lo), 0.0, 1.0)
        out: np.ndarray = u ** np.float32(self.gamma)
        return out

    def describe(self, what: str = "", *, negative: str = "against", positive: str = "toward") -> str:
        """One line for a colour bar, e.g. ``IG attribution: blue −0.033 (against) … 0 … red
        +0.033 (toward) = ±p99 of |values|``."""
        p = "max" if self.percentile >= 100 else f"p{self.percentile:g}"
        contrast = "" if self.gamma == 1 else f", contrast γ={self.gamma:.2g}"
        head = f"{what}: " if what else ""
        if self.signed:
            return (
                f"{head}blue −{self.hi:.3g} ({negative}) … 0 … red +{self.hi:.3g} ({positive}); "
                f"±{p} of |values|, beyond it saturates{contrast}"
            )
        low = "1st percentile" if self.percentile < 100 else "min"
        return f"{head}transparent {self.lo:.3g} ({low}) … yellow {self.hi:.3g} ({p}), beyond it saturates{contrast}"


def overlay_scale(
    values: np.ndarray, *, signed: bool, percentile: float = 99.0, gamma: float = DEFAULT_GAMMA
) -> OverlayScale:
    """The robust scale of a map (see the module doc). Constant, empty or all-NaN maps get
    a harmless unit scale."""
    if not 50.0 < percentile <= 100.0:
        from musiclens.core.errors import ParameterError

        raise ParameterError(f"percentile must be in (50, 100], got {percentile}")
    if gamma <= 0:
        from musiclens.core.errors import ParameterError

        raise ParameterError(f"gamma must be positive, got {gamma}")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if signed:
        a = np.abs(v)
        hi = float(np.percentile(a, percentile)) if a.size else 0.0
        if hi <= 0:  # more than 1 % of the map is non-zero only rarely: fall back to the max
            hi = float(a.max()) if a.size and a.max() > 0 else 1.0
        return OverlayScale(True, -hi, hi, float(percentile), float(gamma))
    if not v.size:
        return OverlayScale(False, 0.0, 1.0, float(percentile), float(gamma))
    lo, hi = (float(x) for x in np.percentile(v, [100.0 - percentile, percentile]))
    if hi <= lo:
        top = float(v.max())
        hi = top if top > lo else lo + 1.0
    return OverlayScale(False, lo, hi, float(percentile), float(gamma))


def _ramp(stops: Sequence[tuple[float, tuple[int, int, int]]], t: np.ndarray) -> np.ndarray:
    pos = np.array([s[0] for s in stops])
    rgb = np.array([s[1] for s in stops], dtype=np.float64)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=-1)


def overlay_lut(signed: bool, n: int = LUT_SIZE) -> np.ndarray:
    """(n, 4) uint8 RGBA colour map: for signed maps entry i is u = -1 + 2i/(n-1), for
    unsigned ones u = i/(n-1)."""
    if signed:
        u = np.linspace(-1.0, 1.0, n)
        mag = np.abs(u)
        rgb = np.where(u[:, None] < 0, _ramp(_NEGATIVE, mag), _ramp(_POSITIVE, mag))
    else:
        u = np.linspace(0.0, 1.0, n)
        mag = u
        rgb = _ramp(_SEQUENTIAL, mag)
    alpha = ALPHA_MAX * np.clip(mag / ALPHA_RAMP, 0.0, 1.0)
    return np.concatenate([rgb, alpha[:, None]], axis=1).round().astype(np.uint8)


def overlay_rgba(
    values: np.ndarray, *, signed: bool, percentile: float = 99.0, gamma: float = DEFAULT_GAMMA
) -> tuple[np.ndarray, OverlayScale]:
    """A map (F, T) -> (F, T, 4) uint8 RGBA to draw over the spectrogram, and its scale."""
    scale = overlay_scale(values, signed=signed, percentile=percentile, gamma=gamma)
    u = scale.normalise(values)
    lut = overlay_lut(signed)
    idx = np.rint((u + 1.0) * 0.5 * (LUT_SIZE - 1) if signed else u * (LUT_SIZE - 1)).astype(np.intp)
    rgba = lut[np.clip(idx, 0, LUT_SIZE - 1)]
    # opacity from the value itself, not the LUT entry: exactly 0 stays fully transparent
    rgba[..., 3] = np.rint(ALPHA_MAX * np.clip(np.abs(u) / ALPHA_RAMP, 0.0, 1.0)).astype(np.uint8)
    return rgba, scale


def visible_fraction(rgba: np.ndarray, *, opacity: float = 1.0, min_alpha: float = 0.2) -> float:
    """Fraction of cells drawn with an effective opacity of at least ``min_alpha`` (the
    overlay's own opacity times the item's ``opacity``)."""
    a = np.asarray(rgba)[..., 3].astype(np.float64) / 255.0 * opacity
    return float(np.mean(a >= min_alpha)) if a.size else 0.0


def contrast_to_gamma(contrast: float) -> float:
    """A 0..100 contrast control -> gamma: 0 -> 1 (linear), 50 -> 0.5, 100 -> 0.25."""
    return float(2.0 ** (-np.clip(contrast, 0.0, 100.0) / 50.0))
