"""MusiCNN's front-end backward (``musicnn._ConvFreqPool``, issue 20 goal 2) against plain
autograd: the conv maps reduced over frequency by ``amax``/``amin`` with torch's own backward.

The custom backward keeps the rows the frequency max picked on the graph's node and reuses
them for every gradient fed through a retained graph (a sanity check's cascade, IG): each
reuse must give what a fresh graph and the plain reference give (1e-6 relative), with ties
(whole columns tie on a flat input), channels whose batch-norm gamma is negative (the min)
and weight gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from musiclens.core.interpret import integrated_gradients_split as split
from musiclens.core.models.musicnn import FrontEndBranch, Musicnn

TOL = 1e-6


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def plain_select(br: FrontEndBranch, x: torch.Tensor) -> torch.Tensor:
    """The reference: conv maps, then max (gamma >= 0) or min over frequency, plain autograd."""
    c = F.conv2d(br.pad(x), br.conv.weight, br.conv.bias)
    return torch.where(br.bn.weight.view(1, -1, 1) >= 0, c.amax(dim=2), c.amin(dim=2))


def small_net(dtype: torch.dtype = torch.float32) -> Musicnn:
    """A small MusiCNN in eval mode whose batch norms make some channels take the min."""
    torch.manual_seed(0)
    n = Musicnn(n_mels=32, n_labels=5, timbral_filters=6, temporal_filters=4, midend_filters=8, backend_units=10)
    with torch.no_grad():
        for m in n.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.weight.uniform_(-1.0, 1.0)  # some channels take the min
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return n.to(dtype).eval()


@pytest.fixture(scope="module")
def net() -> Musicnn:
    return small_net()


def inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 32, 50, generator=g)
    flat = x.clone()
    flat[1] = flat[1, :, :1]  # constant along frequency: every row ties in every column
    x[0, :, 5:9] = 0.25  # a few equal rows: partial ties
    return [x, flat]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", [0, 1])
def test_each_branch_matches_plain_autograd_for_every_gradient_fed_in(
    net: Musicnn, case: int, dtype: torch.dtype
) -> None:
    """float64: every gradient to 1e-12; float32: the input gradient to 1e-6 (the weight
    gradient sums thousands of products, in another order than torch's: 1e-5)."""
    x = inputs()[case].to(dtype)
    net = copy.deepcopy(net).to(dtype)
    assert any(bool((br.bn.weight < 0).any()) for br in net._branches())
    tols = (1e-12,) * 3 if dtype == torch.float64 else (TOL, 1e-5, 1e-5)
    for br in net._branches():
        for input_only in (True, False):  # the split path's front, the dream's
            leaf = x.clone().requires_grad_(True)
            out = br.select(leaf, input_only)
            if input_only or br.conv.kernel_size[0] > 1:
                assert out.grad_fn is not None and "_ConvFreqPool" in type(out.grad_fn).__name__
            with torch.no_grad():
                assert torch.equal(out, plain_select(br, x))  # the forward is untouched
            wanted = [leaf] if input_only else [leaf, br.conv.weight, br.conv.bias]
            g = torch.Generator().manual_seed(2)
            for _ in range(3):  # the first backward builds the pattern, the others reuse it
                v = torch.randn(out.shape, generator=g).to(dtype)
                got = torch.autograd.grad(out, wanted, v, retain_graph=True)
                ref_leaf = x.clone().requires_grad_(True)
                want = torch.autograd.grad(plain_select(br, ref_leaf), [ref_leaf, *wanted[1:]], v)
                for a, b, tol in zip(got, want, tols, strict=False):
                    assert rel(a, b) <= tol


def test_input_gradient_through_a_cached_front_matches_the_plain_network(net: Musicnn) -> None:
    x = torch.cat(inputs())
    hooks = [br.conv.register_forward_hook(lambda *a: None) for br in net._branches()]  # the plain path
    try:
        want = []
        for label in range(3):
            leaf = x.clone().requires_grad_(True)
            (gr,) = torch.autograd.grad(net(leaf)[:, label].sum(), leaf)
            want.append(gr)
    finally:
        for h in hooks:
            h.remove()
    assert split.splits(net)
    with split.front_cache():
        first = split.front(net, x, graph=True)[1]
        for label in range(3):  # one front graph, one pattern, three gradients
            got = split.input_gradient(net, lambda logits, k=label: logits[:, k], x)
            assert split.front(net, x, graph=True)[1] is first
            assert rel(got, want[label]) <= TOL
