"""Input attributions: plain gradient, SmoothGrad and Integrated Gradients.

Every verb takes the front-end output ``x: (B, C, F, T)`` and returns attributions of the
same shape, sign kept (take ``.abs()`` or ``.clamp_min(0)`` yourself for a picture).

* :func:`gradient` — ``∂y_c/∂x`` (Simonyan et al. 2014).
* :func:`smoothgrad` — mean gradient over noisy copies of ``x`` (Smilkov et al. 2017).
* :func:`integrated_gradients` — ``(x − x₀) ⊙ ∫₀¹ ∂y_c/∂x(x₀ + α(x − x₀)) dα`` (Sundararajan
  et al. 2017), with its completeness error ``Σ attr − (y_c(x) − y_c(x₀))`` reported.

The default baseline ``x₀`` is *silence*: the front end's output for an all-zero signal
(-100 dB for a log-mel with ``amin=1e-10``, 0 for MusiCNN's ``log10(1 + g·S)`` and for STFT
channels), so attributions answer "what in this sound, compared with no sound, makes the
model say c".

The gradient and the path integral are :mod:`musiclens.core.interpret.paths`, shared with
the MIDI verbs (:mod:`musiclens.core.interpret.midi_saliency`); this module only says what
the score is (a class's logit or probability) and what the baseline is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret import paths
from musiclens.core.interpret._common import (
    Target,
    check_input,
    class_scores,
    eval_mode,
    silence_value,
    target_indices,
)
from musiclens.core.interpret.paths import input_gradient, quadrature
from musiclens.core.models.registry import LoadedModel


def _grad(m: LoadedModel, x: torch.Tensor, targets: torch.Tensor, output: str) -> tuple[torch.Tensor, torch.Tensor]:
    """d score / d x for a batch, and the scores. x: (N, C, F, T), targets: (N,)."""
    return input_gradient(lambda xi: class_scores(m, m.net(xi), targets, output), x)


def gradient(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    output: str = "logit",
    times_input: bool = False,
) -> torch.Tensor:
    """Plain gradient saliency ``∂y_c/∂x``: (B, C, F, T) -> (B, C, F, T).

    ``times_input=True`` returns gradient ⊙ input instead.
    """
    x = check_input(m, x)
    targets = target_indices(m, target, x.shape[0])
    with eval_mode(m.net):
        g, _ = _grad(m, x, targets, output)
    return g * x if times_input else g


def smoothgrad(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    n_samples: int = 25,
    noise_level: float = 0.15,
    squared: bool = False,
    output: str = "logit",
    batch_size: int = 16,
    seed: int | None = 0,
) -> torch.Tensor:
    """SmoothGrad: mean of ``∂y_c/∂x`` over ``n_samples`` copies ``x + N(0, σ²)``.

    ``σ = noise_level · (max(x) − min(x))`` per item (Smilkov et al. suggest 10–20 %).
    ``squared=True`` averages squared gradients (SmoothGrad-SQ). Returns (B, C, F, T).
    """
    x = check_input(m, x)
    if n_samples < 1:
        raise ParameterError(f"n_samples must be at least 1, got {n_samples}")
    if noise_level < 0:
        raise ParameterError(f"noise_level must be non-negative, got {noise_level}")
    targets = target_indices(m, target, x.shape[0])
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()
    flat = x.reshape(x.shape[0], -1)
    sigma = noise_level * (flat.amax(1) - flat.amin(1))  # (B,)
    total = torch.zeros_like(x)
    with eval_mode(m.net):
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            done = 0
            while done < n_samples:
                n = min(batch_size, n_samples - done)
                noise = torch.randn((n,) + tuple(xi.shape[1:]), generator=gen).to(x)
                g, _ = _grad(m, xi + sigma[i] * noise, targets[i : i + 1].repeat(n), output)
                total[i] += (g.pow(2) if squared else g).sum(0)
                done += n
    return total / n_samples


@dataclass
class IGResult:
    """Integrated Gradients with its completeness check.

    attributions : (B, C, F, T).
    score, baseline_score : (B,) the target score at ``x`` and at the baseline.
    completeness_error : (B,) ``Σ attributions − (score − baseline_score)``; ideally 0,
        shrinks as ``steps`` grows (Riemann error of the path integral).
    relative_error : (B,) ``|completeness_error| / |score − baseline_score|``.
    """

    attributions: torch.Tensor
    score: torch.Tensor
    baseline_score: torch.Tensor
    completeness_error: torch.Tensor
    relative_error: torch.Tensor
    steps: int
    method: str


def baseline_tensor(m: LoadedModel, x: torch.Tensor, baseline: str | float | torch.Tensor) -> torch.Tensor:
    """``"silence"``, ``"zeros"``, ``"min"`` (each item's minimum), a number, or a tensor
    broadcastable to x -> a tensor of x's shape."""
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(x), x.shape).clone()
        except RuntimeError:
            raise ParameterError(f"baseline of shape {tuple(baseline.shape)} does not fit x {tuple(x.shape)}") from None
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline == "silence":
        return silence_value(m, device=x.device).to(x).view(1, -1, 1, 1).expand_as(x).clone()
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "min":
        return x.reshape(x.shape[0], -1).amin(1).view(-1, 1, 1, 1).expand_as(x).clone()
    raise ParameterError(f"baseline must be 'silence', 'zeros', 'min', a number or a tensor, got {baseline!r}")


def integrated_gradients(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    baseline: str | float | torch.Tensor = "silence",
    steps: int = 32,
    method: str = "gausslegendre",
    output: str = "logit",
    batch_size: int = 16,
) -> IGResult:
    """Integrated Gradients from ``baseline`` to ``x`` along the straight line.

    Parameters
    ----------
    x : (B, C, F, T). baseline : see :func:`baseline_tensor` (default: silence).
    steps : points on the path; method : ``"gausslegendre"`` (default, most accurate for
        smooth nets), ``"trapezoid"`` or ``"midpoint"`` (Riemann sums).

    Returns
    -------
    :class:`IGResult` with attributions (B, C, F, T) and the completeness error.
    """
    x = check_input(m, x)
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    targets = target_indices(m, target, x.shape[0])
    x0 = baseline_tensor(m, x, baseline)
    quadrature(steps, method)  # a clear error for an unknown method, before any work

    def score(i: int, points: torch.Tensor) -> torch.Tensor:
        return class_scores(m, m.net(points), targets[i : i + 1].repeat(len(points)), output)

    with eval_mode(m.net):
        r = paths.integrated_gradients(score, x, x0, steps=steps, method=method, batch_size=batch_size)
    return IGResult(r.attributions, r.score, r.baseline_score, r.completeness_error, r.relative_error, steps, method)
