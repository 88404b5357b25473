"""MusiCNN's front per branch (``Musicnn.front_parts``, issue 20 goal 2) and the split path's
per-branch front cache (``integrated_gradients_split.front``/``_vjp``): the parts make up
``pooled_front``, a randomised branch is recomputed alone (every branch when the input batch
norm changes), and ``Jᵀ v`` through the cached branches is plain autograd's through
``pooled_front``.
"""

from __future__ import annotations

import collections
import copy

import pytest
import torch

from musiclens.core.interpret import integrated_gradients_split as split
from musiclens.core.models.musicnn import FrontEndBranch, Musicnn
from tests.test_musicnn_backward_cache import small_net


def an_input(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(1, 1, 32, 60, generator=torch.Generator().manual_seed(1)).to(dtype)


@pytest.fixture
def selects(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """``FrontEndBranch.select`` calls per branch name (``temporal_32``, ...)."""
    calls: collections.Counter[str] = collections.Counter()
    real = FrontEndBranch.select

    def spy(self: FrontEndBranch, *a: object, **k: object) -> torch.Tensor:
        calls[self._name] += 1  # type: ignore[attr-defined]
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(FrontEndBranch, "select", spy)
    return calls


def named(net: Musicnn) -> Musicnn:
    for name, m in net.front_end.named_children():
        if isinstance(m, FrontEndBranch):
            m._name = name  # type: ignore[assignment]
    return net


def test_the_parts_make_up_the_pooled_front_and_their_state() -> None:
    net, x = small_net(), an_input()
    parts = net.front_parts()
    assert [br for br, _ in parts] == net._branches()
    z = net.front_input(x)
    with torch.no_grad():
        assert torch.equal(torch.cat([br.select(z) for br, _ in parts], dim=1), net.pooled_front(x))
    for br, s in parts:  # every tensor select reads, nothing of the other branches
        assert {id(t) for t in s} == {id(br.conv.weight), id(br.conv.bias), id(br.bn.weight)}


def test_a_randomised_temporal_branch_is_recomputed_alone(selects: collections.Counter[str]) -> None:
    net, x = named(small_net()), an_input()
    with split.front_cache():
        _, first = split.front(net, x, graph=True)
        assert dict(selects) == dict.fromkeys(selects, 1) and len(selects) == 5
        _, again = split.front(net, x, graph=True)
        assert again is first and sum(selects.values()) == 5  # all reused
        with torch.no_grad():
            net.front_end.temporal_64.conv.weight.normal_()
        handle, changed = split.front(net, x, graph=True)
        assert selects.pop("temporal_64") == 2 and set(selects.values()) == {1}
        with torch.no_grad():
            want = net.pooled_front(x)
        assert torch.equal(changed, want) and not torch.equal(changed, first)
        selects.clear()
        with torch.no_grad():
            net.input_bn.running_mean.add_(0.3)
        split.front(net, x, graph=True)
        assert dict(selects) == dict.fromkeys(selects, 1) and len(selects) == 5  # every branch reads it


def test_stale_entries_are_dropped() -> None:
    net, x = small_net(), an_input()
    cache = split.FrontCache(size=2)
    with cache.active():
        split.front(net, x, graph=True)
        split.front(net, torch.zeros_like(x), graph=False)
        assert len(cache.entries) == 10
        with torch.no_grad():
            net.front_end.temporal_32.conv.weight.normal_()
        split.front(net, x, graph=True)
    # temporal_32's two old entries (the input, the baseline) can never be used again
    assert len(cache.entries) == 9
    assert sum(e.index == 4 for e in cache.entries) == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_vjp_through_cached_branches_is_plain_autograds(dtype: torch.dtype) -> None:
    net, x = small_net(dtype), an_input(dtype)
    g = torch.Generator().manual_seed(2)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}

    def plain(v: torch.Tensor) -> torch.Tensor:
        leaf = x.clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(net.pooled_front(leaf), leaf, v)
        return gr

    with split.front_cache():
        for k in range(3):
            if k == 2:  # one branch changed: its entry is new, the others are cached
                with torch.no_grad():
                    net.front_end.timbral_38.conv.weight.mul_(-0.5)
            handle, pooled = split.front(net, x, graph=True)
            v = torch.randn(pooled.shape, generator=g).to(dtype)
            got = split._vjp(handle, pooled, v)
            assert got.shape == x.shape
            assert torch.allclose(got, plain(v), **tol)
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.input_bn.weight.mul_(3.0)  # the input batch norm's scale is applied
    handle, pooled = split.front(other, x, graph=True)
    v = torch.randn(pooled.shape, generator=g).to(dtype)
    leaf = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(other.pooled_front(leaf), leaf, v)
    assert torch.allclose(split._vjp(handle, pooled, v), want, **tol)
