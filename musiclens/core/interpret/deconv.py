"""Deconvolution of one filter back to input space (Zeiler & Fergus 2014; Choi et al. 2016,
"Explaining deep convolutional neural networks on music classification", the GTZAN study).

Keep one filter's activation at a layer (all positions, or only its strongest one), zero
every other filter, and go back down the network:

* max pooling is undone by *unpooling with the switches* recorded in the forward pass
  (the value goes back to where the maximum came from, the rest gets zero);
* average pooling / resizing by spreading the value evenly (upsampling);
* a convolution by the transposed convolution with the *same* weights (the filters
  flipped in space and with input/output channels swapped, ``conv_transpose``);
* a ReLU by a ReLU of the signal going down (``rule="deconvnet"``); ``rule="guided"`` also
  applies the forward pass's ReLU mask (guided backpropagation, Springenberg et al. 2015);
  ``rule="gradient"`` is the plain gradient of the kept activation map.

These are exactly the adjoint (backward) operators of pooling and convolution, so the
method is implemented with autograd and a custom rule at every ``nn.ReLU`` module
(ReLUs written as ``torch.relu``/``F.relu`` inside a ``forward`` cannot be intercepted and
behave like ``rule="guided"`` there). Batch norm in eval mode is a per-channel affine map;
its adjoint scales by ``γ/√(var + ε)``.

The result lives in input space, ``(B, C, F, T)``: a log-mel "spectrogram" of what the
filter saw, or for a 2-channel STFT model a (real, imag) pair. :func:`deconv_mask` turns it
into a mask and :func:`auralise_deconv` plays it through the recording's own STFT, as
:mod:`musiclens.core.interpret.auralise` does for activations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy.typing as npt
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import check_input, eval_mode
from musiclens.core.interpret.hooks import capture, filter_map
from musiclens.core.models.registry import LoadedModel

if TYPE_CHECKING:
    from musiclens.core.interpret.auralise import Auralisation

RULES = ("deconvnet", "guided", "gradient")


class _DeconvReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: ReLU of the incoming signal (ignores the forward mask)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


class _GuidedReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: ReLU of the signal, masked where the input was positive."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        out: torch.Tensor = grad.clamp_min(0) * (x > 0).to(grad.dtype)
        return out


@contextlib.contextmanager
def relu_rule(net: nn.Module, rule: str) -> Iterator[None]:
    """Within the block every ``nn.ReLU`` of ``net`` back-propagates by ``rule``.

    In-place ReLUs are made out-of-place for the block; hooks and flags are always restored.
    """
    if rule not in RULES:
        raise ParameterError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "gradient":
        yield
        return
    fn = _DeconvReLU if rule == "deconvnet" else _GuidedReLU
    relus = [mod for mod in net.modules() if isinstance(mod, nn.ReLU)]
    inplace = [mod.inplace for mod in relus]
    handles: list[RemovableHandle] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> torch.Tensor:
        # torch declares Function.apply without annotations
        out: torch.Tensor = fn.apply(inputs[0])  # type: ignore[no-untyped-call]
        return out

    try:
        for mod in relus:
            mod.inplace = False
            handles.append(mod.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for mod, flag in zip(relus, inplace):
            mod.inplace = flag


def deconv(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    layer: str,
    filter: int,
    keep: str = "all",
    rule: str = "deconvnet",
    positive: bool = True,
) -> torch.Tensor:
    """Project one filter of ``layer`` back to input space.

    Parameters
    ----------
    x : (B, C, F, T) front-end output.
    layer : a layer with (B, K, ...) output; ``filter`` indexes its K channels.
    keep : ``"all"`` keeps the filter's whole activation map (Choi et al.), ``"max"`` only
        its strongest position per item (Zeiler & Fergus).
    rule : ``"deconvnet"`` (default), ``"guided"`` or ``"gradient"`` (see the module doc).
    positive : start from the positive part of the activation (what a ReLU after the layer
        passes on; a pre-ReLU conv output or a batch-normalised map can be negative). With
        ``False`` the signed activation is sent down.

    Returns
    -------
    (B, C, F, T) tensor in input space (signed; see :func:`deconv_mask` for a mask).
    """
    x = check_input(m, x)
    if keep not in ("all", "max"):
        raise ParameterError(f"keep must be 'all' or 'max', got {keep!r}")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), eval_mode(m.net), relu_rule(m.net, rule), capture(m, layer, detach=False) as acts:
        m.net(x)
        if layer not in acts:
            raise ParameterError(f"layer {layer!r} did not run in the forward pass")
        a = acts[layer]
        fmap = filter_map(a, filter).detach()  # (B, ...)
        if positive:
            fmap = fmap.clamp_min(0)
        seed = torch.zeros_like(a)
        if keep == "all":
            seed[:, int(filter)] = fmap
        else:
            flat = fmap.reshape(fmap.shape[0], -1)
            idx = flat.argmax(dim=1)
            picked = torch.zeros_like(flat)
            picked[torch.arange(flat.shape[0]), idx] = flat[torch.arange(flat.shape[0]), idx]
            seed[:, int(filter)] = picked.view_as(fmap)
        if not a.requires_grad:
            raise ParameterError(f"layer {layer!r} is not connected to the input by gradients")
        (out,) = torch.autograd.grad(a, x, grad_outputs=seed, allow_unused=True)
    return torch.zeros_like(x) if out is None else out.detach()


def deconv_mask(d: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """A deconvolution (B, C, F, T) -> a non-negative mask (B, F, T).

    One channel: its positive part. Two (real, imag) channels: the magnitude
    ``√(re² + im²)``. ``normalise`` scales each item to a maximum of 1.
    """
    if d.dim() != 4:
        raise ParameterError(f"expected (B, C, F, T), got {tuple(d.shape)}")
    mask = d[:, 0].clamp_min(0) if d.shape[1] == 1 else d.pow(2).sum(1).sqrt()
    if normalise:
        peak = mask.reshape(mask.shape[0], -1).amax(1).clamp_min(1e-12)
        mask = mask / peak.view(-1, 1, 1)
    return mask


def auralise_deconv(
    m: LoadedModel,
    audio: torch.Tensor | npt.ArrayLike,
    *,
    layer: str,
    filter: int,
    sample_rate: int | None = None,
    keep: str = "all",
    rule: str = "deconvnet",
    positive: bool = True,
) -> Auralisation:
    """Hear a filter's deconvolution: its input-space projection masks the recording's STFT.

    audio : (samples,) or (B, samples) at ``sample_rate`` (default: the model's rate).
    Returns an :class:`musiclens.core.interpret.auralise.Auralisation` at ``sample_rate``.
    """
    from musiclens.core.interpret._common import to_fe_rate
    from musiclens.core.interpret.auralise import apply_mask

    fe = m.front_end
    y, sr, _ = to_fe_rate(audio, sample_rate, fe, device=m.device)
    d = deconv(m, fe(y), layer=layer, filter=filter, keep=keep, rule=rule, positive=positive)
    return apply_mask(audio, deconv_mask(d), fe, sample_rate=sr)
