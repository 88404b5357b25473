"""Model-weight randomisation sanity check (Adebayo et al. 2018) on a tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from interpret_nets import features, gap_cnn, logmel_cnn, signal
from musiclens.core.errors import ParameterError
from musiclens.core.interpret import sanity


def test_ssim_and_spearman_by_hand():
    rng = np.random.default_rng(0)
    a = rng.random((12, 20))
    assert sanity.ssim(a, a) == pytest.approx(1.0)
    assert sanity.ssim(a, rng.random((12, 20))) < 0.3
    assert sanity.spearman(a, a**3) == pytest.approx(1.0)  # monotone map: same ranks
    assert sanity.spearman(a, -a) == pytest.approx(-1.0)
    # 5 values, one swap of neighbours: rho = 1 - 6·Σd²/(n(n²-1)) = 1 - 12/120
    assert sanity.spearman(np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 3, 4, 5.0])) == pytest.approx(0.9)


def test_cascade_from_the_top_down_changes_the_gradient_and_spares_the_model():
    m = logmel_cnn()
    x = features(m, signal(0.5))
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    steps = sanity.cascading_randomisation(m, x, method="gradient", target=1, keep_maps=True)
    assert [s.layer for s in steps] == ["", "output", "bn 2", "conv 2", "conv 1"]
    assert steps[0].spearman == pytest.approx(1.0) and steps[0].ssim == pytest.approx(1.0)
    for s in steps:
        print(
            f"sanity gradient step {s.step} {s.layer or '(trained)'}: spearman {s.spearman:.3f} "
            f"signed {s.spearman_signed:.3f} ssim {s.ssim:.3f}"
        )
    assert steps[-1].spearman < 0.5 and steps[-1].ssim < 0.8  # sparse maps keep SSIM high-ish
    assert all(torch.equal(v, m.net.state_dict()[k]) for k, v in before.items())
    assert steps[1].attribution.shape == x.shape
    # reproducible with the same seed; the global RNG is not disturbed
    state = torch.random.get_rng_state()
    again = sanity.cascading_randomisation(m, x, method="gradient", target=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [s.spearman for s in again] == [s.spearman for s in steps]


def test_grad_cam_sanity_and_a_custom_method():
    m = gap_cnn()
    x = features(m, signal(0.5))
    steps = sanity.cascading_randomisation(m, x, method="grad_cam", layer="conv 2", target=0)
    assert len(steps) == 4 and all(np.isfinite(s.ssim) for s in steps)
    assert steps[-1].spearman < steps[0].spearman
    # an "attribution" that ignores the model (the input itself) passes every step unchanged:
    # exactly the failure the check is meant to reveal
    blind = sanity.cascading_randomisation(m, x, method=lambda mm, xx: xx.clone())
    assert all(s.spearman == pytest.approx(1.0) and s.ssim == pytest.approx(1.0) for s in blind)


def test_cancel_and_errors():
    m = logmel_cnn()
    x = features(m, signal(0.3))
    calls = iter([False, True])
    steps = list(sanity.iter_cascading_randomisation(m, x, target=0, cancel=lambda: next(calls)))
    assert [s.step for s in steps] == [0, 1]
    with pytest.raises(ParameterError, match="needs a target"):
        sanity.cascading_randomisation(m, x, method="gradient")
    with pytest.raises(ParameterError, match="needs a layer"):
        sanity.cascading_randomisation(m, x, method="grad_cam", target=0)


def test_sanity_check_job_reports_fractions_and_gives_the_cascades():
    m = logmel_cnn()
    x = features(m, signal(0.5))
    reports = []
    gen = sanity.sanity_check(m, x, {"grad": "gradient", "ig": "ig"}, target=1, options={"ig": {"steps": 4}})
    try:
        while True:
            reports.append(next(gen))
    except StopIteration as stop:
        out = stop.value
    assert list(out) == ["grad", "ig"]
    for name, method, kw in (("grad", "gradient", {}), ("ig", "ig", {"steps": 4})):  # as the one-method cascade
        alone = sanity.cascading_randomisation(m, x, method=method, target=1, **kw)
        assert [s.layer for s in out[name]] == [s.layer for s in alone]
        for got, want in zip(out[name], alone, strict=True):
            assert [got.spearman, got.spearman_signed, got.ssim] == pytest.approx(
                [want.spearman, want.spearman_signed, want.ssim], rel=1e-9, nan_ok=True
            )
    fractions = [p.fraction for p in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert 0 < fractions[2] < 1  # after both trained-model maps and one randomised step
    # one cascade for both: each layer randomised once, then both methods' maps
    assert [(p.message.split(":")[0], p.payload.layer) for p in reports if p.payload is not None] == [
        (name, s.layer) for pair in zip(out["grad"][1:], out["ig"][1:], strict=True) for name, s in zip(out, pair)
    ]
    calls = iter([False, True, True, True])
    cut = sanity.sanity_check(m, x, {"grad": "gradient"}, target=1, cancel=lambda: next(calls))
    try:
        while True:
            next(cut)
    except StopIteration as stop:
        assert [s.step for s in stop.value["grad"]] == [0, 1]
    # two methods, one cascade: cancel is also read between the maps of a step
    calls = iter([False, True])
    cut = sanity.sanity_check(m, x, {"grad": "gradient", "ig": "ig"}, target=1, cancel=lambda: next(calls))
    try:
        while True:
            next(cut)
    except StopIteration as stop:
        assert [[s.step for s in v] for v in stop.value.values()] == [[0, 1], [0]]


def test_every_method_sees_the_weights_of_its_own_cascade():
    """One cascade for several methods: after layer k each method sees the weights a cascade of
    its own draws (the same seed, layer by layer), even when a method draws random numbers."""
    m = logmel_cnn()
    x = features(m, signal(0.3))
    order = sanity.cascade_layers(m)
    seen: dict[str, list[dict[str, torch.Tensor]]] = {"a": [], "b": []}

    def recorder(name, draw):
        def fn(mm, xx):
            seen[name].append({k: v.clone() for k, v in mm.net.state_dict().items()})
            if draw:
                torch.rand(1000)  # a method that uses torch's generator
            return xx.clone()

        return fn

    gen = sanity.sanity_check(m, x, {"a": recorder("a", True), "b": recorder("b", False)}, seed=3)
    for _ in gen:
        pass
    want = copy.deepcopy(m.net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        states = [{k: v.clone() for k, v in want.state_dict().items()}]
        for path in order:
            sanity._randomise(want.get_submodule(path))
            states.append({k: v.clone() for k, v in want.state_dict().items()})
    assert len(states) == len(seen["a"]) == len(seen["b"]) == len(order) + 1
    for k, state in enumerate(states):
        for name in seen:
            assert all(torch.equal(v, seen[name][k][p]) for p, v in state.items()), (name, k)
    assert any(not torch.equal(states[0][p], states[-1][p]) for p in states[0])
