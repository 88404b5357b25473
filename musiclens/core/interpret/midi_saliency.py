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
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

from musiclens.core.errors import ParameterError

Output = Literal["logit", "log_probability", "probability"]


def rnn_grad_context(device: torch.device | str):
    """Context for forward+backward through an RNN in eval mode (cuDNN off on CUDA)."""
    if torch.device(device).type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def _check(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ParameterError(f"x must have shape (B, N, 3), got {tuple(x.shape)}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ParameterError(f"mask must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def _target_output(net, x, mask, target, output: Output) -> torch.Tensor:
    """(B,) the chosen output of class ``target`` (int or (B,) tensor)."""
    logits = net(x, mask)
    if output == "log_probability":
        logits = torch.log_softmax(logits, dim=-1)
    elif output == "probability":
        logits = torch.softmax(logits, dim=-1)
    elif output != "logit":
        raise ParameterError(f"output must be 'logit', 'log_probability' or 'probability', got {output!r}")
    t = torch.as_tensor(target, device=x.device).long().expand(x.shape[0])
    return logits.gather(1, t.view(-1, 1)).squeeze(1)


def gradient_saliency(model, x: torch.Tensor, mask: torch.Tensor | None = None, *, target,
                      output: Output = "logit", times_input: bool = False) -> torch.Tensor:
    """Gradient of the target output w.r.t. the raw note features.

    Parameters
    ----------
    model : a ``LoadedMidiModel`` (or any object with ``.net(x, mask) -> logits``).
    x : (B, N, 3) raw features; mask : (B, N) bool prefix or None.
    target : class index (int) or (B,) tensor of indices.
    output : which output to differentiate: ``"logit"``, ``"log_probability"``, ``"probability"``.
    times_input : return gradient × input instead of the gradient.

    Returns
    -------
    (B, N, 3) tensor: d output / d [pitch (per semitone), step (per s), duration (per s)];
    0 on padded notes.
    """
    net = getattr(model, "net", model)
    mask = _check(x, mask)
    was_training = net.training
    net.eval()
    xi = x.detach().clone().requires_grad_(True)
    try:
        with rnn_grad_context(x.device), torch.enable_grad():
            out = _target_output(net, xi, mask, target, output)
            (grad,) = torch.autograd.grad(out.sum(), xi)
    finally:
        net.train(was_training)
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


def make_baseline(model, x: torch.Tensor, mask: torch.Tensor | None = None,
                  kind: Literal["mean", "zeros"] = "mean") -> torch.Tensor:
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
    base = spec.inverse(z).clamp_min(0)
    if mask is not None:
        base = torch.where(mask[..., None].to(x.device), base, x)
    return base


def integrated_gradients(model, x: torch.Tensor, mask: torch.Tensor | None = None, *, target,
                         baseline: torch.Tensor | Literal["mean", "zeros"] = "mean", steps: int = 64,
                         output: Output = "logit", batch_size: int = 64) -> IGResult:
    """Integrated Gradients (Sundararajan et al. 2017) along the straight line baseline -> x.

    Gauss–Legendre quadrature with ``steps`` nodes on [0, 1] (much more accurate than a
    Riemann sum for the same number of gradient evaluations).

    Parameters
    ----------
    x : (B, N, 3) raw features; mask : (B, N) bool prefix or None (padded notes keep
        their values along the path and get 0 attribution).
    target : class index or (B,) indices. output : as in :func:`gradient_saliency`.
    baseline : (B, N, 3) tensor, ``"mean"`` or ``"zeros"`` (see :func:`make_baseline`).
    steps : quadrature nodes (gradient evaluations per input).

    Returns
    -------
    :class:`IGResult` with (B, N, 3) attributions and the completeness error.
    """
    if steps < 1:
        raise ParameterError(f"steps must be >= 1, got {steps}")
    net = getattr(model, "net", model)
    mask = _check(x, mask)
    x = x.detach()
    base = make_baseline(model, x, mask, baseline) if isinstance(baseline, str) else baseline.detach().to(x)
    if base.shape != x.shape:
        raise ParameterError(f"baseline shape {tuple(base.shape)} != input shape {tuple(x.shape)}")
    nodes, weights = _gauss_legendre(steps, x.device, x.dtype)
    B = x.shape[0]
    total = torch.zeros_like(x)
    was_training = net.training
    net.eval()
    try:
        with rnn_grad_context(x.device), torch.enable_grad():
            for b in range(B):
                for i in range(0, steps, batch_size):
                    a = nodes[i:i + batch_size]
                    w = weights[i:i + batch_size]
                    path = (base[b] + a.view(-1, 1, 1) * (x[b] - base[b])).requires_grad_(True)
                    m = mask[b].expand(len(a), -1)
                    out = _target_output(net, path, m, target if not torch.is_tensor(target) or target.ndim == 0
                                         else target[b], output)
                    (g,) = torch.autograd.grad(out.sum(), path)
                    total[b] += (w.view(-1, 1, 1) * g).sum(0)
            with torch.no_grad():
                f_x = _target_output(net, x, mask, target, output)
                f_b = _target_output(net, base, mask, target, output)
    finally:
        net.train(was_training)
    attr = (x - base) * total * mask[..., None]
    delta = (attr.sum(dim=(1, 2)) - (f_x - f_b)).abs()
    return IGResult(attr.detach(), f_x.detach(), f_b.detach(), delta.detach())


def _gauss_legendre(n: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(n)
    return (torch.as_tensor((t + 1) / 2, device=device, dtype=dtype),
            torch.as_tensor(w / 2, device=device, dtype=dtype))


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
