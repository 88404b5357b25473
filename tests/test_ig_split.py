"""Integrated Gradients and the gradient through MusiCNN's affine front (issue 20):
``musiclens.core.interpret.integrated_gradients_split``.

The split path must give the values of the old one (Captum over the whole network at every
point). Measured: on MusiCNN the old float32 path lies 1.5e-5 to 1.3e-3 (relative to the
map's largest value) from the same algorithm run in float64, because at small α the
frequency max of near-tied rows is decided by float rounding; the split path picks the rows
exact arithmetic picks and lies within 2e-7 of float64. So the reference here is the old
algorithm in float64: the split path must be at least as close to it as the old float32 path
(or within 1e-5). Max pooling over time also ties frames near the baseline, so float32 IG
on MusiCNN is only good to about 1e-4 on some inputs, whichever path.
"""

from __future__ import annotations

import collections
import copy
import dataclasses

import numpy as np
import pytest
import torch

from musiclens.core.interpret import captum_methods as C
from musiclens.core.interpret import integrated_gradients_split as split
from musiclens.core.interpret import methods, sanity

TOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.fixture(scope="module")
def musicnn():
    from musiclens.core.models import registry

    m = registry.load("MSD_musicnn", device="cpu")
    rng = np.random.default_rng(1)
    t = np.arange(2 * m.patch_samples + m.sample_rate) / m.sample_rate
    y = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)
    x = m.front_end(torch.tensor(y, dtype=torch.float32)[None])
    x = torch.cat([x[..., : m.patch_frames], x[..., m.patch_frames : 2 * m.patch_frames]])  # (2, 1, 96, 187)
    return m, x


def double(m):
    return dataclasses.replace(m, net=copy.deepcopy(m.net).double())


def test_the_split_gives_the_network_bit_for_bit(musicnn):
    m, x = musicnn
    net = m.net
    with torch.no_grad():
        assert torch.equal(net(x), net.from_pooled_front(net.pooled_front(x)))
    assert split.splits(net)
    assert net.affine_from(C.prepare(m, x, 0).baseline())  # silence is flat along frequency
    assert not net.affine_from(x)


def test_integrated_gradients_equal_the_old_path_in_float64(musicnn):
    m, x = musicnn
    infos: dict[str, dict] = {"new": {}, "old": {}}
    ig = methods.get("integrated-gradients")
    new = ig(m, x, target="rock", steps=16, info=infos["new"])
    with split.enabled(False):
        old = ig(m, x, target="rock", steps=16, info=infos["old"])
        exact = ig(double(m), x.double(), target="rock", steps=16)
    print(f"split vs float64 {rel(new, exact):.1e}, old float32 vs float64 {rel(old, exact):.1e}")
    assert rel(new, exact) <= max(TOL, rel(old, exact))  # no farther from exact than the old path
    for k in ("score_at_input", "score_at_baseline"):
        assert torch.allclose(infos["new"][k], infos["old"][k], rtol=1e-6, atol=1e-6)
    diff = (infos["old"]["score_at_input"] - infos["old"]["score_at_baseline"]).abs()
    gap = (infos["new"]["completeness_error"] - infos["old"]["completeness_error"]).abs()
    assert (gap <= 1e-4 * diff).all()  # the same completeness error (the rule's, not rounding)


def test_the_gradient_through_the_split_equals_captum_saliency(musicnn):
    m, x = musicnn
    new = methods.get("gradient")(m, x, target="rock", output="probability")
    with split.enabled(False):
        old = methods.get("gradient")(m, x, target="rock", output="probability")
    assert new.abs().max() > 0 and rel(new, old) <= 1e-6


def test_other_rules_baselines_and_hooked_networks_stay_with_captum(musicnn):
    m, x = musicnn
    x = x[:1]
    net = m.net
    ramp = torch.linspace(0, 1, x.shape[2]).view(1, 1, -1, 1).expand_as(x)  # not flat along frequency
    assert not split.applies(net, ramp)
    assert not split.applies(net, C.prepare(m, x, 0).baseline(), "trapezoid")
    with split.enabled(False):
        want = C.integrated_gradients(m, x, target=0, steps=3, baseline=ramp).attributions
    assert torch.equal(C.integrated_gradients(m, x, target=0, steps=3, baseline=ramp).attributions, want)
    handle = net.mid_end.register_forward_hook(lambda *_: None)
    try:
        assert not split.splits(net)
    finally:
        handle.remove()
    assert split.splits(net)
    with pytest.raises(Exception, match="split path needs"):
        split.integrated_gradients(net, lambda b, out: out[:, 0], x, ramp, steps=2)


def count_selects(monkeypatch) -> collections.Counter[tuple[int, int]]:
    """Counts ``FrontEndBranch.select`` calls per branch (keyed by the conv's kernel size,
    which tells MusiCNN's five branches apart, on any copy of the network)."""
    from musiclens.core.models.musicnn import FrontEndBranch

    calls: collections.Counter[tuple[int, int]] = collections.Counter()
    real = FrontEndBranch.select

    def spy(self, *a, **k):
        calls[tuple(self.conv.kernel_size)] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(FrontEndBranch, "select", spy)
    return calls


def test_the_front_cache_reuses_and_notices_changed_weights(musicnn, monkeypatch):
    m, x = musicnn
    work = dataclasses.replace(m, net=copy.deepcopy(m.net))
    calls = count_selects(monkeypatch)
    timbral = tuple(work.net.front_end.timbral_38.conv.kernel_size)
    ig = methods.get("integrated-gradients")
    plain = ig(work, x[:1], target=0, steps=4)
    assert len(calls) == 5 and set(calls.values()) == {2}  # each branch: the input (with its graph), the baseline
    cache = split.FrontCache()
    with cache.active():
        a = ig(work, x[:1], target=0, steps=4)
    with cache.active():
        b = ig(work, x[:1], target=0, steps=4)
        g = methods.get("gradient")(work, x[:1], target=0)
    assert set(calls.values()) == {4}  # the second IG and the gradient reused both
    assert torch.equal(a, plain) and torch.equal(b, plain)
    with torch.no_grad():
        work.net.front_end.timbral_38.conv.weight.mul_(0.5)
    with cache.active():
        c = ig(work, x[:1], target=0, steps=4)
    assert calls.pop(timbral) == 6 and set(calls.values()) == {4}  # only the changed branch again
    assert not torch.equal(c, plain)
    assert torch.equal(c, ig(work, x[:1], target=0, steps=4))  # as computed afresh
    assert torch.equal(g, methods.get("gradient")(m, x[:1], target=0))


def test_sanity_check_with_the_split_gives_the_old_figures_and_an_eta(musicnn):
    m, x = musicnn
    x = x[:1]
    layers = ["back_end.output", "mid_end.layer3.conv", "front_end.timbral_38.bn", "front_end.timbral_67.conv"]
    fns = {"grad": "gradient", "ig": "integrated-gradients"}
    opts = {"ig": {"steps": 4}}
    reports: list = []
    gen = sanity.sanity_check(m, x, fns, target=0, layers=layers, options=opts)
    try:
        while True:
            reports.append(next(gen))
    except StopIteration as stop:
        new = stop.value
    with split.enabled(False):
        old = {
            k: sanity.cascading_randomisation(m, x, method=v, target=0, layers=layers, **opts.get(k, {}))
            for k, v in fns.items()
        }
    for k in fns:
        assert [s.layer for s in new[k]] == [s.layer for s in old[k]]
        for s, t in zip(new[k], old[k], strict=True):
            assert [s.spearman, s.spearman_signed, s.ssim] == pytest.approx(
                [t.spearman, t.spearman_signed, t.ssim], abs=1e-4, nan_ok=True
            )
    steps = [r for r in reports if r.payload is not None]
    assert len(steps) == 2 * len(layers)
    assert all("left" in r.message for r in steps)
    assert "left" in reports[1].message  # the second method's first map: an estimate already


@pytest.mark.parametrize("n, shape", [(1, (3, 5)), (16, (561, 40)), (24, (7, 5000))])
def test_the_blockwise_weighted_sum_is_the_plain_one_bit_for_bit(n, shape):
    gen = torch.Generator().manual_seed(n)
    g = torch.randn(n, *shape, generator=gen)
    w = torch.rand(n, generator=gen, dtype=torch.float64)
    acc = torch.randn(*shape, generator=gen, dtype=torch.float64)
    want = acc + (w.view(-1, 1, 1) * g.double()).sum(0)
    split._add_weighted(acc, w, g)
    assert torch.equal(acc, want)


def test_one_cascade_for_grad_and_ig_gives_each_its_own_cascades_figures(musicnn, monkeypatch):
    """The joint cascade (each layer randomised once, every method's map after it) gives the
    figures of each method's own cascade exactly, and computes the shared front once per step."""
    m, x = musicnn
    x = x[:1]
    layers = ["back_end.dense", "front_end.temporal_32.conv", "front_end.timbral_67.bn", "input_bn"]
    fns = {"grad": "gradient", "ig": "integrated-gradients"}
    opts = {"ig": {"steps": 4}}
    calls = count_selects(monkeypatch)
    fe = m.net.front_end
    temporal_32, timbral_67 = tuple(fe.temporal_32.conv.kernel_size), tuple(fe.timbral_67.conv.kernel_size)
    gen = sanity.sanity_check(m, x, fns, target=0, layers=layers, options=opts)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        joint = stop.value
    joint_calls = dict(calls)
    calls.clear()
    alone = {
        k: sanity.cascading_randomisation(m, x, method=v, target=0, layers=layers, **opts.get(k, {}))
        for k, v in fns.items()
    }
    # each branch of the input's front (for both methods at once) and of IG's baseline front:
    # at step 0 and after input_bn; temporal_32 and timbral_67 once more, each after its own layer
    changed = {temporal_32, timbral_67}
    assert joint_calls == {k: 4 + 2 * (k in changed) for k in joint_calls} and len(joint_calls) == 5
    # alone: the gradient's cascade (the input: 2 + 1) and IG's (the input and the baseline: 4 + 2)
    assert dict(calls) == {k: 6 + 3 * (k in changed) for k in joint_calls}
    for k in fns:
        assert [s.to_dict() for s in joint[k]] == [s.to_dict() for s in alone[k]]
    assert joint["ig"][-1].spearman < 0.9  # the maps did change
