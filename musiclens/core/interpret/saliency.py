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

The computations are Captum's (:mod:`musiclens.core.interpret.captum_methods`: ``Saliency``,
``NoiseTunnel``, ``IntegratedGradients``, shown equal to the earlier hand-written versions in
``tests/test_captum_parity.py``); this module keeps the audio verbs, the silence baseline and
the completeness report. A target may be a set of tags (``{"guitar", "piano"}`` or
``"guitar+piano"``): the score is the sum of their logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret import captum_methods
from musiclens.core.interpret._common import Target, check_input, silence_value
from musiclens.core.interpret.captum_methods import IG_BATCH
from musiclens.core.models.registry import LoadedModel


def gradient(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    output: str = "logit",
    times_input: bool = False,
) -> torch.Tensor:
    """Plain gradient saliency ``∂y_c/∂x`` (Captum ``Saliency``, sign kept):
    (B, C, F, T) -> (B, C, F, T). ``times_input=True`` returns gradient ⊙ input instead."""
    g = captum_methods.gradient(m, x, target=target, output=output)
    return g * check_input(m, x) if times_input else g


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
    """SmoothGrad (Captum ``NoiseTunnel`` over ``Saliency``): mean of ``∂y_c/∂x`` over
    ``n_samples`` copies ``x + N(0, σ²)``.

    ``σ = noise_level · (max(x) − min(x))`` per item (Smilkov et al. suggest 10–20 %).
    ``squared=True`` averages squared gradients (SmoothGrad-SQ). Returns (B, C, F, T).
    """
    return captum_methods.smoothgrad(
        m,
        x,
        target=target,
        n_samples=n_samples,
        noise_level=noise_level,
        squared=squared,
        output=output,
        seed=seed,
        batch_size=batch_size,
    )


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
    batch_size: int = IG_BATCH,
) -> IGResult:
    """Integrated Gradients from ``baseline`` to ``x`` along the straight line.

    Parameters
    ----------
    x : (B, C, F, T). baseline : see :func:`baseline_tensor` (default: silence).
    steps : points on the path; method : ``"gausslegendre"`` (default, most accurate for
        smooth nets), ``"trapezoid"`` or ``"midpoint"`` (Riemann sums).
    batch_size : points per forward pass (Captum's ``internal_batch_size``).

    Returns
    -------
    :class:`IGResult` with attributions (B, C, F, T) and the completeness error.
    """
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    r = captum_methods.integrated_gradients(
        m, x, target=target, baseline=baseline, steps=steps, method=method, output=output, batch_size=batch_size
    )
    return IGResult(r.attributions, r.score, r.baseline_score, r.completeness_error, r.relative_error, steps, method)
