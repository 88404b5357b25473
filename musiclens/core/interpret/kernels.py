"""Kernel statistics: Frobenius norms of conv kernels, batch-norm parameters, dead kernels.

Works on any model: every ``nn.Conv1d``/``nn.Conv2d`` and every batch-norm layer of
``m.net`` is reported, named by its readable layer name when the model lists one (else by
its module path).

A kernel is *dead* (near zero) when its Frobenius norm is at most
``dead_rel_tol × (the largest kernel norm of the same layer)`` or at most ``dead_abs_tol``.
Weight decay drives unused MusiCNN filters to exactly 0, so the count is robust to the
tolerance: MTT_musicnn's first mid-end conv has a median kernel norm of 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from musiclens.core.models.registry import LoadedModel

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _readable(m: LoadedModel) -> dict[str, str]:
    names: dict[str, str] = {}
    for info in m.layers.values():
        names.setdefault(info.module, info.name)
    return names


def kernel_norms(conv: nn.Conv1d | nn.Conv2d) -> np.ndarray:
    """(out_channels,) Frobenius norm of each kernel (over input channels and kernel axes)."""
    w = conv.weight.detach().cpu().double()
    norms: np.ndarray = w.flatten(1).norm(dim=1).numpy()
    return norms


@torch.no_grad()
def kernel_stats(m: LoadedModel, *, dead_rel_tol: float = 1e-3, dead_abs_tol: float = 1e-8) -> dict[str, Any]:
    """Per conv layer: kernel shape, the norm of every kernel, dead kernels; per batch norm:
    beta, gamma, moving mean and variance. Plain lists (JSON-ready).

    Returns ``{"model", "dead_rel_tol", "dead_abs_tol", "conv": [...], "batchnorm": [...],
    "dense": [...], "totals": {"kernels", "dead"}}``; each conv entry has ``layer``,
    ``module``, ``kernel_shape`` ((out, in, *kernel) in torch order: for 2-D kernels
    (out, in, frequency, time)), ``frobenius`` (out,), ``dead`` (count), ``dead_indices``,
    ``max_norm``, ``median_norm``.
    """
    readable = _readable(m)
    conv, bns, dense = [], [], []
    total = dead_total = 0
    for path, mod in m.net.named_modules():
        name = readable.get(path, path)
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            norms = kernel_norms(mod)
            thresh = max(dead_abs_tol, dead_rel_tol * float(norms.max(initial=0.0)))
            dead_idx = np.flatnonzero(norms <= thresh)
            conv.append(
                {
                    "layer": name,
                    "module": path,
                    "kernel_shape": list(mod.weight.shape),
                    "frobenius": norms.tolist(),
                    "dead": int(dead_idx.size),
                    "dead_indices": dead_idx.tolist(),
                    "max_norm": float(norms.max()),
                    "median_norm": float(np.median(norms)),
                }
            )
            total += norms.size
            dead_total += int(dead_idx.size)
        elif isinstance(mod, _BN):
            bns.append(
                {
                    "layer": name,
                    "module": path,
                    "eps": mod.eps,
                    "beta": mod.bias.detach().cpu().tolist() if mod.bias is not None else None,
                    "gamma": mod.weight.detach().cpu().tolist() if mod.weight is not None else None,
                    "moving_mean": mod.running_mean.detach().cpu().tolist() if mod.running_mean is not None else None,
                    "moving_variance": mod.running_var.detach().cpu().tolist() if mod.running_var is not None else None,
                }
            )
        elif isinstance(mod, nn.Linear):
            rows = mod.weight.detach().cpu().double().norm(dim=1).numpy()
            dense.append(
                {"layer": name, "module": path, "weight_shape": list(mod.weight.shape), "unit_norms": rows.tolist()}
            )
    return {
        "model": m.name,
        "dead_rel_tol": dead_rel_tol,
        "dead_abs_tol": dead_abs_tol,
        "conv": conv,
        "batchnorm": bns,
        "dense": dense,
        "totals": {"kernels": total, "dead": dead_total},
    }
