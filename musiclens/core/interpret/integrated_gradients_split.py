"""Integrated Gradients and the input gradient through a network's affine front: the same
values as Captum's, without a convolution per path point (MusiCNN).

A network may split as ``net(x) = tail(P(x))`` where ``P = net.pooled_front`` is a
convolution of the input reduced over frequency (MusiCNN's front end before its ReLUs:
:meth:`musiclens.core.models.musicnn.Musicnn.pooled_front`). From a baseline ``b`` whose
conv maps are constant along frequency (``net.affine_from(b)``: silence) the reduction picks
the same rows all along the straight path, so for every ``α`` in (0, 1]

    ``P(b + α(x − b)) = P(b) + α (P(x) − P(b))``  and  ``∂P/∂x`` there ``= J``, ``J = ∂P/∂x`` at x.

Integrated Gradients (Sundararajan et al. 2017) is then exact with the front run once:

    ``(x − b) ⊙ Σᵢ wᵢ ∇f(b + αᵢ(x − b)) = (x − b) ⊙ Jᵀ Σᵢ wᵢ ∇_P (f∘tail)(P(b) + αᵢ(P(x) − P(b)))``

(``α = 0``, the trapezoid rule's first point, ties every row: that rule stays with Captum.)
Each point costs the tail's forward and backward only (MusiCNN: the mid and back end, about a
tenth of the front's convolutions), and ``Jᵀ`` is one backward of the front. Captum has no
such path (its ``IntegratedGradients`` differentiates the whole network at every point), so
this is ours; ``tests/test_ig_split.py`` checks it against Captum's result and the old
hand-written IG (``max |difference| / max |map| ≤ 1e-5``), ``tests/benchmarks/bench_ig.py``
measures the gain.

Used by :func:`musiclens.core.interpret.captum_methods.integrated_gradients` and
:func:`~musiclens.core.interpret.captum_methods.gradient` when :func:`applies`; they fall back
to Captum otherwise (other models, hooks on the network, training mode, another baseline).

Inside :func:`front_cache` the front's results are kept (a few entries per thread, checked
against the input, the network and the version counters of the tensors the front reads), so
that the baseline's front is computed once per file and a sanity check's cascade recomputes
the front only when a layer it reads was randomised.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from musiclens.core.interpret import paths

#: scores of item ``item`` from logits: (n, L) -> (n,) (differentiable)
ItemScore = Callable[[int, torch.Tensor], torch.Tensor]

_state = threading.local()


def _enabled() -> bool:
    return bool(getattr(_state, "enabled", True))


@contextlib.contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Use the split path (``on``, the default) or always Captum's (benchmarks, tests), on
    this thread, inside the block."""
    before = _enabled()
    _state.enabled = on
    try:
        yield
    finally:
        _state.enabled = before


def _hooked(net: nn.Module) -> bool:
    from torch.nn.modules import module as _module

    if _module._global_forward_hooks or _module._global_forward_pre_hooks or _module._global_backward_hooks:
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in net.modules()
    )


def splits(net: Any) -> bool:
    """Whether ``net`` offers the split (``pooled_front``, ``from_pooled_front``,
    ``affine_from``, ``pooled_front_state``), is in eval mode, has no hooks and the split
    path is enabled on this thread."""
    return (
        _enabled()
        and isinstance(net, nn.Module)
        and all(callable(getattr(net, a, None)) for a in ("pooled_front", "from_pooled_front", "affine_from"))
        and callable(getattr(net, "pooled_front_state", None))
        and not net.training
        and not _hooked(net)
    )


#: the rules the split path takes: those without a point at α = 0, where the baseline ties
#: every row (and MusiCNN's time pooling ties every frame), so that the gradient there depends
#: on float rounding; the trapezoid rule stays with Captum
RULES = ("gausslegendre", "midpoint")


def applies(net: Any, baseline: torch.Tensor, method: str = "gausslegendre") -> bool:
    """Whether Integrated Gradients from ``baseline`` with ``method`` can take the split path."""
    return method in RULES and splits(net) and bool(net.affine_from(baseline))


# ------------------------------------------------------------------ the front's cache


@dataclass(eq=False)
class _Entry:
    net: weakref.ReferenceType[nn.Module]
    state: tuple[tuple[int, int], ...]
    x: torch.Tensor
    graph: bool
    leaf: torch.Tensor | None
    pooled: torch.Tensor


class FrontCache:
    """The front's last ``size`` results, used on this thread inside :meth:`active`. The
    entries hold the front's autograd graph (for ``Jᵀ``): about 25 MB per 3 s MusiCNN patch,
    and, after its first backward, the rows the front's frequency max picked (MusiCNN's
    ``_ConvFreqPool``), so each further ``Jᵀ v`` through a cached front skips finding them."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.entries: list[_Entry] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[FrontCache]:
        """Use this cache on this thread inside the block (an outer active cache wins)."""
        if getattr(_state, "cache", None) is not None:
            yield self
            return
        _state.cache = self
        try:
            yield self
        finally:
            _state.cache = None


def front_cache(size: int = 3) -> contextlib.AbstractContextManager[FrontCache]:
    """A new :class:`FrontCache`, active inside the block."""
    return FrontCache(size).active()


def _state_key(net: Any) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version) for t in net.pooled_front_state())


def front(net: Any, x: torch.Tensor, *, graph: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(leaf, P)``: ``P = net.pooled_front(x)``; with ``graph`` ``leaf`` is x as a leaf that
    needs a gradient and ``P`` keeps the graph to it (gradients to the input only), else
    ``leaf`` is None and ``P`` is detached. Reused from :func:`front_cache` when it holds it."""
    cache: FrontCache | None = getattr(_state, "cache", None)
    key = _state_key(net) if cache is not None else ()
    if cache is not None:
        for i, e in enumerate(cache.entries):
            if (
                e.net() is net
                and e.state == key
                and (e.graph or not graph)
                and e.x.shape == x.shape
                and e.x.dtype == x.dtype
                and e.x.device == x.device
                and torch.equal(e.x, x)
            ):
                cache.entries.append(cache.entries.pop(i))  # the most recent last
                return (e.leaf if graph else None), (e.pooled if graph else e.pooled.detach())
    if graph:
        leaf = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            pooled = net.pooled_front(leaf, input_only=True)
    else:
        leaf = None
        with torch.no_grad():
            pooled = net.pooled_front(x)
    if cache is not None:
        # entries of this network with other weights can never be used again (the version
        # counters only grow): dropped now, so that a cascade holds one front graph, not two
        cache.entries = [e for e in cache.entries if e.net() is not None and (e.net() is not net or e.state == key)]
        cache.entries.append(_Entry(weakref.ref(net), key, x.detach().clone(), graph, leaf, pooled))
        del cache.entries[: -cache.size]
    return leaf, pooled


def _vjp(leaf: torch.Tensor | None, pooled: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(∂P/∂x)ᵀ v`` through :func:`front`'s graph: v (B, C, T) -> the input's shape."""
    assert leaf is not None
    (g,) = torch.autograd.grad(pooled, leaf, v.to(pooled.dtype), retain_graph=True)
    return g.detach()


def _add_weighted(acc: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> None:
    """``acc += (w.view(-1, 1, 1) * g.double()).sum(0)`` (acc (C, T) float64, w (n,) float64,
    g (n, C, T)), bit for bit (each column is summed in the same order), a block of columns at
    a time: the whole float64 product at 30 s (16 points: 135 MB written and read twice) took
    ~10x the time of these blocks that stay in cache (0.3 s -> 0.03 s per call, measured,
    torch 2.13 CPU, one thread), about 6 % of a sanity check's time."""
    flat, out, step = g.reshape(len(g), -1), acc.view(-1), 1 << 14
    for j in range(0, out.numel(), step):
        out[j : j + step] += (w.view(-1, 1) * flat[:, j : j + step].double()).sum(0)


# ------------------------------------------------------------------ the methods


def input_gradient(net: Any, score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``∂ score(net(x)).sum() / ∂x`` through the split (x (B, 1, F, T), ``score``: logits
    (B, L) -> (B,)); the front's graph is reused inside :func:`front_cache`."""
    leaf, pooled = front(net, x, graph=True)
    with torch.enable_grad():
        p = pooled.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(score(net.from_pooled_front(p)).sum(), p)
    return _vjp(leaf, pooled, g)


def integrated_gradients(
    net: Any,
    score: ItemScore,
    x: torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int,
    method: str = "gausslegendre",
    batch_size: int = 32,
) -> paths.PathResult:
    """Integrated Gradients from ``baseline`` to ``x`` (both (B, 1, F, T)) with ``steps``
    points of ``method`` (:func:`musiclens.core.interpret.paths.quadrature`: the rule Captum
    uses, weights summing to 1), ``batch_size`` points per pass of the tail, gradients summed
    in float64. Needs :func:`applies` (checked). Returns the
    :class:`~musiclens.core.interpret.paths.PathResult` (scores from the same split)."""
    from musiclens.core.errors import ParameterError

    if not applies(net, baseline, method):
        raise ParameterError(
            "the split path needs a network with pooled_front, a baseline constant along frequency "
            f"and a rule without α = 0, got method {method!r}"
        )
    alphas, weights = paths.quadrature(steps, method)
    x, baseline = x.detach(), baseline.detach().to(x)
    attributions = torch.zeros_like(x)
    scores = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    base_scores = torch.zeros_like(scores)
    for b in range(x.shape[0]):
        xb, bb = x[b : b + 1], baseline[b : b + 1]
        leaf, graph = front(net, xb, graph=True)
        _, p_b = front(net, bb, graph=False)
        p_x = graph.detach()
        diff = p_x - p_b
        acc = torch.zeros(p_x.shape[1:], dtype=torch.float64, device=x.device)
        for start in range(0, len(alphas), max(1, batch_size)):
            a = torch.as_tensor(alphas[start : start + batch_size], dtype=x.dtype, device=x.device)
            w = torch.as_tensor(weights[start : start + batch_size], dtype=torch.float64, device=x.device)
            with torch.enable_grad():
                pts = (p_b + a.view(-1, 1, 1) * diff).requires_grad_(True)
                (g,) = torch.autograd.grad(score(b, net.from_pooled_front(pts)).sum(), pts)
            _add_weighted(acc, w, g)
        attributions[b] = ((xb - bb) * _vjp(leaf, graph, acc[None]))[0]
        with torch.no_grad():
            s = score(b, net.from_pooled_front(torch.cat([p_x, p_b])))
        scores[b], base_scores[b] = s[0], s[1]
    err, rel = paths.completeness(attributions, scores, base_scores)
    return paths.PathResult(attributions, scores, base_scores, err, rel, [steps] * x.shape[0])
