"""Per-note, per-feature saliency for MIDI sequence models: gradient and Integrated Gradients.

Inputs are *raw* note features ``x: (B, N, 3)`` = ``[pitch (semitones), step (s),
duration (s)]`` with a prefix ``mask: (B, N)``; the model's normaliser is inside the
network, so attributions are with respect to the units users edit. Every function keeps
the sign; :func:`per_note` reduces ``(B, N, 3)`` to ``(B, N)`` for colouring a piano roll.
Padded notes (mask False) get exactly 0.

cuDNN refuses the backward pass of an RNN in eval mode ("cudnn RNN backward can only be
called in training mode"); on CUDA the forward and backward therefore run with cuDNN
disabled (:func:`rnn_grad_context`), which keeps dropout off and the results identical
to the CPU ones.

The gradient is Captum's ``Saliency``; the Integrated-Gradients path integral is the one
the audio verbs use (:mod:`musiclens.core.interpret.paths`; adaptive by default, which Captum
lacks); this module says what the score, the mask and the
baseline of a note sequence are.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.interpret import paths
from musiclens.core.interpret._common import eval_mode

Output = Literal["logit", "log_probability", "probability"]


def rnn_grad_context(device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """Context for forward+backward through an RNN in eval mode (cuDNN off on CUDA)."""
    if torch.device(device).type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def _check(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if x.ndim != 3 or x.shape[-1] not in (3, 7):  # (pitch, step, duration) or a whole-piece spec's 7 features
        raise ParameterError(f"x must have shape (B, N, 3) or (B, N, 7), got {tuple(x.shape)}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ParameterError(f"mask must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def _on_model(net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x and its mask (checked; all-True when None) on the network's device."""
    for t in net.parameters():
        x = x.to(t.device)
        break
    return x, _check(x, mask)


def _target_output(
    net: nn.Module, x: torch.Tensor, mask: torch.Tensor, target: int | torch.Tensor, output: Output
) -> torch.Tensor:
    """(B,) the chosen output of class ``target`` (int or (B,) tensor)."""
    logits: torch.Tensor = net(x, mask)
    if output == "log_probability":
        logits = torch.log_softmax(logits, dim=-1)
    elif output == "probability":
        logits = torch.softmax(logits, dim=-1)
    elif output != "logit":
        raise ParameterError(f"output must be 'logit', 'log_probability' or 'probability', got {output!r}")
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point():  # (L,) or (B, L) label weights: the sum over a set of labels
        return (logits * t.to(logits).expand(x.shape[0], -1)).sum(1)
    t = t.long().expand(x.shape[0])
    return logits.gather(1, t.view(-1, 1)).squeeze(1)


def gradient_saliency(
    model: Any,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    target: int | torch.Tensor,
    output: Output = "logit",
    times_input: bool = False,
) -> torch.Tensor:
    """Gradient of the target output w.r.t. the raw note features.

    Parameters
    ----------
    model : a MIDI ``LoadedModel`` (or any object with ``.net(x, mask) -> logits``).
    x : (B, N, 3) raw features; mask : (B, N) bool prefix or None.
    target : class index (int), (B,) tensor of indices, or (L,) / (B, L) float label
        weights (a set of labels: the sum of their outputs).
    output : which output to differentiate: ``"logit"``, ``"log_probability"``, ``"probability"``.
    times_input : return gradient × input instead of the gradient.

    Returns
    -------
    (B, N, 3) tensor: d output / d [pitch (per semitone), step (per s), duration (per s)];
    0 on padded notes.
    """
    net = getattr(model, "net", model)
    x, mask = _on_model(net, x, mask)
    with eval_mode(net):  # the mode each submodule was in comes back
        from captum.attr import Saliency

        from musiclens.core.interpret.captum_methods import tensor

        def score(xi: torch.Tensor) -> torch.Tensor:
            return _target_output(net, xi, mask, target, output)

        with rnn_grad_context(x.device), torch.enable_grad():
            grad = tensor(Saliency(score).attribute(x.detach().clone().requires_grad_(True), abs=False)).detach()
    grad = grad * mask[..., None]
    return (grad * x.detach()) if times_input else grad


@dataclass
class IGResult:
    """Integrated-Gradients attributions and their completeness check.

    attributions : (B, N, 3), sum ≈ ``f(x) - f(baseline)``.
    output, baseline_output : (B,) the target output at the input and at the baseline.
    delta : (B,) completeness error ``|sum(attributions) - (output - baseline_output)|``.
    """

    attributions: torch.Tensor
    output: torch.Tensor
    baseline_output: torch.Tensor
    delta: torch.Tensor

    @property
    def relative_delta(self) -> torch.Tensor:
        """(B,) delta / |output - baseline_output|."""
        return self.delta / (self.output - self.baseline_output).abs().clamp_min(1e-12)


def make_baseline(
    model: Any, x: torch.Tensor, mask: torch.Tensor | None = None, kind: Literal["mean", "zeros"] = "mean"
) -> torch.Tensor:
    """A baseline for Integrated Gradients, same shape as ``x``.

    ``"mean"``: every real note replaced by the training data's average note (the model's
    normalisation mean: average pitch, step and duration), i.e. "a bland piece of the
    same length". ``"zeros"``: pitch 0, step 0, duration 0.
    """
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind != "mean":
        raise ParameterError(f"baseline must be 'mean', 'zeros' or a tensor, got {kind!r}")
    spec = model.spec
    z = torch.zeros_like(x)
    base: torch.Tensor = spec.inverse(z).clamp_min(0)
    if mask is not None:
        base = torch.where(mask[..., None].to(x.device), base, x)
    return base


def integrated_gradients(
    model: Any,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    target: int | torch.Tensor,
    baseline: torch.Tensor | Literal["mean", "zeros"] = "mean",
    steps: int = 256,
    output: Output = "logit",
    rtol: float = 1e-3,
    nodes_per_segment: int = 8,
    adaptive: bool = True,
) -> IGResult:
    """Integrated Gradients (Sundararajan et al. 2017) along the straight line baseline -> x.

    The path integral is computed with composite Gauss–Legendre quadrature
    (``nodes_per_segment`` nodes per segment of [0, 1]). With ``adaptive=True`` the
    segment whose own completeness error ``|Σ attributions - (f(end) - f(start))|`` is
    largest is halved, again and again, until the total error is below ``rtol`` ×
    ``|f(x) - f(baseline)|`` or ``steps`` gradient evaluations are used. Recurrent
    classifiers often switch sharply somewhere along the path; a fixed grid misses that
    and breaks completeness, the adaptive rule finds it. ``adaptive=False`` uses ``steps``
    Gauss–Legendre nodes on [0, 1].

    Parameters
    ----------
    x : (B, N, 3) raw features; mask : (B, N) bool prefix or None (padded notes keep
        their values along the path and get 0 attribution).
    target : class index or (B,) indices. output : as in :func:`gradient_saliency`.
    baseline : (B, N, 3) tensor, ``"mean"`` or ``"zeros"`` (see :func:`make_baseline`).
    steps : budget of gradient evaluations per input.

    Returns
    -------
    :class:`IGResult` with (B, N, 3) attributions and the completeness error.
    """
    if steps < 1 or nodes_per_segment < 1:
        raise ParameterError(f"steps and nodes_per_segment must be >= 1, got {steps}, {nodes_per_segment}")
    net = getattr(model, "net", model)
    x, mask = _on_model(net, x, mask)
    x = x.detach()
    base = make_baseline(model, x, mask, baseline) if isinstance(baseline, str) else baseline.detach().to(x)
    if base.shape != x.shape:
        raise ParameterError(f"baseline shape {tuple(base.shape)} != input shape {tuple(x.shape)}")

    def score(b: int, points: torch.Tensor) -> torch.Tensor:
        t_b = target if not torch.is_tensor(target) or target.ndim == 0 else target[b]
        return _target_output(net, points, mask[b].expand(len(points), -1), t_b, output)

    with eval_mode(net), rnn_grad_context(x.device):  # the mode each submodule was in comes back
        r = paths.integrated_gradients(
            score,
            x,
            base,
            steps=steps,
            method="gausslegendre",
            batch_size=64,
            adaptive=adaptive,
            rtol=rtol,
            nodes_per_segment=nodes_per_segment,
        )
    attr = r.attributions * mask[..., None]  # padded notes: exactly 0
    err, _ = paths.completeness(attr, r.score, r.baseline_score)
    return IGResult(attr.detach(), r.score.detach(), r.baseline_score.detach(), err.abs().detach())


def per_note(saliency: torch.Tensor, *, how: Literal["l1", "l2", "sum", "max_abs"] = "l1") -> torch.Tensor:
    """(B, N, 3) -> (B, N): one value per note (``"sum"`` keeps the sign)."""
    if how == "l1":
        return saliency.abs().sum(-1)
    if how == "l2":
        return saliency.pow(2).sum(-1).sqrt()
    if how == "sum":
        return saliency.sum(-1)
    if how == "max_abs":
        return saliency.abs().amax(-1)
    raise ParameterError(f"how must be 'l1', 'l2', 'sum' or 'max_abs', got {how!r}")
