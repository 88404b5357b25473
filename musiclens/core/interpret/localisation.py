"""Does a map point at the evidence? Localisation scores against a known time-frequency box.

When we *know* where the evidence is (an instrument sample mixed into a background at a
known place: :func:`energy_box`), a map can be scored by

* the **pointing game** (Zhang et al. 2016, "Top-down neural attention by excitation
  backprop"): a hit when the map's largest value lies in the box (:func:`pointing_hit`; the accuracy
  is the mean over examples);
  a random map hits with a probability equal to the box's area share (:func:`area_share`);
* the **share of positive attribution inside the box** (:func:`share_in_box`; the
  "attribution localisation" / relevance mass accuracy of Kohlbrenner et al. 2020 and
  Arras et al. 2022): 1 = all evidence for the target is in the box, the area share for a
  map spread evenly.

All functions take NumPy maps (F, T) on the front end's grid (F frequency rows, low
frequencies first; T frames), no torch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from musiclens.core.errors import ParameterError


def _check(values: npt.ArrayLike, box: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(box, dtype=bool)
    if v.ndim != 2 or v.shape != b.shape:
        raise ParameterError(f"need a map and a box of the same (F, T) shape, got {v.shape} and {b.shape}")
    if not b.any():
        raise ParameterError("the box is empty")
    return v, b


def shortest_span(weights: npt.ArrayLike, fraction: float) -> tuple[int, int]:
    """The shortest run ``[a, b)`` of consecutive entries of a non-negative 1-D array
    holding at least ``fraction`` (0..1] of its sum (the earliest of equal length)."""
    w = np.clip(np.asarray(weights, dtype=np.float64).reshape(-1), 0, None)
    if not 0 < fraction <= 1:
        raise ParameterError(f"fraction must be in (0, 1], got {fraction}")
    total = w.sum()
    if total <= 0:
        raise ParameterError("no energy: every weight is zero")
    cs = np.concatenate([[0.0], np.cumsum(w)])
    need = fraction * total * (1 - 1e-12)
    # for each start a, the first end b with cs[b] - cs[a] >= need
    ends = np.searchsorted(cs, cs[:-1] + need, side="left")
    valid = ends <= len(w)
    lengths = np.where(valid, ends - np.arange(len(w)), len(w) + 1)
    a = int(np.argmin(lengths))
    return a, int(ends[a])


def energy_box(power: npt.ArrayLike, *, energy: float = 0.9, time_energy: float | None = None) -> np.ndarray:
    """Where a sound is: a box on its (F, T) power grid (e.g. the mel power of the sample
    alone, placed as in the mixture).

    Frames: the shortest run of frames holding ``time_energy`` (default ``energy``) of the
    total energy; bins: the shortest run of rows holding ``energy`` of the energy within
    those frames. Returns a boolean (F, T) mask, True inside the box.
    """
    p = np.clip(np.asarray(power, dtype=np.float64), 0, None)
    if p.ndim != 2:
        raise ParameterError(f"power must be (F, T), got shape {p.shape}")
    t0, t1 = shortest_span(p.sum(axis=0), energy if time_energy is None else time_energy)
    f0, f1 = shortest_span(p[:, t0:t1].sum(axis=1), energy)
    box = np.zeros(p.shape, dtype=bool)
    box[f0:f1, t0:t1] = True
    return box


def pointing_hit(values: npt.ArrayLike, box: npt.ArrayLike, *, tolerance: int = 0) -> float:
    """The pointing game: 1.0 when the map's largest value (F, T) lies in ``box`` (F, T)
    bool, or within ``tolerance`` cells of it (Chebyshev distance), else 0.0. Tied maxima
    count as a random pick among them: the share of them in the box (a flat map scores the
    box's area share, like a random one)."""
    v, b = _check(values, box)
    if tolerance > 0:
        from scipy.ndimage import binary_dilation

        b = binary_dilation(b, structure=np.ones((2 * tolerance + 1,) * 2, dtype=bool))
    top = v >= v.max()
    return float((top & b).sum() / top.sum())


def share_in_box(values: npt.ArrayLike, box: npt.ArrayLike) -> float:
    """Positive attribution inside ``box`` / all positive attribution (0..1); 0 for a map
    with no positive value (it points at nothing)."""
    v, b = _check(values, box)
    pos = np.clip(v, 0, None)
    total = pos.sum()
    return float(pos[b].sum() / total) if total > 0 else 0.0


def area_share(box: npt.ArrayLike) -> float:
    """The box's share of the grid's cells (0..1): the pointing accuracy, and the expected
    share in the box, of a map drawn at random."""
    b = np.asarray(box, dtype=bool)
    return float(b.mean())
