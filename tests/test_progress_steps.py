"""The generators behind the window's long jobs (issue 20, goal 6) report real fractions and
return what the plain functions return: reading a file block by block, opening a recording,
a layer's maps filter batch by filter batch, loading a model, and ``scaled`` (a part of a job)."""

from __future__ import annotations

import numpy as np
import pytest

import interpret_nets as nets
from musiclens.core import analyses, audio
from musiclens.core.progress import Progress, run, scaled


def collect(steps):
    """(the generator's result, the fractions it reported in order)."""
    seen: list[float] = []
    result = run(steps, lambda p: p.fraction is not None and seen.append(p.fraction))
    return result, seen


def inside(fractions: list[float]) -> set[float]:
    return {f for f in fractions if 0 < f < 1}


def test_scaled_maps_a_part_of_a_job_and_returns_its_result():
    def part():
        yield Progress(fraction=0.5, message="half")
        yield Progress(message="no fraction")
        return "done"

    steps = list(scaled(part(), 0.2, 0.6))
    assert [s.fraction for s in steps] == [pytest.approx(0.4), None] and steps[0].message == "half"
    assert run(scaled(part(), 0.2, 0.6)) == "done"


def test_a_file_is_read_block_by_block_then_resampled(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "BLOCK_SAMPLES", 4096)  # ten blocks for this file
    path = tmp_path / "a.wav"
    audio.save(path, nets.signal(40960 / nets.SR), nets.SR)
    (y, sr), fractions = collect(audio.load_steps(path, sr=2 * nets.SR))
    want, want_sr = audio.load(path, sr=2 * nets.SR)
    assert sr == want_sr == 2 * nets.SR
    np.testing.assert_array_equal(y, want)
    assert fractions == sorted(fractions) and fractions[0] == 0.0
    # decoding is one pass of two: ten blocks up to one half, the resampling the other half
    assert len(inside(fractions)) == 10 and max(fractions) == pytest.approx(0.5)
    (_, _), same_rate = collect(audio.load_steps(path))
    assert len(inside(same_rate)) == 9 and same_rate[-1] == pytest.approx(1.0)  # no resampling


def test_opening_a_recording_and_a_layers_maps_report_fractions(tmp_path):
    m = nets.logmel_cnn()
    path = tmp_path / "a.wav"
    audio.save(path, nets.signal(2.2 * m.patch_seconds, sr=2 * nets.SR), 2 * nets.SR)
    rec, fractions = collect(analyses.open_recording_steps(m, path))
    plain = analyses.open_recording(m, path)
    np.testing.assert_array_equal(rec.audio, plain.audio)
    np.testing.assert_array_equal(rec.display, plain.display)
    # decode, resample, front end: a third each
    assert fractions == sorted(fractions) and sorted(inside(fractions)) == pytest.approx([1 / 3, 2 / 3])

    patch, start = analyses.patch_audio(rec, m.patch_seconds, 1)
    layer = next(name for name in m.layers if name.startswith("conv 2"))
    from musiclens.core.interpret.auralise import filter_levels_steps

    maps, fractions = collect(analyses.layer_maps_steps(m, patch, layer, patch=1, start_s=start))
    k = maps.maps.shape[0]
    assert k >= 2
    plain_maps = analyses.layer_maps(m, patch, layer, patch=1, start_s=start)
    np.testing.assert_allclose(maps.level_db, plain_maps.level_db)
    # one report before each batch of filters: here a batch of one filter
    _, one_by_one = collect(filter_levels_steps(m, patch, layer=layer, batch=1))
    assert one_by_one == [i / k for i in range(k)]


def test_loading_a_model_reports_its_three_steps():
    from musiclens.core.resources import DEFAULT_MODEL

    (model, summary, abilities), fractions = collect(analyses.load_model_steps(DEFAULT_MODEL))
    assert fractions == [0.0, pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert summary.name == model.name == DEFAULT_MODEL and summary.labels == list(model.labels)
    assert abilities["cam_layer"] is None and abilities["lines"] == []  # a family's are known
