"""The GTZAN study's baseline CNN (``vanilla-cnn``) and its interpretable-filter variant
(``masked-cnn``, Zhang, Wu & Zhu, "Interpretable Convolutional Neural Networks", CVPR 2018).

Input ``x: (B, C, F, T)`` front-end output (default: 128-band log-mel in dB, ~3 s = 130
frames at 22.05 kHz / hop 512); output logits ``(B, n_labels)``.

Network (module paths in brackets; the readable layer names are in the returned LayerInfo)::

    [norm]   per-channel standardisation (statistics fitted on the training set)
    [conv1]  3×3 conv, C -> 16, same padding      -> [relu1] -> [pool1] max-pool 4×4
    [conv2]  3×3 conv, 16 -> 32, same padding     -> [relu2]
    [mask2]  (masked-cnn only) Zhang's template mask, max(x ∘ T, 0)
                                                   -> [pool2] max-pool 4×4
    [dense1] linear -> 64 -> [relu3] -> [dropout]
    [dense2] linear -> n_labels (logits)

The mask (:class:`InterpretableMask`)
-------------------------------------
For every item and filter k, with the feature map x_k (F_l × T_l) after the ReLU and
``(μ_f, μ_t) = argmax x_k`` (first maximum in row-major order, not differentiated), the
template is

    T_k(f, t) = max(1 - d, -1),   d = sqrt(((f - μ_f) / r_f)² + ((t - μ_t) / r_t)²)

an elliptical version of Zhang's L1 template: 1 at the maximum, 0 on the ellipse of radii
``r_f`` (frequency rows) and ``r_t`` (time frames), floored at -1 further away. The output
is ``max(x ∘ T, 0)``: each filter keeps only the neighbourhood of its strongest response.
The radii are given as fractions of the map's size (``radius_f * F_l``, ``radius_t * T_l``);
Zhang's β = 4 on an n × n map corresponds to radius fractions 0.25.

Zhang's filter loss (:func:`zhang_filter_loss`) is available as an auxiliary training loss
(``net.filter_loss()`` after a forward pass in training mode; the training loop adds
``filter_loss_weight × net.filter_loss()`` when asked). It is minus the mutual information
between the feature maps of a batch and the templates {T⁻, T_μ}: see the function.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.blocks import Standardise, flat_size
from musiclens.core.models.registry import LayerInfo, register_family


# ----------------------------------------------------------------------------- templates
def elliptical_distance(
    shape: tuple[int, int], mu_f: torch.Tensor, mu_t: torch.Tensor, r_f: float, r_t: float
) -> torch.Tensor:
    """Distance of every cell of an (F_l, T_l) grid to centres ``(mu_f, mu_t)``.

    mu_f, mu_t : (...) centre rows / columns (float). Returns (..., F_l, T_l)."""
    h, w = shape
    f = torch.arange(h, device=mu_f.device, dtype=torch.float32)
    t = torch.arange(w, device=mu_f.device, dtype=torch.float32)
    df = (f.view(*([1] * mu_f.dim()), h, 1) - mu_f[..., None, None].float()) / r_f
    dt = (t.view(*([1] * mu_t.dim()), 1, w) - mu_t[..., None, None].float()) / r_t
    return torch.sqrt(df * df + dt * dt)


def mask_radii(shape: tuple[int, int], radius_f: float, radius_t: float) -> tuple[float, float]:
    """Radii in cells for an (F_l, T_l) map from fractions of its size (at least 0.5 cell)."""
    return max(0.5, radius_f * shape[0]), max(0.5, radius_t * shape[1])


def mask_templates(x: torch.Tensor, *, radius_f: float = 0.25, radius_t: float = 0.25) -> torch.Tensor:
    """Zhang-style templates centred at each map's maximum.

    x : (B, K, F_l, T_l) feature maps. Returns T (B, K, F_l, T_l), ``max(1 - d, -1)`` with
    ``d`` the elliptical distance to the map's argmax (radii as fractions of the map size).
    """
    if x.dim() != 4:
        raise ParameterError(f"mask_templates needs (B, K, F, T) maps, got shape {tuple(x.shape)}")
    b, k, h, w = x.shape
    flat = x.detach().reshape(b, k, h * w).argmax(dim=-1)
    mu_f, mu_t = flat // w, flat % w
    r_f, r_t = mask_radii((h, w), radius_f, radius_t)
    d = elliptical_distance((h, w), mu_f, mu_t, r_f, r_t)
    return (1.0 - d).clamp_min(-1.0).to(x.dtype)


class InterpretableMask(nn.Module):
    """``max(x ∘ T, 0)`` with T from :func:`mask_templates`. (B, K, F, T) -> same shape.

    In training mode the unmasked input is kept in ``last_input`` (for the filter loss).
    """

    def __init__(self, radius_f: float = 0.25, radius_t: float = 0.25) -> None:
        super().__init__()
        if not (0 < radius_f and 0 < radius_t):
            raise ParameterError(f"mask radii must be positive fractions, got {radius_f}, {radius_t}")
        self.radius_f = float(radius_f)
        self.radius_t = float(radius_t)
        self.last_input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_input = x if self.training else None
        return torch.relu(x * mask_templates(x, radius_f=self.radius_f, radius_t=self.radius_t))

    def extra_repr(self) -> str:
        return f"radius_f={self.radius_f}, radius_t={self.radius_t}"


def zhang_filter_loss(
    x: torch.Tensor,
    *,
    radius_f: float = 0.25,
    radius_t: float = 0.25,
    tau: float | None = None,
    max_positions: int = 16,
) -> torch.Tensor:
    """Zhang et al.'s filter loss, ``-MI(X; T)``, averaged over the K filters.

    For each filter, the templates are the negative template ``T⁻ = -τ`` (the filter is
    not triggered) and the positive templates ``T_μ = τ · max(1 - d_μ, -1)`` (elliptical
    distance, as the mask) on a grid of at most ``max_positions × max_positions`` centres μ
    (Zhang uses every cell; the grid keeps the cost at B·K·F·T·M). Priors are uniform
    (Zhang's α = M / (1 + M)). With the images of the batch as the samples of X,

        p(x | T) = exp(tr(x · T)) / Σ_x' exp(tr(x' · T)),   p(x) = Σ_T p(T) p(x | T),
        MI = Σ_T p(T) Σ_x p(x | T) · log(p(x | T) / p(x)).

    x : (B, K, F_l, T_l) non-negative feature maps (after the ReLU, before the mask).
    tau : template scale; Zhang's ``0.5 / (F_l · T_l)`` by default.
    Returns a scalar tensor (differentiable in x). Needs B >= 2 to be informative.
    """
    if x.dim() != 4:
        raise ParameterError(f"zhang_filter_loss needs (B, K, F, T) maps, got shape {tuple(x.shape)}")
    b, k, h, w = x.shape
    tau = 0.5 / (h * w) if tau is None else float(tau)
    step_f = max(1, math.ceil(h / max_positions))
    step_t = max(1, math.ceil(w / max_positions))
    cf = torch.arange(step_f // 2, h, step_f, device=x.device, dtype=torch.float32)
    ct = torch.arange(step_t // 2, w, step_t, device=x.device, dtype=torch.float32)
    mu_f = cf.repeat_interleave(len(ct))
    mu_t = ct.repeat(len(cf))
    r_f, r_t = mask_radii((h, w), radius_f, radius_t)
    pos = tau * (1.0 - elliptical_distance((h, w), mu_f, mu_t, r_f, r_t)).clamp_min(-1.0)  # (M, h, w)
    neg = torch.full((1, h, w), -tau, device=x.device)
    templates = torch.cat([neg, pos]).to(x.dtype)  # (M + 1, h, w)
    m = templates.shape[0]
    scores = torch.einsum("bkhw,mhw->bkm", x, templates)  # tr(x · T)
    log_p_x_t = scores - torch.logsumexp(scores, dim=0, keepdim=True)  # log p(x | T), over the batch
    log_prior = torch.full((m,), -math.log(m), device=x.device, dtype=x.dtype)
    log_p_x = torch.logsumexp(log_p_x_t + log_prior, dim=-1, keepdim=True)  # (B, K, 1)
    mi = (log_prior.exp() * (log_p_x_t.exp() * (log_p_x_t - log_p_x)).sum(dim=0)).sum(dim=-1)  # (K,)
    return -mi.mean()


def localisation(x: torch.Tensor, *, radius_f: float = 0.25, radius_t: float = 0.25) -> torch.Tensor:
    """Fraction of each map's (non-negative) energy inside its own mask ellipse (d <= 1).

    x : (B, K, F_l, T_l). Returns (K,) the mean over the batch; 1 = perfectly localised.
    A diagnostic for the filter loss (it should rise when the loss is used)."""
    t = mask_templates(x, radius_f=radius_f, radius_t=radius_t)
    e = x.clamp_min(0) ** 2
    inside = (e * (t >= 0)).sum(dim=(-2, -1))
    total = e.sum(dim=(-2, -1)).clamp_min(1e-12)
    return (inside / total).mean(dim=0)


# ----------------------------------------------------------------------------- network
class VanillaCNN(nn.Module):
    """2 conv + 2 dense; optionally Zhang's mask on the 2nd conv layer's output."""

    def __init__(
        self,
        *,
        n_labels: int,
        in_channels: int = 1,
        n_bins: int = 128,
        n_frames: int = 130,
        filters: tuple[int, int] = (16, 32),
        dense: int = 64,
        pool: tuple[int, int] = (4, 4),
        dropout: float = 0.3,
        masked: bool = False,
        mask_radius_f: float = 0.25,
        mask_radius_t: float = 0.25,
        filter_tau: float | None = None,
    ) -> None:
        super().__init__()
        if n_labels < 1:
            raise ParameterError(f"n_labels must be >= 1, got {n_labels}")
        if n_bins < pool[0] ** 2 or n_frames < pool[1] ** 2:
            raise ParameterError(
                f"the input ({n_bins} bins × {n_frames} frames) is too small for two "
                f"{pool[0]}×{pool[1]} poolings; need at least {pool[0] ** 2} × {pool[1] ** 2}"
            )
        f1, f2 = (int(v) for v in filters)
        self.masked = bool(masked)
        self.filter_tau = None if filter_tau is None else float(filter_tau)
        self.norm = Standardise(in_channels)
        self.conv1 = nn.Conv2d(in_channels, f1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(tuple(pool))
        self.conv2 = nn.Conv2d(f1, f2, 3, padding=1)
        self.relu2 = nn.ReLU()
        if self.masked:
            self.mask2 = InterpretableMask(mask_radius_f, mask_radius_t)
        self.pool2 = nn.MaxPool2d(tuple(pool))
        n_flat = flat_size(self.features, (in_channels, n_bins, n_frames))
        self.dense1 = nn.Linear(n_flat, int(dense))
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(float(dropout))
        self.dense2 = nn.Linear(int(dense), int(n_labels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> (B, filters[1], F/16, T/16) pooled conv-2 maps."""
        h = self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(self.norm(x))))))
        if self.masked:
            h = self.mask2(h)
        out: torch.Tensor = self.pool2(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)
        out: torch.Tensor = self.dense2(self.dropout(self.relu3(self.dense1(h))))
        return out

    def filter_loss(self, **kw: Any) -> torch.Tensor:
        """Zhang's filter loss of the conv-2 maps of the last training-mode forward pass."""
        if not self.masked:
            raise ParameterError("the filter loss needs the masked CNN (masked-cnn)")
        x = self.mask2.last_input
        if x is None:
            raise ParameterError("filter_loss() needs a forward pass in training mode first")
        kw.setdefault("tau", self.filter_tau)
        return zhang_filter_loss(x, radius_f=self.mask2.radius_f, radius_t=self.mask2.radius_t, **kw)


def _layers(masked: bool) -> list[LayerInfo]:
    layers = [
        LayerInfo("input norm", "norm", "input", "block", "per-channel standardisation"),
        LayerInfo("conv 1", "conv1", "conv", "conv", "3×3 conv (before ReLU)"),
        LayerInfo("conv 2", "conv2", "conv", "conv", "3×3 conv (before ReLU)"),
    ]
    if masked:
        layers.append(
            LayerInfo("conv 2 (masked)", "mask2", "conv", "conv", "max(ReLU(conv 2) ∘ template, 0), Zhang et al. 2018")
        )
    layers += [
        LayerInfo("dense 1", "dense1", "dense", "dense", "linear (before ReLU)"),
        LayerInfo("output", "dense2", "dense", "output", "logits"),
    ]
    return layers


def _build(masked: bool, params: dict[str, Any]) -> tuple[nn.Module, list[LayerInfo]]:
    for key in ("filters", "pool"):
        if key in params:
            params[key] = tuple(params[key])
    return VanillaCNN(masked=masked, **params), _layers(masked)


@register_family("vanilla-cnn")
def build_vanilla_cnn(**params: Any) -> tuple[nn.Module, list[LayerInfo]]:
    """``VanillaCNN(**params)``: n_labels, in_channels, n_bins, n_frames, filters, dense, pool, dropout."""
    return _build(False, dict(params))


@register_family("masked-cnn")
def build_masked_cnn(**params: Any) -> tuple[nn.Module, list[LayerInfo]]:
    """As vanilla-cnn plus ``mask_radius_f``, ``mask_radius_t`` (fractions of the conv-2 map)."""
    return _build(True, dict(params))
