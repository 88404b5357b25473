"""Resizing and scaling of attribution / activation maps, kept apart from the methods.

Every method returns maps at its own resolution (a layer's (F_l, T_l), the input's
(F, T), ...); the caller decides how to bring them to the spectrogram:

>>> heat = grad_cam(m, x, layer="conv 3", target="rock")      # (B, F_l, T_l)
>>> overlay = upsample(heat, x.shape[-2:])                       # (B, F, T)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musiclens.core.errors import ParameterError

MODES = ("bilinear", "nearest", "bicubic")


def upsample(maps: torch.Tensor, size: tuple[int, int] | torch.Size, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize maps to ``size = (F, T)``.

    maps : (B, F_l, T_l), (B, K, F_l, T_l) or (B, T_l) (a time-only map, e.g. after a max
        over frequency: it is spread evenly over all F rows).
    mode : ``"bilinear"`` (``align_corners=False``, each cell covers its share of the input),
        ``"nearest"`` or ``"bicubic"``.

    Returns (B, F, T) or (B, K, F, T). The values (and their sign) are those of the map,
    interpolated; nothing is normalised.
    """
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    size = (int(size[0]), int(size[1]))
    if maps.dim() == 2:
        maps = maps.unsqueeze(1)
    squeeze = maps.dim() == 3
    m4 = maps.unsqueeze(1) if squeeze else maps
    if m4.dim() != 4:
        raise ParameterError(f"maps must be (B, T), (B, F, T) or (B, K, F, T), got {tuple(maps.shape)}")
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(m4.float(), size=size, mode=mode, **kwargs)
    return out[:, 0] if squeeze else out


def normalise(maps: torch.Tensor, *, mode: str = "max", eps: float = 1e-12) -> torch.Tensor:
    """Scale each item of (B, ...) maps.

    ``"max"``: divide by the item's largest absolute value (sign kept, range [-1, 1]);
    ``"minmax"``: map the item's range to [0, 1].
    """
    flat = maps.reshape(maps.shape[0], -1)
    shape = (-1,) + (1,) * (maps.dim() - 1)
    if mode == "max":
        return maps / flat.abs().amax(dim=1).clamp_min(eps).view(shape)
    if mode == "minmax":
        lo = flat.amin(dim=1).view(shape)
        hi = flat.amax(dim=1).view(shape)
        return (maps - lo) / (hi - lo).clamp_min(eps)
    raise ParameterError(f"mode must be 'max' or 'minmax', got {mode!r}")
