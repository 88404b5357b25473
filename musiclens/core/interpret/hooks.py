"""Activation capture for any named layer: a context manager, per filter, per patch.

Layers are named as in ``LoadedModel.layers`` (readable names such as
``"mid end / conv 2"``) or by the dotted module path inside ``net``. Hooks are registered
in ``try/finally`` and always removed, also when the forward pass raises.

>>> with capture(m, ["front end / timbral 7x38 / conv"]) as acts:
...     m.net(x)
>>> acts["front end / timbral 7x38 / conv"].shape     # (B, 204, 59, T)

Shapes: a conv layer of a 2-D net gives (B, K, F_l, T_l); a 1-D layer (after a max over
frequency, MusiCNN's branches and mid end) gives (B, K, T_l); dense layers (B, K).

In-place modules (``nn.ReLU(inplace=True)`` and the like) would overwrite a captured
activation after the hook has seen it; inside :func:`capture` they run out of place, and
their flags are restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import check_input, eval_mode
from musiclens.core.models.registry import LoadedModel


def resolve(m: LoadedModel, layer: str) -> nn.Module:
    """The ``nn.Module`` of a readable layer name or a dotted module path."""
    if not isinstance(layer, str):
        raise ParameterError(f"a layer is named by a string, got {layer!r}")
    return m.module(layer)


def _first_tensor(output: object) -> torch.Tensor:
    """Modules may return tuples (LSTM): the first tensor is the activation."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ParameterError(f"a layer returned {type(output).__name__}, not a tensor; pick another layer")


@contextlib.contextmanager
def capture(
    m: LoadedModel,
    layers: str | Iterable[str],
    *,
    detach: bool = True,
    keep: str = "last",
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during every forward pass inside the block.

    Parameters
    ----------
    m : the model.
    layers : one layer name or several (readable names or module paths).
    detach : store detached tensors (default). With ``detach=False`` the stored tensors are
        part of the autograd graph, so gradients with respect to them can be taken
        (``torch.autograd.grad(score, acts[layer])``), which is how Grad-CAM reads a layer.
    keep : ``"last"`` keeps the output of the last forward pass; ``"all"`` concatenates
        the outputs of every pass along the batch axis (for patch-by-patch runs).

    Yields
    ------
    dict layer name -> activation tensor, filled as the net runs.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ParameterError("capture needs at least one layer")
    if keep not in ("last", "all"):
        raise ParameterError(f"keep must be 'last' or 'all', got {keep!r}")
    modules = [resolve(m, name) for name in names]  # raises before any hook is registered
    store: dict[str, torch.Tensor] = {}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles: list[RemovableHandle] = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, object], None]:
        def hook(_module: nn.Module, _inputs: Any, output: object) -> None:
            t = _first_tensor(output)
            t = t.detach() if detach else t
            if keep == "all":
                parts[name].append(t)
                store[name] = torch.cat(parts[name], dim=0) if len(parts[name]) > 1 else t
            else:
                store[name] = t

        return hook

    inplace = [mod for mod in m.net.modules() if getattr(mod, "inplace", False) is True]
    try:
        for mod in inplace:
            setattr(mod, "inplace", False)  # noqa: B010  (torch types module attributes as Tensor | Module)
        for name, module in zip(names, modules):
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()
        for mod in inplace:
            setattr(mod, "inplace", True)  # noqa: B010


def activations(
    m: LoadedModel, x: torch.Tensor, layers: str | Iterable[str], *, batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Run ``x`` (B, C, F, T) through the net and return the activations of ``layers``.

    No gradients are kept. Runs in chunks of ``batch_size`` items. Returns a dict
    layer name -> tensor with leading dimension B (shapes: see the module docstring).
    """
    x = check_input(m, x)
    with torch.no_grad(), eval_mode(m.net), capture(m, layers, keep="all") as acts:
        for start in range(0, x.shape[0], batch_size):
            m.net(x[start : start + batch_size])
    return dict(acts)


def filter_map(act: torch.Tensor, filter: int) -> torch.Tensor:
    """One filter's activation: (B, K, ...) -> (B, ...), e.g. (B, F_l, T_l) or (B, T_l)."""
    if act.dim() < 2:
        raise ParameterError(f"an activation must be at least (B, K), got {tuple(act.shape)}")
    k = act.shape[1]
    if not -k <= int(filter) < k:
        raise ParameterError(f"filter {filter} is out of range; the layer has {k} filters (0..{k - 1})")
    return act[:, int(filter)]


def as_map(act: torch.Tensor) -> torch.Tensor:
    """Give any activation a 2-D layout: (B, K, F, T) stays, (B, K, T) -> (B, K, 1, T),
    (B, K) -> (B, K, 1, 1)."""
    if act.dim() == 4:
        return act
    if act.dim() == 3:
        return act.unsqueeze(2)
    if act.dim() == 2:
        return act[:, :, None, None]
    raise ParameterError(f"cannot read an activation of shape {tuple(act.shape)} as maps")


def split_patches(
    x: torch.Tensor, patch_frames: int, *, hop: int | None = None, pad_last: bool = False
) -> torch.Tensor:
    """Cut a long input (1, C, F, T) or (C, F, T) into patches (P, C, F, patch_frames).

    ``hop`` defaults to ``patch_frames``. The trailing partial patch is dropped unless
    ``pad_last`` (then it is zero-padded). An input shorter than one patch gives one
    zero-padded patch.
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ParameterError(f"split_patches takes one item (1, C, F, T), got {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3:
        raise ParameterError(f"expected (C, F, T), got {tuple(x.shape)}")
    if patch_frames <= 0:
        raise ParameterError(f"patch_frames must be positive, got {patch_frames}")
    hop = patch_frames if hop is None else int(hop)
    if hop <= 0:
        raise ParameterError(f"hop must be positive, got {hop}")
    total = x.shape[-1]
    starts = list(range(0, max(total - patch_frames, -1) + 1, hop))
    if not starts or (pad_last and starts[-1] + patch_frames < total):
        starts.append(starts[-1] + hop if starts else 0)
    out = x.new_zeros((len(starts),) + tuple(x.shape[:-1]) + (patch_frames,))
    for i, s in enumerate(starts):
        part = x[..., s : s + patch_frames]
        out[i, ..., : part.shape[-1]] = part
    return out


def patch_activations(
    m: LoadedModel,
    x: torch.Tensor,
    layers: str | Iterable[str],
    *,
    hop: int | None = None,
    filters: Iterable[int] | None = None,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """Activations per patch of a long input.

    x : (1, C, F, T) with T ≥ 1; cut into ``m.patch_frames``-frame patches (see
    :func:`split_patches`). Returns layer -> (P, K, ...) (or (P, len(filters), ...) when
    ``filters`` selects some filters).
    """
    patches = split_patches(check_input(m, x), m.patch_frames, hop=hop)
    acts = activations(m, patches, layers, batch_size=batch_size)
    if filters is not None:
        idx = [int(f) for f in filters]
        for name, a in acts.items():
            for f in idx:
                filter_map(a, f)  # range check with a clear message
            acts[name] = a[:, idx]
    return acts


def active_hooks(module: nn.Module) -> int:
    """Number of forward/backward hooks registered anywhere in ``module`` (for tests and
    debugging: it must be back to its old value after every method)."""
    total = 0
    for sub in module.modules():
        total += len(sub._forward_hooks) + len(sub._forward_pre_hooks)
        total += len(sub._backward_hooks) + len(getattr(sub, "_backward_pre_hooks", {}))
    return total
