"""Class activation maps: CAM (exact for GAP models), Grad-CAM and Grad-CAM++.

All three return maps at the layer's own resolution, ``(B, F_l, T_l)`` (``F_l = 1`` for a
1-D layer ``(B, K, T_l)``), with the sign kept; pass ``relu=True`` for the usual
"positive evidence only" picture and use :func:`musiclens.core.interpret.maps.upsample` to
bring them to the spectrogram.

Targets are a label index or a label name (``"rock"``); with a batch, one target for all
items or a sequence with one per item. The score is the target's logit by default
(``output="probability"`` differentiates the sigmoid/softmax output instead).

Grad-CAM is Captum's ``LayerGradCam`` (equal to the earlier hand-written version,
``tests/test_captum_parity.py``); CAM and Grad-CAM++ are ours (Captum has neither). A target
may be a set of labels (``{"a", "b"}`` or ``"a+b"``): the score is the sum of their logits.

References: Zhou et al. 2016 (CAM); Selvaraju et al. 2017 (Grad-CAM); Chattopadhyay et al.
2018 (Grad-CAM++, the closed form with an exponential of the score).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import (
    Target,
    check_input,
    class_scores,
    eval_mode,
    target_weights,
)
from musiclens.core.interpret.hooks import as_map, capture, resolve
from musiclens.core.interpret.maps import upsample  # noqa: F401  (re-exported for callers)
from musiclens.core.models.registry import LoadedModel


def _find_classifier(m: LoadedModel, channels: int, classifier: str | None) -> nn.Linear | None:
    if classifier is not None:
        mod = resolve(m, classifier)
        if not isinstance(mod, nn.Linear):
            raise ParameterError(f"classifier {classifier!r} is a {type(mod).__name__}, not nn.Linear")
        if mod.in_features != channels:
            raise ParameterError(
                f"classifier {classifier!r} reads {mod.in_features} values, but the feature "
                f"layer has {channels} channels: CAM needs GAP directly between them"
            )
        return mod
    linears = [mod for mod in m.net.modules() if isinstance(mod, nn.Linear)]
    if linears and linears[-1].in_features == channels:
        return linears[-1]
    if channels == len(m.labels):
        return None  # the feature maps are the class maps (conv -> GAP -> logits)
    raise ParameterError(
        f"CAM needs a model whose last linear layer reads the {channels} globally averaged "
        f"maps of the chosen layer (a GAP model); use grad_cam for other models"
    )


def cam(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str,
    classifier: str | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """Exact class activation map of a global-average-pooling model.

    ``CAM_c = Σ_k w[c, k] · A_k`` where ``A`` is the output of ``layer`` (the maps that are
    averaged) and ``w`` the weights of ``classifier`` (default: the last ``nn.Linear`` of
    the net; when the maps themselves are the class maps, ``w`` is the identity). For such
    a model ``logit_c = mean_{f,t} CAM_c + bias_c`` exactly.

    Parameters
    ----------
    x : (B, C, F, T) front-end output.
    layer : the layer whose output is globally averaged, (B, K, F_l, T_l).
    relu : clip negative evidence (off by default: the sign is kept).

    Returns
    -------
    (B, F_l, T_l) float tensor.
    """
    x = check_input(m, x)
    targets = target_weights(m, target, x.shape[0])
    with torch.no_grad(), eval_mode(m.net), capture(m, layer) as acts:
        m.net(x)
    if layer not in acts:
        raise ParameterError(f"layer {layer!r} did not run in the forward pass")
    a = as_map(acts[layer])
    lin = _find_classifier(m, a.shape[1], classifier)
    if lin is None:
        w = torch.eye(a.shape[1], device=a.device, dtype=a.dtype)
    else:
        w = lin.weight.detach().to(a)
    weights = targets.to(a) @ w  # (B, K): the sum of the rows of a set of labels
    out = torch.einsum("bk,bkft->bft", weights, a)
    return out.clamp_min(0) if relu else out


def _layer_and_grad(
    m: LoadedModel, x: torch.Tensor, layer: str, targets: torch.Tensor, output: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activation (B, K, F_l, T_l), d score / d activation (same shape), scores (B,)."""
    x = x.detach().requires_grad_(True)  # keeps a graph even when the weights are frozen
    with torch.enable_grad(), eval_mode(m.net), capture(m, layer, detach=False) as acts:
        logits = m.net(x)
        if layer not in acts:
            raise ParameterError(f"layer {layer!r} did not run in the forward pass")
        a = acts[layer]
        scores = class_scores(m, logits, targets, output)
        if not a.requires_grad:
            raise ParameterError(f"layer {layer!r} is not connected to the output by gradients")
        (grad,) = torch.autograd.grad(scores.sum(), a, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(a)
    return as_map(a.detach()), as_map(grad.detach()), scores.detach()


def grad_cam(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    layer: str,
    target: Target | Sequence[Target],
    relu: bool = False,
    output: str = "logit",
) -> torch.Tensor:
    """Grad-CAM (Captum ``LayerGradCam``): ``Σ_k α_k A_k`` with ``α_k = mean_{f,t} ∂y_c/∂A_k``.

    x : (B, C, F, T). layer : any layer with (B, K, F_l, T_l) or (B, K, T_l) output.
    Returns (B, F_l, T_l) (``F_l = 1`` for 1-D layers), sign kept unless ``relu``.
    For a GAP model read at the averaged layer, this equals :func:`cam` divided by
    ``F_l·T_l``.
    """
    from musiclens.core.interpret.captum_methods import layer_grad_cam

    return layer_grad_cam(m, x, target=target, layer=layer, relu=relu, output=output)


def grad_cam_pp(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    layer: str,
    target: Target | Sequence[Target],
    relu: bool = False,
    output: str = "logit",
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018), closed form for ``Y = exp(S_c)``.

    ``α^{kij} = g² / (2g² + Σ_ab A_k^{ab} g³)``, ``w_k = Σ_ij α^{kij} ReLU(g^{kij})``
    where ``g = ∂S_c/∂A_k``; map ``= Σ_k w_k A_k``. Shapes as :func:`grad_cam`.
    """
    x = check_input(m, x)
    targets = target_weights(m, target, x.shape[0])
    a, g, _ = _layer_and_grad(m, x, layer, targets, output)
    g2, g3 = g.pow(2), g.pow(3)
    denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    weights = (alpha * F.relu(g)).sum(dim=(2, 3))  # (B, K)
    out = torch.einsum("bk,bkft->bft", weights, a)
    return out.clamp_min(0) if relu else out
