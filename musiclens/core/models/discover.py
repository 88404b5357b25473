"""Layers of any network, found automatically, and the default CAM layer.

A network the user brings (``user_models``) has no hand-written layer list: its named
modules are classified by their class name (:func:`kind_of`) into the kinds

``conv``       Conv1d/2d/3d, ConvTranspose*, and modules named like ``*Conv*``
``linear``     Linear (``output`` for the one whose output is the logits)
``norm``       BatchNorm, LayerNorm, GroupNorm, InstanceNorm, ...
``recurrent``  LSTM, GRU, RNN (the first tensor of their output is the activation)
``attention``  MultiheadAttention, and modules named like ``*Attention*`` (transformers)
``pool``       max / average / adaptive pooling

and given readable names (``features.3`` -> ``"features 3"``; ``model.json``'s
``"layer_names"`` overrides them) and groups (the first part of the module path). Activations
and dropout are left out: they are not layers a user picks (a layer's output already shows them
when the network uses functional activations, and an ``nn.ReLU`` adds no filters).

:func:`probe_input` is the zero batch of the shape a model's input spec describes;
:func:`layer_shapes` runs it with hooks on every layer; :func:`default_cam_layer` picks the
last layer with a time-frequency output from those shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from musiclens.core.errors import MusicLensError
from musiclens.core.features import FrontEnd
from musiclens.core.models.inputs import InputSpec, NoteSpec, PieceSpec
from musiclens.core.models.registry import LayerInfo, LoadedModel

#: The kinds :func:`kind_of` gives, in the order its rules are tried.
KINDS: tuple[str, ...] = ("recurrent", "attention", "conv", "linear", "norm", "pool")
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("recurrent", ("LSTM", "GRU", "RNN")),
    ("attention", ("Attention",)),
    ("conv", ("Conv",)),
    ("linear", ("Linear",)),
    ("norm", ("Norm",)),
    ("pool", ("Pool",)),
)
#: Notes a whole-piece (variable length) MIDI network reads in the probe.
PROBE_NOTES = 32


def kind_of(type_name: str) -> str | None:
    """The layer kind of a module class (``"torch.nn.modules.conv.Conv2d"`` or ``"Conv2d"``),
    or None for modules that are not layers (containers, activations, dropout)."""
    short = type_name.rsplit(".", 1)[-1]
    for kind, needles in _RULES:
        if any(n in short for n in needles):
            return kind
    return None


def type_name(module: nn.Module) -> str:
    """A module's class name; a TorchScript module's original class name."""
    original = getattr(module, "original_name", None)
    if isinstance(original, str) and isinstance(module, torch.jit.ScriptModule):
        return original
    return f"{type(module).__module__}.{type(module).__qualname__}"


def readable_name(path: str, kind: str) -> str:
    """``"features.3"`` -> ``"features 3"``; ``"encoder.layer.0.attention"`` ->
    ``"encoder / layer 0 / attention"``; a bare index gets its kind (``"0"`` -> ``"conv 0"``)."""
    parts: list[str] = []
    for part in path.split("."):
        if part.isdigit():
            if parts:
                parts[-1] = f"{parts[-1]} {part}"
            else:
                parts.append(f"{kind} {part}")
        else:
            parts.append(part)
    return " / ".join(parts)


def discover_layers(
    net: nn.Module,
    *,
    type_names: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    skip: str = "",
) -> list[LayerInfo]:
    """The inspectable layers of ``net``, in module order.

    type_names : module path -> class name, for modules whose Python class is not the
        original one (an unflattened ``torch.export`` program: taken from its graph).
    names : module path -> readable name (``model.json``'s ``"layer_names"``, paths as the
        user wrote them, i.e. without ``skip``).
    skip : a path prefix added by a wrapper (``"net."``): left out of readable names.
    """
    names = dict(names or {})
    paths = {path for path, _ in net.named_modules()}
    unknown = sorted(p for p in names if skip + p not in paths)
    if unknown:
        raise MusicLensError(
            "layer_names names modules the network does not have: "
            + ", ".join(unknown[:5])
            + f" (it has e.g. {', '.join(sorted(p for p in paths if p)[:5])})"
        )
    layers: list[LayerInfo] = []
    seen: set[str] = set()
    for path, module in net.named_modules():
        if not path or (skip and path + "." == skip):
            continue
        tname = (type_names or {}).get(path) or type_name(module)
        kind = kind_of(tname)
        own = path[len(skip) :] if skip and path.startswith(skip) else path
        if kind is None and own not in names:
            continue
        kind = kind or "block"
        name = names.get(own) or readable_name(own, kind)
        if name in seen:
            name = own
        seen.add(name)
        group = own.split(".")[0] if "." in own else kind
        layers.append(LayerInfo(name, path, group, kind, _description(module, tname)))
    return layers


def _description(module: nn.Module, tname: str) -> str:
    """``"Conv2d(1, 4, kernel_size=(3, 3), ...)"`` for a plain torch module, else the class name."""
    short = tname.rsplit(".", 1)[-1]
    if isinstance(module, torch.jit.ScriptModule) or type(module).__module__.startswith("torch.export"):
        return short
    try:
        extra = module.extra_repr()
    except Exception:  # noqa: BLE001 - a user's extra_repr may fail; the class name is enough
        extra = ""
    return f"{short}({extra})" if extra and len(extra) <= 80 else short


# ----------------------------------------------------------------------------- probing
def probe_input(spec: InputSpec, length: int, *, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A zero batch of the shape the spec describes, and the MIDI mask (None otherwise).

    audio: ``(batch, C, F, length)`` frames; waveform: ``(batch, 1, length)`` samples;
    MIDI: ``(batch, N, n_features)`` notes with an all-true ``(batch, N)`` mask (N =
    ``length``, or :data:`PROBE_NOTES` for a whole-piece spec)."""
    if isinstance(spec, FrontEnd):
        return torch.zeros(batch, spec.channels, spec.n_bins, int(length)), None
    if isinstance(spec, NoteSpec):
        n = PROBE_NOTES if isinstance(spec, PieceSpec) else int(length)
        return torch.zeros(batch, n, len(spec.features)), torch.ones(batch, n, dtype=torch.bool)
    return torch.zeros(batch, 1, int(length)), None


def input_axes(spec: InputSpec) -> str:
    """The axes of a spec's network input, for messages: ``"(B, C, F, T)"`` ..."""
    if isinstance(spec, FrontEnd):
        return "(B, C, F, T)"
    if isinstance(spec, NoteSpec):
        return "(B, N, features)"
    return "(B, 1, samples)"


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output as one tensor: itself, a tuple's first tensor (LSTM, attention), a
    model output's ``logits`` / first value; None when there is none."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def run_hooked(
    net: nn.Module, modules: Iterable[tuple[str, str]], x: torch.Tensor, mask: torch.Tensor | None
) -> tuple[list[tuple[str, torch.Tensor]], object]:
    """One no-grad forward pass of ``x`` with forward hooks on ``modules`` ((name, path)
    pairs); returns the (name, output tensor) pairs in the order the layers ran (a layer run
    twice: its first run) and the network's output."""
    seen: dict[str, torch.Tensor] = {}
    handles: list[RemovableHandle] = []

    def make(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: object) -> None:
            t = first_tensor(out)
            if t is not None and name not in seen:
                seen[name] = t.detach()

        return hook

    try:
        for name, path in modules:
            handles.append(net.get_submodule(path).register_forward_hook(make(name)))
        with torch.no_grad():
            out = net(x) if mask is None else net(x, mask)
    finally:
        for h in handles:
            h.remove()
    return list(seen.items()), out


def layer_shapes(model: LoadedModel) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch axis) of every layer of ``model`` for one zero patch,
    in the order the layers run; layers that do not run are left out. Empty for a model
    whose layers cannot be hooked."""
    if not model.hooks_supported or not model.layers:
        return {}
    x, mask = probe_input(model.input, model.patch_frames)
    x = x.to(model.device)
    mask = None if mask is None else mask.to(model.device)
    ran, _ = run_hooked(model.net, [(n, info.module) for n, info in model.layers.items()], x, mask)
    return {name: tuple(t.shape[1:]) for name, t in ran}


def default_cam_layer(model: LoadedModel) -> str | None:
    """The layer a class activation map reads by default: the last layer (in running order)
    whose output is time-frequency shaped, ``(B, C, F, T)`` with T > 1 for an audio model
    (``(B, C, T)`` for a raw-waveform model), found by one forward pass of a zero patch.
    None when there is none (MIDI models, dense-only networks, TorchScript networks)."""
    if model.kind == "midi":
        return None
    rank = 3 if model.kind == "audio" else 2
    best = None
    for name, shape in layer_shapes(model).items():
        if len(shape) == rank and shape[-1] > 1 and model.layers[name].kind != "output":
            best = name
    return best
