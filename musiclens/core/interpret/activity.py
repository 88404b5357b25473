"""Per-unit activity on given inputs: energies, activity, dead units (complements
:mod:`musiclens.core.interpret.kernels`, which reads the weights only).

* :func:`unit_activity` — per unit (channel) of chosen layers, over all inputs and
  positions: energy (mean square activation), fraction of positive values, peak; a unit
  that is never positive is *dead on these inputs*.
* :func:`dead_units` — dead filters of every conv layer by both criteria: near-zero kernel
  norm (from the weights) and never-positive output (on the inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import check_input, eval_mode
from musiclens.core.interpret.hooks import capture
from musiclens.core.models.registry import LoadedModel

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def model_input(m: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Check a batch of network inputs: a front-end output (B, C, F, T) for a spectrogram
    model, samples (B, 1, S) or (B, S) for a raw-waveform model -> float on the model's device."""
    if m.kind != "waveform":
        return check_input(m, x)
    if not isinstance(x, torch.Tensor) or not (x.dim() == 2 or (x.dim() == 3 and x.shape[1] == 1)):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ParameterError(f"model {m.name!r} takes samples (B, 1, S) or (B, S), got {shape}")
    return (x if x.dim() == 3 else x[:, None]).float().to(m.device)


def _readable(m: LoadedModel, path: str) -> str:
    for name, info in m.layers.items():
        if info.module == path:
            return name
    return path


@dataclass
class UnitActivity:
    """Per unit (channel) of one layer over all given inputs and positions, each (K,).

    energy : mean square activation. active_fraction : fraction of values > 0.
    peak : largest activation. dead : indices of units never above ``atol``.
    """

    layer: str
    energy: np.ndarray
    active_fraction: np.ndarray
    peak: np.ndarray
    dead: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "energy": self.energy.tolist(),
            "active_fraction": self.active_fraction.tolist(),
            "peak": self.peak.tolist(),
            "dead": self.dead,
        }


def unit_activity(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    relu: bool = True,
    atol: float = 0.0,
    batch_size: int = 8,
) -> dict[str, UnitActivity]:
    """Per-unit energies and dead units of ``layers`` on the inputs ``x`` (B, C, F, T), or
    (B, 1, S) / (B, S) samples for a raw-waveform model.

    layers : default every convolution of the net (by readable name when listed).
    relu : read the positive part of each activation (what the next layer sees after a
        ReLU; a conv output read before its ReLU counts as dead when it is never positive).
    """
    x = model_input(m, x)
    if layers is None:
        layers = [_readable(m, p) for p, mod in m.net.named_modules() if isinstance(mod, CONV_TYPES)]
    names = list(layers)
    sq: dict[str, torch.Tensor] = {}
    pos: dict[str, torch.Tensor] = {}
    peak: dict[str, torch.Tensor] = {}
    count: dict[str, int] = {}
    with torch.no_grad(), eval_mode(m.net), capture(m, names) as acts:
        for start in range(0, x.shape[0], batch_size):
            acts.clear()
            m.net(x[start : start + batch_size])
            for name, a in acts.items():
                a = a.clamp_min(0) if relu else a
                v = a.transpose(0, 1).reshape(a.shape[1], -1).double()  # (K, N)
                if name not in sq:
                    sq[name] = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
                    pos[name] = torch.zeros_like(sq[name])
                    peak[name] = torch.full_like(sq[name], -float("inf"))
                    count[name] = 0
                sq[name] += v.pow(2).sum(1)
                pos[name] += (v > 0).double().sum(1)
                peak[name] = torch.maximum(peak[name], v.amax(1))
                count[name] += v.shape[1]
    out = {}
    for name in names:
        if name not in sq:
            raise ParameterError(f"layer {name!r} did not run in the forward pass")
        n = max(count[name], 1)
        dead = [int(j) for j in torch.nonzero(peak[name] <= atol).flatten()]
        out[name] = UnitActivity(
            name, (sq[name] / n).cpu().numpy(), (pos[name] / n).cpu().numpy(), peak[name].cpu().numpy(), dead
        )
    return out


def dead_units(
    m: LoadedModel, x: torch.Tensor | None = None, *, dead_rel_tol: float = 1e-3, dead_abs_tol: float = 1e-8
) -> dict[str, dict[str, list[int]]]:
    """Dead filters of every conv layer by both criteria:
    ``{layer: {"norm": [...], "activation": [...]}}``.

    ``norm``: near-zero kernels (:func:`musiclens.core.interpret.kernels.kernel_stats`).
    ``activation`` (only when inputs ``x`` (B, C, F, T) or (B, 1, S) are given): filters whose output is
    never positive on any of them (a ReLU after them always outputs 0).
    """
    from musiclens.core.interpret.kernels import kernel_stats

    stats = kernel_stats(m, dead_rel_tol=dead_rel_tol, dead_abs_tol=dead_abs_tol)["conv"]
    acts = unit_activity(m, x, layers=[s["module"] for s in stats]) if x is not None else {}
    out: dict[str, dict[str, list[int]]] = {}
    for s in stats:
        entry = {"norm": list(s["dead_indices"])}
        if x is not None:
            entry["activation"] = acts[s["module"]].dead
        out[s["layer"]] = entry
    return out
