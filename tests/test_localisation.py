"""Localisation scores against a known box (core.interpret.localisation), by hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from musiclens.core.errors import ParameterError
from musiclens.core.interpret.localisation import (
    area_share,
    energy_box,
    pointing_hit,
    share_in_box,
    shortest_span,
)


def box_at(shape, rows, cols):
    b = np.zeros(shape, bool)
    b[rows, cols] = True
    return b


def test_shortest_span_holds_the_fraction():
    assert shortest_span([0, 0, 5, 5, 0, 0], 0.9) == (2, 4)
    assert shortest_span([1, 0, 0, 0, 9], 0.9) == (4, 5)  # 9 of 10 alone
    assert shortest_span([1, 0, 0, 0, 9], 0.95) == (0, 5)  # needs both ends
    assert shortest_span([3, 3, 3], 1.0) == (0, 3)
    a, b = shortest_span(np.r_[np.zeros(10), np.ones(20), np.zeros(5)], 0.5)
    assert b - a == 10 and 10 <= a <= 20
    with pytest.raises(ParameterError, match="no energy"):
        shortest_span(np.zeros(4), 0.9)
    with pytest.raises(ParameterError, match="fraction"):
        shortest_span(np.ones(4), 0)


def test_energy_box_finds_a_placed_sound():
    power = np.full((12, 40), 0.0)
    power[6:9, 10:20] = 1.0  # the sound
    power[6:9, 30] = 1e-4  # a faint tail, far below 10 % of the energy
    box = energy_box(power, energy=0.9)
    rows, cols = np.nonzero(box)
    assert rows.min() == 6 and rows.max() == 8
    assert (cols.min(), cols.max()) == (10, 19)  # 9 frames hold just under 90 % (the tail counts)
    assert area_share(box) == pytest.approx(3 * 10 / (12 * 40))
    power[6:9, 30] = 0.0
    half = energy_box(power, energy=0.5)  # 5 of the 10 frames, 2 of the 3 rows (1.5 needed)
    assert half.any(axis=0).sum() == 5 and half.any(axis=1).sum() == 2
    assert half.sum() == 10 and not half[:, :10].any() and not half[:, 20:].any()


def test_pointing_hit_and_ties():
    box = box_at((4, 6), slice(1, 3), slice(2, 4))
    v = np.zeros((4, 6))
    v[2, 3] = 1.0
    assert pointing_hit(v, box) == 1.0
    v[0, 0] = 2.0
    assert pointing_hit(v, box) == 0.0
    assert pointing_hit(v, box_at((4, 6), slice(1, 2), slice(1, 2)), tolerance=1) == 1.0  # one cell away
    flat = np.ones((4, 6))
    assert pointing_hit(flat, box) == pytest.approx(area_share(box))  # a flat map: chance level


def test_share_in_box_counts_positive_attribution_only():
    box = box_at((2, 4), slice(0, 1), slice(0, 2))
    v = np.array([[3.0, 1.0, -5.0, 0.0], [0.0, -1.0, 4.0, 0.0]])
    assert share_in_box(v, box) == pytest.approx(4 / 8)
    assert share_in_box(-np.abs(v), box) == 0.0
    assert share_in_box(np.ones((2, 4)), box) == pytest.approx(area_share(box))


def test_random_maps_score_the_area_share_on_average(rng):
    box = box_at((20, 30), slice(5, 10), slice(0, 12))
    hits = [pointing_hit(rng.random((20, 30)), box) for _ in range(2000)]
    shares = [share_in_box(rng.random((20, 30)), box) for _ in range(200)]
    assert np.mean(hits) == pytest.approx(area_share(box), abs=0.03)
    assert np.mean(shares) == pytest.approx(area_share(box), abs=0.01)


def test_shape_errors():
    with pytest.raises(ParameterError, match="same"):
        pointing_hit(np.ones((3, 4)), np.ones((4, 3), bool))
    with pytest.raises(ParameterError, match="empty"):
        share_in_box(np.ones((3, 4)), np.zeros((3, 4), bool))
    with pytest.raises(ParameterError, match=r"\(F, T\)"):
        energy_box(np.ones(5))
