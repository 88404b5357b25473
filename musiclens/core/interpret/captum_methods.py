"""Attribution methods from Captum (Kokhlikyan et al. 2020), brought to the method table's
calling convention (:mod:`musiclens.core.interpret.methods`).

One glue for every input kind: the model is wrapped in a *scored forward*
``f(x, weights[, mask]) -> (N,)`` that returns each item's target score, the sum of the
chosen outputs ``Σ_l weights[n, l] · out[n, l]`` (one label, or a set of labels for
multi-label models, see :func:`musiclens.core.interpret._common.target_weights`), and Captum
gets ``target=None``. The weights (and the MIDI note mask) travel as
``additional_forward_args``, which Captum expands with the inputs for every method that
batches perturbed copies (IG steps, SmoothGrad samples, occlusion windows).

Inputs: audio ``(B, C, F, T)`` front-end output; waveform ``(B, 1, S)`` samples; MIDI
``(B, N, 3)`` raw note features with ``mask (B, N)``. Every function returns a tensor of the
input's shape (padded notes 0), except :func:`layer_grad_cam` ``(B, F_l, T_l)``.

Captum is imported inside the functions: ``import captum.attr`` loads about 100 modules,
matplotlib among them (its visualisation helpers), and costs about 0.3 s on top of torch's
0.8 s (a third of torch's import time, measured with ``python -X importtime``), which the
window's start does not pay (``tests/test_captum_parity.py`` checks it).

Baselines: audio silence (the front end's output for digital silence), waveform zeros, MIDI
the training data's average note (:func:`musiclens.core.interpret.midi_saliency.make_baseline`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.interpret import integrated_gradients_split as split
from musiclens.core.interpret import paths
from musiclens.core.interpret._common import Target, check_input, eval_mode, target_weights

if TYPE_CHECKING:
    from musiclens.core.models.registry import LoadedModel

#: our quadrature names -> Captum's ``method`` of IntegratedGradients
IG_RULES = {"gausslegendre": "gausslegendre", "trapezoid": "riemann_trapezoid", "midpoint": "riemann_middle"}

#: points evaluated in one forward pass by Integrated Gradients (internal batching); the
#: fastest setting of ``tests/benchmarks/bench_ig.py`` on a 30 s MusiCNN clip
IG_BATCH = 32


def tensor(result: Any) -> torch.Tensor:
    """Captum's result for one input tensor (its return type is generic)."""
    if isinstance(result, tuple) and len(result) == 1:
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise TypeError(f"Captum returned {type(result).__name__}, not one tensor")
    return result


def kind_of(m: Any) -> str:
    from musiclens.core.interpret.methods import input_kind

    return input_kind(m)


def transform(m: Any, logits: torch.Tensor, output: str) -> torch.Tensor:
    """The differentiated output: ``"logit"``, ``"probability"`` (the model's sigmoid or
    softmax) or ``"log_probability"`` (log-softmax)."""
    if output == "logit":
        return logits
    if output == "probability":
        probs = getattr(m, "probabilities", None)
        return probs(logits) if callable(probs) else torch.softmax(logits, dim=-1)
    if output == "log_probability":
        return torch.log_softmax(logits, dim=-1)
    raise ParameterError(f"output must be 'logit', 'probability' or 'log_probability', got {output!r}")


class Scored(nn.Module):
    """``net`` followed by the weighted sum of its outputs: ``(x, weights[, mask]) -> (N,)``.

    A module (not a closure) so that the methods that hook the network's modules (DeepLift,
    Guided Backprop, Deconvolution, LRP) find them."""

    def __init__(self, m: Any, net: nn.Module, output: str) -> None:
        super().__init__()
        self.net = net
        self._m = m
        self._output = output

    def forward(self, x: torch.Tensor, weights: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
        return self.score(self.net(x, *mask), weights)

    def score(self, logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the transformed outputs: logits (N, L), weights (N, L) -> (N,)."""
        out = transform(self._m, logits, self._output)
        return (out * weights.to(out)).sum(1)


@dataclass
class Call:
    """One attribution call, prepared: the scored model, its input and its extra arguments.

    x : the input on the model's device (float). extra : ``(weights (B, L)[, mask (B, N)])``.
    mask : MIDI only, (B, N) bool. kind : ``"audio"``, ``"midi"`` or ``"waveform"``.
    """

    m: Any
    kind: str
    scored: Scored
    x: torch.Tensor
    extra: tuple[torch.Tensor, ...]
    mask: torch.Tensor | None

    def finish(self, attr: torch.Tensor) -> torch.Tensor:
        """Detached attributions, padded notes set to 0."""
        attr = attr.detach()
        if self.mask is not None:
            attr = attr * self.mask[..., None].to(attr)
        return attr

    def baseline(self, baseline: Any = None) -> torch.Tensor:
        """A baseline of x's shape: None = the kind's default (audio silence, waveform
        zeros, MIDI the average note); a name, number or tensor as the kind allows."""
        if self.kind == "audio":
            from musiclens.core.interpret.saliency import baseline_tensor

            return baseline_tensor(self.m, self.x, "silence" if baseline is None else baseline)
        if self.kind == "midi":
            from musiclens.core.interpret.midi_saliency import make_baseline

            if isinstance(baseline, torch.Tensor):
                return torch.broadcast_to(baseline.to(self.x), self.x.shape).clone()
            return make_baseline(self.m, self.x, self.mask, "mean" if baseline is None else baseline)
        if baseline is None or baseline in ("zeros", "silence"):
            return torch.zeros_like(self.x)
        if isinstance(baseline, (int, float)):
            return torch.full_like(self.x, float(baseline))
        if isinstance(baseline, torch.Tensor):
            return torch.broadcast_to(baseline.to(self.x), self.x.shape).clone()
        raise ParameterError(f"a waveform baseline is 'zeros', a number or a tensor, got {baseline!r}")


def prepare(
    m: Any,
    x: torch.Tensor,
    target: Target | Sequence[Target],
    *,
    output: str = "logit",
    mask: torch.Tensor | None = None,
) -> Call:
    """Check ``x`` for the model's input kind and build the scored forward and the target
    weights (one row per item)."""
    kind = kind_of(m)
    net = getattr(m, "net", m)
    if kind == "audio":
        if mask is not None:
            raise ParameterError("mask is for MIDI note sequences, not for audio")
        x = check_input(m, x)
    elif kind == "midi":
        from musiclens.core.interpret.midi_saliency import _on_model

        x, mask = _on_model(net, x, mask)
        x = x.float()
    else:
        if mask is not None:
            raise ParameterError("mask is for MIDI note sequences, not for waveforms")
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            raise ParameterError(f"x must be samples (B, 1, S), got {getattr(x, 'shape', type(x).__name__)}")
        x = (x.unsqueeze(1) if x.dim() == 2 else x).float().to(m.device)
    transform(m, torch.zeros(1, 1), output)  # a clear error for an unknown output, before any work
    weights = target_weights(m, target, x.shape[0]).to(x.device)
    extra = (weights,) if mask is None else (weights, mask)
    return Call(m, kind, Scored(m, net, output), x.detach(), extra, mask)


@contextlib.contextmanager
def running(call: Call) -> Iterator[None]:
    """Eval mode, gradients on, and cuDNN off for RNNs on CUDA (MIDI models)."""
    from musiclens.core.interpret.midi_saliency import rnn_grad_context

    with eval_mode(call.scored.net), torch.enable_grad(), rnn_grad_context(call.x.device), warnings.catch_warnings():
        # Captum's notices about setting requires_grad and hooks on ReLUs: expected here
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes on non-linear")
        yield


@contextlib.contextmanager
def seeded(device: torch.device, seed: int | None) -> Iterator[None]:
    """Captum's random draws (torch's and NumPy's global generators) from ``seed``; both
    generators are restored afterwards. ``seed=None``: fresh randomness."""
    devices = [device] if device.type == "cuda" else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(int(seed))
                np.random.seed(int(seed) % 2**32)
            yield
    finally:
        np.random.set_state(state)


def scores(call: Call, x: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) the target scores at ``x`` (default: the call's input)."""
    with torch.no_grad(), eval_mode(call.scored.net):
        out: torch.Tensor = call.scored(call.x if x is None else x, *call.extra)
        return out.detach()


# ------------------------------------------------------------------ gradient family


def gradient(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Captum ``Saliency`` with the sign kept: ``∂score/∂x``, x's shape (Simonyan et al. 2014).

    Networks with an affine front (MusiCNN) go through
    :func:`musiclens.core.interpret.integrated_gradients_split.input_gradient`: the same
    values, with the front's graph reused inside a ``FrontCache`` (the sanity check)."""
    from captum.attr import Saliency

    call = prepare(m, x, target, output=output, mask=mask)
    if call.kind == "audio" and split.splits(call.scored.net):  # same values, the front's graph reused
        with running(call):
            g = split.input_gradient(call.scored.net, lambda logits: call.scored.score(logits, *call.extra), call.x)
        return call.finish(g)
    with running(call):
        g = Saliency(call.scored).attribute(call.x, additional_forward_args=call.extra, abs=False)
    return call.finish(tensor(g))


def smoothgrad(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    n_samples: int = 25,
    noise_level: float = 0.15,
    squared: bool = False,
    output: str = "logit",
    seed: int | None = 0,
    batch_size: int = 16,
) -> torch.Tensor:
    """Captum ``NoiseTunnel(Saliency)``: mean gradient over ``n_samples`` copies
    ``x + N(0, σ²)`` with ``σ = noise_level · (max(x) − min(x))`` per item (Smilkov et al.
    2017); ``squared`` averages squared gradients (SmoothGrad-SQ). x's shape.

    ``seed`` fixes the noise (drawn from torch's generator, restored afterwards)."""
    from captum.attr import NoiseTunnel, Saliency

    if n_samples < 1:
        raise ParameterError(f"n_samples must be at least 1, got {n_samples}")
    if noise_level < 0:
        raise ParameterError(f"noise_level must be non-negative, got {noise_level}")
    call = prepare(m, x, target, output=output)
    nt = NoiseTunnel(Saliency(call.scored))
    flat = call.x.reshape(call.x.shape[0], -1)
    sigma = noise_level * (flat.amax(1) - flat.amin(1))  # (B,)
    out = torch.zeros_like(call.x)
    with running(call), seeded(call.x.device, seed):
        for i in range(call.x.shape[0]):  # σ is per item; Captum takes one σ per input tensor
            out[i] = nt.attribute(
                call.x[i : i + 1],
                nt_type="smoothgrad_sq" if squared else "smoothgrad",
                nt_samples=n_samples,
                nt_samples_batch_size=batch_size,
                stdevs=float(sigma[i]),
                additional_forward_args=tuple(e[i : i + 1] for e in call.extra),
                abs=False,
            )[0]
    return call.finish(out)


def path_integral(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baseline: torch.Tensor,
    *,
    steps: int,
    method: str = "gausslegendre",
    batch_size: int = IG_BATCH,
) -> torch.Tensor:
    """Captum ``IntegratedGradients`` of a scalar-per-item score ``f: (n, ...) -> (n,)``
    from ``baseline`` to ``x`` (both (B, ...)): ``(x − x₀) ⊙ Σ_i w_i ∇f(x₀ + α_i (x − x₀))``.

    ``method``: ``"gausslegendre"``, ``"trapezoid"`` (``steps`` intervals, ``steps + 1``
    points) or ``"midpoint"``. ``batch_size``: points per forward pass (Captum's
    ``internal_batch_size``). Captum's ``riemann_trapezoid`` weights sum to ``(n − 1)/n``
    instead of 1; the trapezoid result is rescaled by ``n/(n − 1)`` to be the trapezoid rule.
    """
    from captum.attr import IntegratedGradients

    if method not in IG_RULES:
        raise ParameterError(f"method must be 'trapezoid', 'midpoint' or 'gausslegendre', got {method!r}")
    if steps < 1:
        raise ParameterError(f"steps must be at least 1, got {steps}")
    x, baseline = x.detach(), baseline.detach()
    n = steps + 1 if method == "trapezoid" else steps
    if n < 2:  # Captum's rules need two points; one Gauss–Legendre/midpoint point is α = ½
        with torch.enable_grad():
            mid = ((x + baseline) / 2).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(f(mid).sum(), mid)
        return (g * (x - baseline)).detach()
    attr = IntegratedGradients(f).attribute(
        x, baselines=baseline, n_steps=n, method=IG_RULES[method], internal_batch_size=max(1, batch_size * x.shape[0])
    )
    if method == "trapezoid":
        attr = attr * (n / (n - 1))
    return tensor(attr).detach()


def integrated_gradients(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    baseline: Any = None,
    steps: int = 32,
    method: str = "gausslegendre",
    output: str = "logit",
    mask: torch.Tensor | None = None,
    batch_size: int = IG_BATCH,
    adaptive: bool = False,
    rtol: float = 1e-3,
) -> paths.PathResult:
    """Integrated Gradients (Sundararajan et al. 2017) for any input kind, through the one
    path integral (:func:`musiclens.core.interpret.paths.integrated_gradients`: Captum for a
    fixed rule, our adaptive Gauss–Legendre with ``adaptive=True``), or, for a network with
    an affine front (MusiCNN) from a baseline flat along frequency (silence), through
    :func:`musiclens.core.interpret.integrated_gradients_split.integrated_gradients` (the
    front once, the rest per point; 5-10x faster, closer to the exact value).

    Returns the :class:`~musiclens.core.interpret.paths.PathResult`: attributions (x's
    shape, padded notes 0), the scores at x and at the baseline and the completeness error."""
    call = prepare(m, x, target, output=output, mask=mask)
    x0 = call.baseline(baseline)
    if call.kind == "audio" and not adaptive and split.applies(call.scored.net, x0, method):  # same values, faster

        def item_score(b: int, logits: torch.Tensor) -> torch.Tensor:
            return call.scored.score(logits, call.extra[0][b : b + 1].expand(len(logits), -1))

        with running(call):
            return split.integrated_gradients(
                call.scored.net, item_score, call.x, x0, steps=steps, method=method, batch_size=batch_size
            )

    def score(b: int, points: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = call.scored(
            points, *(e[b : b + 1].expand((len(points),) + e.shape[1:]) for e in call.extra)
        )
        return out

    with running(call):
        r = paths.integrated_gradients(
            score, call.x, x0, steps=steps, method=method, batch_size=batch_size, adaptive=adaptive, rtol=rtol
        )
    if call.mask is not None:
        r.attributions = call.finish(r.attributions)
        r.completeness_error, r.relative_error = paths.completeness(r.attributions, r.score, r.baseline_score)
    return r


def gradient_shap(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    n_samples: int = 25,
    noise_level: float = 0.0,
    output: str = "logit",
    seed: int | None = 0,
) -> torch.Tensor:
    """Captum ``GradientShap`` (Lundberg & Lee 2017): expected gradients × (x − baseline)
    over random points between x and baselines drawn from {silence, x's time average (a
    steady spectrum, or the waveform's DC)}, plus N(0, σ²) with ``σ = noise_level ·
    (max − min)`` of the first item. x's shape."""
    from captum.attr import GradientShap

    call = prepare(m, x, target, output=output)
    silence = call.baseline(None)
    steady = call.x.mean(dim=-1, keepdim=True).expand_as(call.x)
    refs = torch.cat([silence, steady])  # (2B, ...): Captum draws from the whole set
    flat = call.x.reshape(call.x.shape[0], -1)
    sigma = float(noise_level * (flat.amax(1) - flat.amin(1))[0])
    with running(call), seeded(call.x.device, seed):
        attr = GradientShap(call.scored).attribute(
            call.x, baselines=refs, n_samples=n_samples, stdevs=sigma, additional_forward_args=call.extra
        )
    return call.finish(tensor(attr))


def deeplift(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    baseline: Any = None,
    output: str = "logit",
) -> torch.Tensor:
    """Captum ``DeepLift`` (Shrikumar et al. 2017, Rescale rule) from the kind's baseline
    (audio silence). Non-linearities that are not ``nn`` modules (a max over frequency, a
    sigmoid in the forward code) pass plain gradients. x's shape."""
    from captum.attr import DeepLift

    call = prepare(m, x, target, output=output)
    x0 = call.baseline(baseline)
    with running(call):
        attr = DeepLift(call.scored).attribute(call.x, baselines=x0, additional_forward_args=call.extra)
    return call.finish(tensor(attr))


def _relu_modules(call: Call, name: str) -> None:
    if not any(isinstance(mod, nn.ReLU) for mod in call.scored.net.modules()):
        raise ParameterError(f"{name} rewrites the backward pass of nn.ReLU modules; model {call.m.name!r} has none")


def guided_backprop(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
) -> torch.Tensor:
    """Captum ``GuidedBackprop`` (Springenberg et al. 2015): the gradient with only positive
    gradients passed back through each ``nn.ReLU``. x's shape."""
    from captum.attr import GuidedBackprop

    call = prepare(m, x, target, output=output)
    _relu_modules(call, "guided-backprop")
    with running(call):
        attr = GuidedBackprop(call.scored).attribute(call.x, additional_forward_args=call.extra)
    return call.finish(tensor(attr))


def deconvolution(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
) -> torch.Tensor:
    """Captum ``Deconvolution`` (Zeiler & Fergus 2014): the gradient with each ``nn.ReLU``
    applied to the gradient instead of gated by the input. x's shape."""
    from captum.attr import Deconvolution

    call = prepare(m, x, target, output=output)
    _relu_modules(call, "deconvolution")
    with running(call):
        attr = Deconvolution(call.scored).attribute(call.x, additional_forward_args=call.extra)
    return call.finish(tensor(attr))


def lrp_unsupported(net: nn.Module) -> list[str]:
    """The leaf module types of ``net`` that Captum's LRP has no rule for (empty: LRP runs)."""
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

    known = set(SUPPORTED_LAYERS_WITH_RULES) | set(SUPPORTED_NON_LINEAR_LAYERS)
    leaves = [mod for mod in net.modules() if not any(True for _ in mod.children())]
    return sorted({type(mod).__name__ for mod in leaves if type(mod) not in known})


def lrp(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    output: str = "logit",
) -> torch.Tensor:
    """Captum ``LRP`` (Bach et al. 2015, ε-rule): relevance of each input value; sums to
    the score. Only for nets made of the layers LRP has rules for (conv 2-D, linear,
    max/average pooling, batch norm 2-D, ReLU, dropout); others raise, naming the layers
    that stop it (MusiCNN: padding, 1-D convolutions, its own pooling). x's shape."""
    from captum.attr import LRP

    call = prepare(m, x, target, output=output)
    missing = lrp_unsupported(call.scored.net)
    if missing:
        raise ParameterError(
            f"LRP has no rule for the layer types {', '.join(missing)} of model {getattr(m, 'name', '?')!r}; "
            "use deeplift or integrated-gradients"
        )
    with running(call):
        attr = LRP(call.scored).attribute(call.x, additional_forward_args=call.extra)
    # LRP leaves its rules on the modules; remove them so that other methods see plain layers
    for mod in call.scored.net.modules():
        for name in ("rule", "activations"):
            if name in mod.__dict__:
                del mod.__dict__[name]
    return call.finish(tensor(attr))


# ------------------------------------------------------------------ perturbation methods


def cell_mask(shape: Sequence[int], frames: int, bins: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, F, T) long: the index of each time-frequency cell of ``frames × bins``
    (row-major from the lowest band and the first frame). For a waveform (B, 1, S) shape,
    segments of ``frames`` samples: (1, 1, S)."""
    if frames < 1 or bins < 1:
        raise ParameterError(f"a cell is at least 1 frame × 1 bin, got {frames} × {bins}")
    if len(shape) == 3:
        t = torch.arange(shape[-1], device=device) // frames
        return t.view(1, 1, -1)
    f_idx = torch.arange(shape[-2], device=device) // bins
    t_idx = torch.arange(shape[-1], device=device) // frames
    n_t = int(t_idx[-1]) + 1
    return (f_idx.view(-1, 1) * n_t + t_idx.view(1, -1)).view(1, 1, shape[-2], shape[-1])


def occlusion(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    frames: int = 8,
    bins: int = 8,
    stride_frames: int | None = None,
    stride_bins: int | None = None,
    output: str = "logit",
    batch_size: int = 16,
) -> torch.Tensor:
    """Captum ``Occlusion`` (Zeiler & Fergus 2014): the score drop when a window of
    ``frames × bins`` (all channels) is replaced by silence, averaged over the windows that
    cover each cell; windows move by the strides (default: the window, i.e. cells). A
    waveform is occluded in segments of ``frames`` samples. x's shape."""
    from captum.attr import Occlusion

    call = prepare(m, x, target, output=output)
    if frames < 1 or bins < 1:
        raise ParameterError(f"a cell is at least 1 frame × 1 bin, got {frames} × {bins}")
    c = call.x.shape[1]
    if call.kind == "waveform":
        window: tuple[int, ...] = (c, frames)
        strides: tuple[int, ...] = (c, stride_frames or frames)
    else:
        window = (c, min(bins, call.x.shape[2]), min(frames, call.x.shape[3]))
        strides = (c, stride_bins or window[1], stride_frames or window[2])
    with running(call), torch.no_grad():
        attr = Occlusion(call.scored).attribute(
            call.x,
            sliding_window_shapes=window,
            strides=strides,
            baselines=call.baseline(None),
            additional_forward_args=call.extra,
            perturbations_per_eval=batch_size,
        )
    return call.finish(tensor(attr))


def feature_ablation(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    frames: int = 8,
    bins: int = 8,
    output: str = "logit",
    mask: torch.Tensor | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """Captum ``FeatureAblation``: the score drop when one group is replaced by the
    baseline, given to every value of the group. Audio: time-frequency cells of
    ``frames × bins`` (all channels) set to silence (:func:`cell_mask`); waveform: segments
    of ``frames`` samples set to 0; MIDI: one note at a time (its 3 features) set to the
    average note. x's shape."""
    from captum.attr import FeatureAblation

    call = prepare(m, x, target, output=output, mask=mask)
    if call.kind == "midi":
        n = call.x.shape[1]
        groups = torch.arange(n, device=call.x.device).view(1, n, 1).expand(1, n, call.x.shape[2])
    else:
        groups = cell_mask(call.x.shape, frames, bins, call.x.device)
        groups = groups.expand((1,) + tuple(call.x.shape[1:]))
    with running(call), torch.no_grad():
        attr = FeatureAblation(call.scored).attribute(
            call.x,
            baselines=call.baseline(None),
            feature_mask=groups,
            additional_forward_args=call.extra,
            perturbations_per_eval=batch_size,
        )
    return call.finish(tensor(attr))


# ------------------------------------------------------------------ layer methods


def layer_grad_cam(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    relu: bool = False,
    output: str = "logit",
) -> torch.Tensor:
    """Captum ``LayerGradCam`` (Selvaraju et al. 2017): ``Σ_k α_k A_k`` with ``α_k`` the
    mean over the layer's positions of ``∂score/∂A_k``. x: (B, C, F, T); ``layer``: a
    readable layer name or module path with output (B, K, F_l, T_l), (B, K, T_l) or (B, K).
    Returns (B, F_l, T_l) (``F_l = 1`` for a 1-D layer; ``1 × 1`` for a dense one), sign kept
    unless ``relu``."""
    from captum.attr import LayerGradCam

    from musiclens.core.interpret.hooks import resolve

    if layer is None:
        raise ParameterError("grad-cam needs a layer")
    call = prepare(m, x, target, output=output)
    module = resolve(m, layer)
    with running(call):
        try:
            cam = LayerGradCam(call.scored, module).attribute(
                call.x, additional_forward_args=call.extra, relu_attributions=relu
            )
        except AssertionError as e:  # Captum's hook saw no output of the module
            raise ParameterError(f"layer {layer!r} did not run in the forward pass ({e})") from None
    cam = tensor(cam[0] if isinstance(cam, tuple) else cam).detach()  # a tuple: the first output
    b = cam.shape[0]
    if cam.dim() == 2:  # (B, 1) from a dense layer
        return cam.reshape(b, 1, 1)
    if cam.dim() == 3:  # (B, 1, T_l) from a 1-D layer
        return cam.reshape(b, 1, cam.shape[-1])
    return cam.reshape(b, cam.shape[-2], cam.shape[-1])
