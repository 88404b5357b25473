"""Gradients of a score and their integral along a straight path: the math of the saliency
family, written once for every input kind.

The audio verbs (:mod:`musiclens.core.interpret.saliency`, input ``(B, C, F, T)``) and the MIDI
verbs (:mod:`musiclens.core.interpret.midi_saliency`, input ``(B, N, 3)`` + a note mask) only
say what the *score* is (a class's logit or probability for each input); everything else is
here:

* :func:`input_gradient` — ``∂score/∂x`` for a batch.
* :func:`integrated_gradients` — Integrated Gradients (Sundararajan et al. 2017),
  ``(x − x₀) ⊙ ∫₀¹ ∇score(x₀ + α(x − x₀)) dα`` per item, with a fixed quadrature
  (Gauss–Legendre, trapezoid or midpoint: Captum's ``IntegratedGradients``) or adaptive
  Gauss–Legendre (segments halved where the completeness error is largest), and the completeness error
  ``Σ attributions − (score(x) − score(x₀))``.

A *score* is ``score(item, points) -> (n,)``: the differentiable scores of ``n`` points on
item ``item``'s path (``points`` has the item's shape with a leading ``n``). Everything runs
on the device of ``x``; the adaptive path integral is accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from musiclens.core.errors import ParameterError

#: score(item index, points (n, *item shape)) -> (n,) differentiable scores
Score = Callable[[int, torch.Tensor], torch.Tensor]
#: one item's score at a batch of points (n, *shape) -> (n,)
_Batched = Callable[[torch.Tensor], torch.Tensor]

QUADRATURES = ("gausslegendre", "trapezoid", "midpoint")


def input_gradient(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂ score(x).sum() / ∂x, score(x))`` for a batch ``x``; both detached."""
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score(xi)
        (g,) = torch.autograd.grad(s.sum(), xi)
    return g.detach(), s.detach()


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points α in [0, 1] and weights summing to 1 (float64 numpy)."""
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    if method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        w = np.full(steps + 1, 1.0 / steps)
        w[0] = w[-1] = 0.5 / steps
        return alphas, w
    if method == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise ParameterError(f"method must be 'trapezoid', 'midpoint' or 'gausslegendre', got {method!r}")


@dataclass
class PathResult:
    """Integrated Gradients of a batch.

    attributions : same shape as x. score, baseline_score : (B,) at x and at the baseline.
    completeness_error : (B,) ``Σ attributions − (score − baseline_score)`` (signed).
    relative_error : (B,) ``|completeness_error| / |score − baseline_score|``.
    evaluations : (B,) gradient evaluations used per item.
    """

    attributions: torch.Tensor
    score: torch.Tensor
    baseline_score: torch.Tensor
    completeness_error: torch.Tensor
    relative_error: torch.Tensor
    evaluations: list[int]


def completeness(
    attributions: torch.Tensor, score: torch.Tensor, baseline_score: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(signed error, relative |error|) of attributions (B, ...) against ``score − baseline_score``."""
    diff = score - baseline_score
    err = attributions.reshape(attributions.shape[0], -1).double().sum(1).to(attributions.dtype) - diff
    return err, err.abs() / diff.abs().clamp_min(1e-12)


def integrated_gradients(
    score: Score,
    x: torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int,
    method: str = "gausslegendre",
    batch_size: int = 16,
    adaptive: bool = False,
    rtol: float = 1e-3,
    nodes_per_segment: int = 8,
) -> PathResult:
    """Integrated Gradients of ``score`` from ``baseline`` to ``x`` (both (B, ...), same shape).

    Fixed rule (``adaptive=False``): Captum's ``IntegratedGradients`` with ``steps`` points
    of ``method`` on [0, 1], ``batch_size`` per forward pass
    (:func:`musiclens.core.interpret.captum_methods.path_integral`). Adaptive rule (Captum
    has none, so it is ours): composite Gauss–Legendre with
    ``nodes_per_segment`` nodes per segment; the segment whose own completeness error
    ``|Σ attributions − (f(end) − f(start))|`` is largest is halved until the total error is
    below ``rtol · |f(x) − f(baseline)|`` or ``steps`` gradient evaluations are used (for
    models that switch sharply somewhere along the path, e.g. recurrent classifiers).
    """
    if steps < 1 or nodes_per_segment < 1:
        raise ParameterError(f"steps and nodes_per_segment must be >= 1, got {steps}, {nodes_per_segment}")
    if adaptive is False and method not in QUADRATURES:
        quadrature(1, method)  # raises with the allowed names
    x = x.detach()
    base = baseline.detach().to(x)
    if base.shape != x.shape:
        raise ParameterError(f"baseline shape {tuple(base.shape)} != input shape {tuple(x.shape)}")
    attributions = torch.zeros_like(x)
    scores = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    base_scores = torch.zeros_like(scores)
    used = []
    for b in range(x.shape[0]):

        def f(points: torch.Tensor, b: int = b) -> torch.Tensor:
            return score(b, points)

        if adaptive:
            integral, n = _adaptive(f, base[b], x[b], steps, rtol, nodes_per_segment, batch_size)
            attributions[b] = (integral * (x[b] - base[b]).double()).to(x.dtype)
        else:  # a fixed rule: Captum's IntegratedGradients
            from musiclens.core.interpret.captum_methods import path_integral

            attributions[b] = path_integral(
                f, x[b : b + 1], base[b : b + 1], steps=steps, method=method, batch_size=batch_size
            )[0]
            n = steps
        with torch.no_grad():
            s = f(torch.stack([x[b], base[b]]))
        scores[b], base_scores[b] = s[0], s[1]
        used.append(n)
    err, rel = completeness(attributions, scores, base_scores)
    return PathResult(attributions, scores, base_scores, err, rel, used)


def _grads(f: _Batched, base: torch.Tensor, diff: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """∇f at base + α·diff for each α: (n, *shape)."""
    points = base + alphas.view((-1,) + (1,) * base.dim()) * diff
    g, _ = input_gradient(f, points)
    return g


def _fixed(
    f: _Batched, base: torch.Tensor, x: torch.Tensor, alphas: np.ndarray, weights: np.ndarray, batch_size: int
) -> torch.Tensor:
    """Σ w_i ∇f(base + α_i (x − base)), float64, shape of x."""
    diff = x - base
    acc = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for start in range(0, len(alphas), batch_size):
        a = torch.as_tensor(alphas[start : start + batch_size], dtype=x.dtype, device=x.device)
        w = torch.as_tensor(weights[start : start + batch_size], dtype=torch.float64, device=x.device)
        g = _grads(f, base, diff, a)
        acc += (w.view((-1,) + (1,) * x.dim()) * g.double()).sum(0)
    return acc


def _adaptive(
    f: _Batched, base: torch.Tensor, x: torch.Tensor, steps: int, rtol: float, q: int, batch_size: int
) -> tuple[torch.Tensor, int]:
    """Adaptive composite Gauss–Legendre: (∫₀¹ ∇f dα float64, evaluations used)."""
    diff = x - base
    nodes, weights = quadrature(q, "gausslegendre")

    def f_at(alphas: list[float]) -> list[float]:
        with torch.no_grad():
            a = torch.tensor(alphas, device=x.device, dtype=x.dtype)
            values: list[float] = f(base + a.view((-1,) + (1,) * x.dim()) * diff).tolist()
            return values

    def integrate(a: float, b: float) -> torch.Tensor:
        return _fixed(f, base, x, a + (b - a) * nodes, (b - a) * weights, batch_size)

    diff64 = diff.double()

    # a segment: (a, b, f(a), f(b), integral over [a, b])
    Segment = tuple[float, float, float, float, torch.Tensor]

    def gain(seg: Segment) -> float:  # Σ (x − base) ⊙ segment integral
        return float((diff64 * seg[4]).sum())

    n0 = max(1, min(4, steps // q))
    edges = [i / n0 for i in range(n0 + 1)]
    f_edges = f_at(edges)
    segs: list[Segment] = [
        (edges[i], edges[i + 1], f_edges[i], f_edges[i + 1], integrate(edges[i], edges[i + 1])) for i in range(n0)
    ]
    used = n0 * q
    tol = rtol * max(abs(f_edges[-1] - f_edges[0]), 1e-12)
    while used + 2 * q <= steps:
        if abs(sum(gain(sg) for sg in segs) - (f_edges[-1] - f_edges[0])) <= tol:
            break
        errors = [abs(gain(sg) - (sg[3] - sg[2])) for sg in segs]
        a, b, fa, fb, _ = segs.pop(max(range(len(segs)), key=errors.__getitem__))
        mid = (a + b) / 2
        (fm,) = f_at([mid])
        segs += [(a, mid, fa, fm, integrate(a, mid)), (mid, b, fm, fb, integrate(mid, b))]
        used += 2 * q
    total = segs[0][4]  # the sum of the integrals (0 + the first is the first: as sum() did)
    for sg in segs[1:]:
        total = total + sg[4]
    return total, used
