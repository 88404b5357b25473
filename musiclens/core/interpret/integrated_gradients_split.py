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

The front is computed branch by branch (``net.front_parts()``: MusiCNN's five, each reading
the batch-normalised input ``net.front_input(x)``) and ``Jᵀ v`` is the sum of the branches'
``Jᵀ v`` taken back through the input's batch norm. Inside :func:`front_cache` each branch's
result is kept (a few entries per thread, checked against the input, the network and the
version counters of the tensors the branch and the input batch norm read), so that the
baseline's front is computed once per file and a sanity check's cascade recomputes only the
branch whose layer was randomised (every branch after ``input_bn``): on a 30 s clip the
cascade's ten front layers took 19.5-21.3 s instead of 25.0-26.8 s (grad + IG with 16
points, 2 threads, load ~1.6, interleaved).
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
    ``affine_from`` and the front's parts: ``front_input``, ``front_input_state``,
    ``front_parts``), is in eval mode, has no hooks and the split path is enabled on this
    thread."""
    return (
        _enabled()
        and isinstance(net, nn.Module)
        and all(
            callable(getattr(net, a, None))
            for a in (
                "pooled_front",
                "from_pooled_front",
                "affine_from",
                "front_input",
                "front_input_state",
                "front_parts",
            )
        )
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
    """One branch's result: ``part`` (B, C_i, T) = ``branch.select(z)`` for ``z`` =
    ``net.front_input(x)``, with ``state`` the version key of the input's and the branch's
    tensors; with ``graph`` ``z`` is a leaf that needs a gradient and ``part`` keeps the graph
    to it."""

    net: weakref.ReferenceType[nn.Module]
    index: int
    state: tuple[tuple[int, int], ...]
    x: torch.Tensor
    graph: bool
    z: torch.Tensor | None
    part: torch.Tensor


@dataclass(eq=False)
class FrontGraph:
    """:func:`front`'s handle for ``Jᵀ v`` (:func:`_vjp`): each branch's leaf and result, and
    the input's normalisation as a graph from ``x`` (a leaf) to ``z``."""

    x: torch.Tensor
    z: torch.Tensor
    leaves: list[torch.Tensor]
    parts: list[torch.Tensor]


@dataclass(eq=False)
class _Whole:
    """A concatenated front, kept while its branches' entries are the same objects (so that
    a cached front is returned as the same tensor)."""

    entries: tuple[_Entry, ...]
    graph: FrontGraph | None
    pooled: torch.Tensor


class FrontCache:
    """The front's last ``size`` results per branch, used on this thread inside
    :meth:`active`. Entries are per branch of ``net.front_parts()`` (MusiCNN: five), keyed on
    the branch's tensors, the input normalisation's and the input, so that a randomised branch
    recomputes that branch only (every branch when the input normalisation changes). The
    entries hold the branches' autograd graphs (for ``Jᵀ``): about 25 MB per 3 s MusiCNN patch
    in all, and, after their first backward, the rows each branch's frequency max picked
    (MusiCNN's ``_ConvFreqPool``), so each further ``Jᵀ v`` through a cached front skips
    finding them."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.entries: list[_Entry] = []
        self.wholes: list[_Whole] = []

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

    def _find(
        self, net: nn.Module, index: int, key: tuple[tuple[int, int], ...], x: torch.Tensor, graph: bool
    ) -> _Entry | None:
        for i, e in enumerate(self.entries):
            if (
                e.net() is net
                and e.index == index
                and e.state == key
                and (e.graph or not graph)
                and e.x.shape == x.shape
                and e.x.dtype == x.dtype
                and e.x.device == x.device
                and torch.equal(e.x, x)
            ):
                self.entries.append(self.entries.pop(i))  # the most recent last
                return e
        return None

    def _add(self, e: _Entry) -> None:
        net = e.net()
        # entries of this network's branch with other weights can never be used again (the
        # version counters only grow): dropped now, so that a cascade holds one front graph
        self.entries = [
            o
            for o in self.entries
            if o.net() is not None and (o.net() is not net or o.index != e.index or o.state == e.state)
        ]
        self.entries.append(e)
        same = [o for o in self.entries if o.index == e.index]
        for o in same[: -self.size]:
            self.entries.remove(o)
        self.wholes = [w for w in self.wholes if all(any(o is p for p in self.entries) for o in w.entries)]


def front_cache(size: int = 3) -> contextlib.AbstractContextManager[FrontCache]:
    """A new :class:`FrontCache`, active inside the block."""
    return FrontCache(size).active()


def _key(tensors: list[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version) for t in tensors)


def front(net: Any, x: torch.Tensor, *, graph: bool) -> tuple[FrontGraph | None, torch.Tensor]:
    """``(handle, P)``: ``P = net.pooled_front(x)`` (B, C, T), built from ``net.front_parts()``
    branch by branch; with ``graph`` ``handle`` holds the graph to x (gradients to the input
    only) for :func:`_vjp`, else it is None; ``P`` is detached. Each branch is reused from
    :func:`front_cache` when it holds it."""
    cache: FrontCache | None = getattr(_state, "cache", None)
    x = x.detach()
    kept: torch.Tensor | None = None  # x's copy, shared by the new entries
    input_key = _key(net.front_input_state())
    z: torch.Tensor | None = None
    entries: list[_Entry] = []
    for index, (branch, state) in enumerate(net.front_parts()):
        key = input_key + _key(state)
        e = cache._find(net, index, key, x, graph) if cache is not None else None
        if e is None:
            if z is None:
                with torch.no_grad():
                    z = net.front_input(x)
                    if graph:
                        z.requires_grad_(True)
            if graph:
                with torch.enable_grad():
                    part = branch.select(z, True)
            else:
                with torch.no_grad():
                    part = branch.select(z)
            kept = x.clone() if kept is None else kept
            e = _Entry(weakref.ref(net), index, key, kept, graph, z if graph else None, part)
            if cache is not None:
                cache._add(e)
        entries.append(e)
    if cache is not None:
        for w in cache.wholes:
            same = len(w.entries) == len(entries) and all(a is b for a, b in zip(w.entries, entries, strict=True))
            if same and (w.graph is not None or not graph):
                return (w.graph if graph else None), w.pooled
    handle = None
    if graph:
        xl = x.clone().requires_grad_(True)
        with torch.enable_grad():
            zx = net.front_input(xl)
        handle = FrontGraph(xl, zx, [e.z for e in entries if e.z is not None], [e.part for e in entries])
    pooled = torch.cat([e.part.detach() for e in entries], dim=1)
    if cache is not None:
        cache.wholes.append(_Whole(tuple(entries), handle, pooled))
        del cache.wholes[: -cache.size]
    return handle, pooled


def _vjp(handle: FrontGraph | None, pooled: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(∂P/∂x)ᵀ v`` through :func:`front`'s graph: v (B, C, T) -> the input's shape; each
    branch's ``Jᵀ v`` to the normalised input, summed in the branches' order, then through
    the input's normalisation."""
    assert handle is not None
    vs = torch.split(v.to(pooled.dtype), [p.shape[1] for p in handle.parts], dim=1)
    gz: torch.Tensor | None = None
    for leaf, part, vb in zip(handle.leaves, handle.parts, vs, strict=True):
        (g,) = torch.autograd.grad(part, leaf, vb, retain_graph=True)
        gz = g if gz is None else gz + g
    assert gz is not None
    (gx,) = torch.autograd.grad(handle.z, handle.x, gz, retain_graph=True)
    return gx.detach()


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
