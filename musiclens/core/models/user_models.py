"""The user's own networks in a model folder, and the Open-model dialog's helpers.

``model.json``'s ``"architecture"`` says how the network is made (the rest of the file is as
for every model: the input spec, ``labels``, ``multilabel``, ``patch_frames``, and optionally
``"layer_names": {"module.path": "readable name"}``)::

    {"python": "net.py:Net", "params": {...}}   a class or factory in a .py file of the folder,
                                                or in an importable module ("pkg.mod:Name");
                                                runs the user's code: needs trust_code=True
    {"exported": "model.pt2"}                   a torch.export program: no code of the user runs
    {"torchscript": "model.ts"}                 a TorchScript archive (torch.jit.save)

Weights: ``model.json``'s ``"weights"`` (default ``weights.safetensors``), safetensors or a
``.pt``/``.pth`` state dict read with ``torch.load(weights_only=True)``; ``"weights": null``
keeps the network's own initial weights (a python architecture). Exported and TorchScript
programs carry their weights; a ``"weights"`` file named in ``model.json`` replaces them.

A python class is called with ``params`` as keyword arguments; a factory may return an
``nn.Module`` or ``(net, layers)`` like a family builder. A network whose output is not a
tensor (a transformers ``ModelOutput``, a tuple) is wrapped in :class:`OutputLogits` (its
modules then live under ``net.``).

At load, one forward pass of a zero batch of the input spec's shape checks the network: an
input it does not accept, an output that is not ``(B, n_labels)``, a label count that differs
from the output size are errors naming what was expected and what was given; the same pass
finds the layers (:mod:`musiclens.core.models.discover`) in the order they run.

Layer hooks work on python networks and on exported programs (through
``torch.export.unflatten``, whose submodules keep the original module paths); a TorchScript
network runs compiled code, so ``hooks_supported`` is False and ``limits`` says why.

The Open-model dialog: :func:`guess_meta` drafts a ``model.json`` for a ``.py``, a ``.pt2``,
a TorchScript file or a folder; :func:`write_model_folder` writes and checks it;
:func:`describe` says, one line per feature, what works with a model and what does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import shutil
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musiclens.core.errors import MusicLensError
from musiclens.core.features import FrontEnd, logmel_frontend
from musiclens.core.models import schema
from musiclens.core.models.discover import (
    default_cam_layer,
    discover_layers,
    first_tensor,
    input_axes,
    probe_input,
    run_hooked,
)
from musiclens.core.models.inputs import InputSpec, NoteSpec
from musiclens.core.models.registry import (
    FORMAT,
    META_FILE,
    TORCH_WEIGHTS_SUFFIXES,
    WEIGHTS_FILE,
    LayerInfo,
    LoadedModel,
    check_finite,
    file_in_folder,
    fit_weights,
    input_length,
    load,
    load_weights,
    read_meta,
    read_weights,
)

#: The architecture entries of a user's network, besides a family's ``"family"``.
ARCHITECTURES: tuple[str, ...] = ("python", "exported", "torchscript")
#: Suffixes :func:`guess_meta` reads as TorchScript archives (``.pt`` too when it holds code).
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".jit")
#: Items in the probe batch (2: a network that only takes a batch of 1 is found at load).
PROBE_BATCH = 2

_TS_REASON = (
    "a TorchScript network runs compiled code, so its layers cannot be hooked (outputs and input "
    "attributions work); save it with torch.export (.pt2) to inspect its layers"
)
#: ``limits["kernels"]`` of an exported program (the kernel statistics read torch layer types).
EXPORTED_KERNELS = (
    "the kernel statistics read torch's Conv, BatchNorm and Linear modules; an exported program's "
    "layers are graph modules (open the python form of the network for its kernels)"
)
#: ``LoadedModel.limits`` of a TorchScript network.
#: The features that need layer hooks (the keys of :data:`TORCHSCRIPT_LIMITS`).
HOOK_FEATURES: tuple[str, ...] = ("layers", "cam", "auralise", "similarity", "kernels", "deconv", "sanity")
TORCHSCRIPT_LIMITS: dict[str, str] = dict.fromkeys(HOOK_FEATURES, _TS_REASON)


class OutputLogits(nn.Module):
    """Wraps a network whose output is not a tensor: forward returns its logits (a model
    output's ``.logits``, a tuple's or a dict's first tensor). The network is ``self.net``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any) -> torch.Tensor:
        out = self.net(*args)
        t = first_tensor(out)
        if t is None:
            raise MusicLensError(f"the network returned a {type(out).__name__}, not a tensor of logits")
        return t


# ----------------------------------------------------------------------------- loading
def architecture_kind(architecture: Any, where: Path | str = "model.json") -> str:
    """``"python"``, ``"exported"`` or ``"torchscript"``: the one key of a user's architecture."""
    keys = [k for k in ARCHITECTURES if isinstance(architecture, dict) and k in architecture]
    if len(keys) != 1:
        found = sorted(architecture) if isinstance(architecture, dict) else type(architecture).__name__
        raise MusicLensError(
            f"{where}: the architecture must have exactly one of 'family', {', '.join(map(repr, ARCHITECTURES))}; "
            f"got {found}"
        )
    return keys[0]


def load_user_model(
    folder: Path, meta: dict[str, Any], spec: InputSpec, *, device: torch.device, trust_code: bool = False
) -> LoadedModel:
    """A :class:`LoadedModel` of the user's network in ``folder`` (``meta``: its checked
    ``model.json``; ``spec``: its input spec), in eval mode on ``device``. Called by
    :func:`musiclens.core.models.registry.load`."""
    where = folder / META_FILE
    arch = meta["architecture"]
    kind = architecture_kind(arch, where)
    given_layers: list[LayerInfo] | None = None
    type_names: dict[str, str] | None = None
    dims: Dims | None = None
    hooks, limits = True, dict[str, str]()
    if kind == "python":
        net, given_layers = build_python(folder, arch, trust_code=trust_code, where=where)
        weights = meta.get("weights", WEIGHTS_FILE)
        if weights is not None:
            hint = '; name yours with "weights" (or give "weights": null to keep the network\'s own initial weights)'
            load_weights(net, file_in_folder(folder, str(weights), where, "weights file", hint))
        else:
            check_finite(net.state_dict(), f"the network built by {arch['python']}")
    else:
        path = _inside(folder, str(arch[kind]), where)
        if kind == "exported":
            net, type_names, dims = load_exported(path)
            limits["kernels"] = EXPORTED_KERNELS
            if dims is not None and dims[-1] is not None and not isinstance(spec, NoteSpec):
                unit = "frames" if isinstance(spec, FrontEnd) else "samples"
                limits["length"] = (
                    f"the exported program takes exactly {dims[-1]} {unit} "
                    "(its last axis is fixed): analyses of longer spans (a whole recording's layer maps, filter "
                    "listening) fail; export with a dynamic last axis to allow them"
                )
        else:
            net = load_torchscript(path)
            hooks, limits = False, dict(TORCHSCRIPT_LIMITS)
        if meta.get("weights"):
            load_weights(net, file_in_folder(folder, str(meta["weights"]), where, "weights file"))
        else:
            check_finite(net.state_dict(), path)
    net.eval()
    length = input_length(meta, spec)
    expects = None if dims is None else shape_text(dims)
    out = check_network(net, spec, length, list(meta["labels"]), where=where, expects=expects)
    skip = ""
    if not isinstance(out, torch.Tensor):
        net, skip = OutputLogits(net).eval(), "net."
    if not hooks:
        layers: list[LayerInfo] = []
    elif given_layers is not None:
        layers = [
            LayerInfo(i.name, skip + i.module, i.group, i.kind, i.description) if skip else i for i in given_layers
        ]
    else:
        found = discover_layers(net, type_names=type_names, names=meta.get("layer_names"), skip=skip)
        layers = _in_running_order(net, found, spec, length)
    net.to(device)
    return LoadedModel(
        name=meta.get("name", folder.name),
        net=net,
        input=spec,
        labels=list(meta["labels"]),
        patch_frames=length if isinstance(spec, FrontEnd) else None,
        multilabel=bool(meta.get("multilabel", False)),
        layers={layer.name: layer for layer in layers},
        architecture=arch,
        provenance=meta.get("provenance", {}),
        source=folder,
        hooks_supported=hooks,
        limits=limits,
    )


def _length(meta: dict[str, Any], spec: InputSpec) -> int:
    """The network's input length: frames (audio), notes (MIDI) or samples (waveform)."""
    return input_length(meta, spec)


def _inside(folder: Path, name: str, where: Path | str) -> Path:
    """``folder / name``, refusing a path that leaves the folder or is not a regular file."""
    return file_in_folder(folder, name, where)


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` (a user's file may import its neighbours)."""
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _split_ref(ref: Any, where: Path | str) -> tuple[str, str]:
    if not isinstance(ref, str) or ":" not in ref:
        raise MusicLensError(
            f"{where}: 'python' must be 'file.py:Name' or 'package.module:Name' (a class or factory), got {ref!r}"
        )
    target, attr = ref.rsplit(":", 1)
    return target, attr


def _is_file_ref(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def import_python(folder: Path, target: str, where: Path | str) -> Any:
    """The module ``target``: a ``.py`` file of ``folder`` (run as a fresh module) or an
    importable module path. The caller has checked that running code is allowed."""
    if _is_file_ref(target):
        path = _inside(folder, target, where)
        name = "musiclens_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise MusicLensError(f"{where}: cannot read {path} as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        try:
            with _on_path(path.parent):
                module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
            sys.modules.pop(name, None)
            raise MusicLensError(
                f"{where}: running {path.name} failed: {_first_line(exc)} "
                f"({type(exc).__name__} in the model's own code)"
            ) from None
        return module
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise MusicLensError(f"{where}: cannot import the module {target!r}: {exc}") from None


def build_python(
    folder: Path, arch: dict[str, Any], *, trust_code: bool, where: Path | str
) -> tuple[nn.Module, list[LayerInfo] | None]:
    """Run a ``{"python": "net.py:Net", "params": {...}}`` architecture: ``(net, layers)``,
    layers None unless a factory returned them. Refused unless ``trust_code``."""
    ref = arch["python"]
    target, attr = _split_ref(ref, where)
    if not trust_code:
        what = f"the file {Path(target).name} in {folder}" if _is_file_ref(target) else f"the module {target!r}"
        raise MusicLensError(
            f"{where}: this model is built by running Python code ({ref}: {what}); MusicLens runs a model's "
            "code only when you choose to: allow it with trust_code=True (CLI: --trust-code) if you trust it"
        )
    params = arch.get("params", {}) or {}
    if not isinstance(params, dict):
        raise MusicLensError(f"{where}: 'params' must be an object of keyword arguments, got {params!r}")
    with _on_path(folder):
        obj: Any = import_python(folder, target, where)
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise MusicLensError(f"{where}: {target} has no {attr!r}") from None
        return instantiate(obj, params, str(ref), where)


def instantiate(
    obj: Any, params: dict[str, Any], ref: str, where: Path | str
) -> tuple[nn.Module, list[LayerInfo] | None]:
    """``obj(**params)`` for a class or factory (an ``nn.Module`` instance is used as it is),
    checked to give an ``nn.Module`` or ``(net, layers)``."""
    if isinstance(obj, nn.Module):
        if params:
            raise MusicLensError(f"{where}: {ref} is a network instance; it takes no params (got {sorted(params)})")
        return obj, None
    if not callable(obj):
        raise MusicLensError(f"{where}: {ref} is a {type(obj).__name__}, not a class or factory")
    schema.check_fields(params, obj, where, "architecture.params", infer=True)
    _count_on_meta(obj, params, ref, where)
    try:
        result = obj(**params)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise MusicLensError(
            f"{where}: {ref}(**params) failed: {_first_line(exc)} ({type(exc).__name__} in the model's own code)"
        ) from None
    if isinstance(result, nn.Module):
        return result, None
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], nn.Module)
        and all(isinstance(i, LayerInfo) for i in result[1])
    ):
        return result[0], list(result[1])
    raise MusicLensError(f"{where}: {ref} returned a {type(result).__name__}, not an nn.Module")


def _count_on_meta(obj: Any, params: dict[str, Any], ref: str, where: Path | str) -> None:
    """Build the user's network once on torch's ``meta`` device (shapes, no memory) and refuse
    it when it has more than :data:`schema.MAX_PARAMETERS` parameters; a network that cannot
    be built there (it computes with its tensors) is counted after it is built for real."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = obj(**params)
    except Exception:  # noqa: BLE001 - the real build reports the user's error
        return
    net = made[0] if isinstance(made, tuple) and made else made
    if isinstance(net, nn.Module):
        count = sum(t.numel() for t in net.parameters()) + sum(t.numel() for t in net.buffers())
        if count > schema.MAX_PARAMETERS:
            raise MusicLensError(
                f"{where}: {ref}(**params) has {count:,} parameters; allowed: at most {schema.MAX_PARAMETERS:,}"
            )


#: An exported program's input shape: an int per fixed axis, None per free (dynamic) axis.
Dims = tuple[int | None, ...]


def shape_text(dims: Dims) -> str:
    """``(None, 1, 32, None)`` -> ``"(*, 1, 32, *)"``."""
    return "(" + ", ".join("*" if d is None else str(d) for d in dims) + ")"


def load_exported(path: Path) -> tuple[nn.Module, dict[str, str], Dims | None]:
    """A ``torch.export`` program as a module whose submodules can be hooked
    (``torch.export.unflatten``): ``(net, type_names, input dims)``; ``type_names`` maps
    module paths to their original class names (from the graph), the input dims are the
    program's first input's shape (None for a dynamic axis)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ep = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
            raise MusicLensError(f"{path} is not a readable torch.export program (.pt2): {exc}") from None
        net = torch.export.unflatten(ep)
    type_names: dict[str, str] = {}
    for node in ep.graph.nodes:
        for value in (node.meta.get("nn_module_stack") or {}).values():
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
                type_names[str(value[0])] = value[1]
    dims: Dims | None = None
    inputs = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in inputs and "val" in node.meta:
            shape = getattr(node.meta["val"], "shape", None)
            if shape is not None:
                dims = tuple(d if isinstance(d, int) else None for d in shape)
            break

    def deepcopy(memo: dict[int, Any]) -> nn.Module:  # the graph's fake tensors can't be deep-copied
        fresh, _, _ = load_exported(path)
        fresh.load_state_dict(net.state_dict())
        return fresh.train(net.training).to(next(iter(net.parameters()), torch.zeros(0)).device)

    object.__setattr__(net, "__deepcopy__", deepcopy)
    return net, type_names, dims


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript archive (``torch.jit.save``) on the CPU."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still readable
            net: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MusicLensError(f"{path} is not a readable TorchScript archive: {first}") from None
    return net


# ----------------------------------------------------------------------------- checks
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _first_layer_hint(net: nn.Module) -> str:
    """``"its first layer conv1 (4-D input) takes 1 input channel(s)"`` from the first conv or
    linear weight; "" when there is none."""
    for path, module in net.named_modules():
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() < 2:
            continue
        if w.dim() >= 3:  # conv: (out, in / groups, *kernel)
            groups = int(getattr(module, "groups", 1) or 1)
            axes = {1: "(B, C, samples)", 2: "(B, C, F, T)"}.get(w.dim() - 2, f"{w.dim()}-D input")
            return (
                f"its first layer {path!r} is a {w.dim() - 2}-D convolution taking {axes} "
                f"with C = {w.shape[1] * groups} channel(s)"
            )
        return f"its first layer {path!r} is linear with {w.shape[1]} input features"
    return ""


def _run(net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> object:
    with torch.no_grad():
        return net(x) if mask is None else net(x, mask)


def check_network(
    net: nn.Module,
    spec: InputSpec,
    length: int,
    labels: list[str],
    *,
    where: Path | str,
    expects: str | None = None,
) -> object:
    """One forward pass of a zero batch of the input spec's shape; errors that name what the
    model expects and what was given. Returns the raw output (a tensor, or something
    :class:`OutputLogits` reads)."""
    x, mask = probe_input(spec, length, batch=PROBE_BATCH)
    try:
        out = _run(net, x, mask)
    except Exception as exc:  # noqa: BLE001 - the network's own error, reported with the shapes
        given = f"the input spec gives {input_axes(spec)} = {tuple(x.shape)}"
        one_works = False
        with contextlib.suppress(Exception):
            _run(net, *probe_input(spec, length, batch=1))
            one_works = True
        if one_works:
            raise MusicLensError(
                f"{where}: the network accepts a batch of 1 item only ({_first_line(exc)}); MusicLens runs batches "
                "of patches: make the batch axis free (torch.export: dynamic_shapes={0: torch.export.Dim('batch')}, "
                "with an example batch of 2 or more)"
            ) from None
        expect = f"the model expects {expects}" if expects else (_first_layer_hint(net) or "the model refuses it")
        raise MusicLensError(
            f"{where}: the network does not accept the input that model.json describes: {expect}; {given} "
            f"(the network says: {_first_line(exc)})"
        ) from None
    logits = first_tensor(out)
    if logits is None:
        raise MusicLensError(f"{where}: the network returns a {type(out).__name__}, not a tensor of logits")
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise MusicLensError(
            f"{where}: the network's output is {tuple(logits.shape)} for a batch of {x.shape[0]}; "
            f"MusicLens needs (B, n_labels) = ({x.shape[0]}, {len(labels)})"
        )
    if logits.shape[1] != len(labels):
        raise MusicLensError(
            f"{where}: model.json has {len(labels)} labels but the network gives {logits.shape[1]} outputs per item"
        )
    return out


def _in_running_order(net: nn.Module, layers: list[LayerInfo], spec: InputSpec, length: int) -> list[LayerInfo]:
    """The layers that run, in the order they run (one probe pass); the one whose output
    is the network's output gets the kind ``"output"``."""
    if not layers:
        return []
    x, mask = probe_input(spec, length)
    by_name = {i.name: i for i in layers}
    ran, out = run_hooked(net, [(i.name, i.module) for i in layers], x, mask)
    logits = first_tensor(out)
    result = []
    for name, t in ran:
        info = by_name[name]
        if (
            logits is not None
            and info.kind == "linear"
            and t.shape == logits.shape
            and t.data_ptr() == logits.data_ptr()
        ):
            info = LayerInfo(info.name, info.module, info.group, "output", info.description)
        result.append(info)
    return result


# ----------------------------------------------------------------------------- saving
def _architecture_files(arch: dict[str, Any]) -> list[str]:
    """The files of the folder an architecture reads (the .py, .pt2 or TorchScript file)."""
    kind = architecture_kind(arch)
    if kind == "python":
        target = str(arch["python"]).rsplit(":", 1)[0]
        return [target] if _is_file_ref(target) else []
    return [str(arch[kind])]


def save_files(model: LoadedModel, folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """For :func:`registry.save`: copy the architecture's files of a user's network from its
    source folder into ``folder``; returns the network whose state dict is the folder's
    weights and the extra ``model.json`` keys (``weights``, ``layer_names``)."""
    extra: dict[str, Any] = {}
    source = model.source
    for name in _architecture_files(model.architecture):
        if source is not None and (source / name).is_file() and (source / name).resolve() != (folder / name).resolve():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, folder / name)
    if "python" not in model.architecture:
        extra["weights"] = WEIGHTS_FILE  # replaces the program's own weights on load
    if source is not None and (source / META_FILE).is_file():
        with contextlib.suppress(ValueError, OSError):
            names = json.loads((source / META_FILE).read_text()).get("layer_names")
            if names:
                extra["layer_names"] = names
    net = model.net.net if isinstance(model.net, OutputLogits) else model.net
    return net, extra


# ----------------------------------------------------------------------------- the dialog
#: Mel band counts and patch lengths (frames) :func:`guess_meta` tries, most common first.
GUESS_N_MELS: tuple[int, ...] = (128, 96, 64, 80, 40, 48, 256, 32, 16)
GUESS_FRAMES: tuple[int, ...] = (130, 187, 128, 96, 256, 100, 64, 32, 16)
GUESS_SAMPLES: tuple[int, ...] = (16000, 22050, 1024, 32000, 44100, 48000, 8000, 4096)
_WEIGHT_SUFFIXES = (".safetensors", *TORCH_WEIGHTS_SUFFIXES)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding compiled ``code/``)."""
    if path.suffix.lower() in TORCHSCRIPT_SUFFIXES:
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist()) and any(n.endswith("constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _weights_beside(folder: Path) -> Path | None:
    """``weights.safetensors``, or the one weights file of ``folder``; None for none or several."""
    if (folder / WEIGHTS_FILE).is_file():
        return folder / WEIGHTS_FILE
    found = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in _WEIGHT_SUFFIXES and not is_torchscript(p)
    ]
    return found[0] if len(found) == 1 else None


def _module_classes(module: Any) -> list[type[nn.Module]]:
    return [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__
    ]


def _pick_python(folder: Path, py: Path) -> tuple[str, nn.Module | None, list[str]]:
    """The class of a .py file that is the network: ``(name, instance or None, notes)``.
    Among the nn.Module classes defined in the file and callable without arguments, the one
    with the most parameters (the whole network holds its blocks)."""
    module = import_python(folder, py.name, py)
    classes = _module_classes(module)
    if not classes:
        raise MusicLensError(f"{py} defines no nn.Module class")
    built: list[tuple[int, str, nn.Module]] = []
    for cls in classes:
        with contextlib.suppress(Exception):
            net = cls()
            built.append((sum(p.numel() for p in net.parameters()), cls.__name__, net))
    if not built:
        names = ", ".join(c.__name__ for c in classes)
        return classes[-1].__name__, None, [f"{names}: none can be made without arguments; give 'params'"]
    built.sort(key=lambda b: -b[0])
    notes = [f"chose {built[0][1]} (the largest of {', '.join(b[1] for b in built)})"] if len(built) > 1 else []
    return built[0][1], built[0][2], notes


def _guess_input(net: nn.Module, exported_shape: tuple[int | None, ...] | None) -> tuple[dict[str, Any], list[str]]:
    """The input part of a draft ``model.json`` and the fields still unknown: from the
    exported program's input shape, else by trying plausible shapes on the network."""
    if exported_shape is not None:
        dims = exported_shape
        if len(dims) == 4 and dims[1] == 1 and dims[2] is not None:
            frames = dims[3]
            return {
                "front_end": logmel_frontend(n_mels=int(dims[2])).to_dict(),
                "patch_frames": int(frames) if frames is not None else GUESS_FRAMES[0],
            }, ["sample_rate"] + ([] if frames is not None else ["patch_frames"])
        if len(dims) == 3 and dims[1] == 1 and dims[2] is not None:
            return {"input": "waveform", "waveform": {"sample_rate": 16000, "patch_samples": int(dims[2])}}, [
                "sample_rate"
            ]
        return {}, ["front_end", "patch_frames"]
    first = next(
        (
            m
            for _, m in net.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
        ),
        None,
    )
    w = None if first is None else first.weight
    if isinstance(w, torch.Tensor) and w.dim() == 4 and w.shape[1] * int(getattr(first, "groups", 1) or 1) == 1:
        for n_mels in GUESS_N_MELS:
            for frames in GUESS_FRAMES:
                with contextlib.suppress(Exception):
                    _run(net, torch.zeros(PROBE_BATCH, 1, n_mels, frames), None)
                    return {"front_end": logmel_frontend(n_mels=n_mels).to_dict(), "patch_frames": frames}, [
                        "sample_rate"
                    ]
    if isinstance(w, torch.Tensor) and w.dim() == 3 and w.shape[1] * int(getattr(first, "groups", 1) or 1) == 1:
        for samples in GUESS_SAMPLES:
            with contextlib.suppress(Exception):
                _run(net, torch.zeros(PROBE_BATCH, 1, samples), None)
                return {"input": "waveform", "waveform": {"sample_rate": 16000, "patch_samples": samples}}, [
                    "sample_rate"
                ]
    return {}, ["front_end", "patch_frames"]


def guess_meta(path: Path, *, trust_code: bool) -> dict[str, Any]:
    """A draft ``model.json`` for ``path``: a ``.py`` (weights beside it, or given later to
    :func:`write_model_folder`), a ``.pt2``, a TorchScript file, or a folder holding one.

    Guessed: the architecture entry; ``labels`` ``["class 0", ...]`` counted from the output
    of a probe forward pass; the input: a log-mel front end with the first layer's band count
    (a Conv2d taking 1 channel; the exported program's input shape when there is one) or a
    raw waveform (a Conv1d taking 1 channel); ``weights`` when a weights file lies beside a
    ``.py``. ``"_unknown"`` lists the fields the user must still give (e.g. ``["labels",
    "sample_rate", "multilabel"]``; also ``"front_end"``, ``"patch_frames"``, ``"params"``,
    ``"weights"`` when they could not be guessed); ``"_notes"`` says what was assumed;
    ``"_source"`` is the folder the files come from. Keys starting with ``_`` are not written.
    A folder that already has a ``model.json`` gives it back with ``"_unknown": []``.
    A ``.py`` runs the user's code: refused unless ``trust_code``.
    """
    path = Path(path)
    if path.is_dir() and (path / META_FILE).is_file():
        return read_meta(path) | {"_unknown": [], "_notes": [], "_source": str(path)}
    if path.is_dir():
        candidates = [
            p
            for p in sorted(path.iterdir())
            if p.is_file() and (p.suffix.lower() in (".pt2", ".py", *TORCHSCRIPT_SUFFIXES) or is_torchscript(p))
        ]
        order = {".pt2": 0}
        candidates.sort(key=lambda p: order.get(p.suffix.lower(), 2 if p.suffix.lower() == ".py" else 1))
        if not candidates:
            raise MusicLensError(f"{path} has no {META_FILE}, .pt2, TorchScript or .py file to open")
        path = candidates[0]
    if not path.is_file():
        raise MusicLensError(f"{path} does not exist")
    folder = path.parent
    unknown: list[str] = []
    notes: list[str] = []
    draft: dict[str, Any] = {"format": FORMAT, "name": path.stem if path.stem not in ("net", "model") else folder.name}
    exported_shape: tuple[int | None, ...] | None = None
    suffix = path.suffix.lower()
    if suffix == ".py":
        if not trust_code:
            raise MusicLensError(
                f"{path.name} is Python code: guessing its model.json runs it; allow it with trust_code=True "
                "if you trust the file"
            )
        name, net, more = _pick_python(folder, path)
        notes += more
        draft["architecture"] = {"python": f"{path.name}:{name}", "params": {}}
        weights = _weights_beside(folder)
        if weights is None:
            unknown.append("weights")
            notes.append(f"no weights file beside {path.name}: give one (or 'weights': null for random weights)")
        else:
            if weights.name != WEIGHTS_FILE:
                draft["weights"] = weights.name
            if net is not None:
                try:
                    fit_weights(net, read_weights(weights), weights)
                except MusicLensError as exc:
                    unknown.append("params")
                    notes.append(str(exc))
        if net is None:
            unknown.append("params")
    elif suffix == ".pt2":
        net, _, exported_shape = load_exported(path)
        draft["architecture"] = {"exported": path.name}
    elif is_torchscript(path):
        net = load_torchscript(path)
        draft["architecture"] = {"torchscript": path.name}
    elif suffix in _WEIGHT_SUFFIXES:
        raise MusicLensError(
            f"{path.name} holds weights only; a weights file never runs code: give the .py that defines the network "
            "(with its weights beside it), a .pt2 or a TorchScript file"
        )
    else:
        raise MusicLensError(f"{path.name}: expected a .py, a .pt2, a TorchScript file or a folder")
    n_out = None
    if net is not None:
        net.eval()
        input_part, missing = _guess_input(net, exported_shape)
        draft.update(input_part)
        unknown += missing
        if input_part:
            spec_meta = {"input": draft.get("input", "audio")} | input_part
            from musiclens.core.models.inputs import spec_from_meta

            spec = spec_from_meta(spec_meta)
            x, mask = probe_input(
                spec, _length({"patch_frames": draft.get("patch_frames", 1)}, spec), batch=PROBE_BATCH
            )
            with contextlib.suppress(Exception):
                t = first_tensor(_run(net, x, mask))
                if t is not None and t.dim() == 2:
                    n_out = int(t.shape[1])
    if n_out is None:
        notes.append("the output size could not be measured: give the labels")
    draft["labels"] = [f"class {i}" for i in range(n_out or 0)]
    draft["multilabel"] = False
    unknown = ["labels"] + [u for u in unknown if u != "labels"]
    if "sample_rate" not in unknown and "front_end" not in unknown:
        unknown.append("sample_rate")
    unknown.append("multilabel")
    draft["_unknown"] = list(dict.fromkeys(unknown))
    draft["_notes"] = notes
    draft["_source"] = str(folder)
    return draft


def write_model_folder(meta: dict[str, Any], folder: Path, *, weights: Path | None, trust_code: bool = True) -> Path:
    """Write ``meta`` (keys starting with ``_`` left out) as ``folder/model.json``, copy the
    architecture's file from ``meta["_source"]`` and ``weights`` into ``folder`` when they are
    not there yet (``meta["weights"]`` then names the copy), and check the folder by loading
    it. The check runs a python architecture's code (the user chose it in the dialog; pass
    ``trust_code=False`` to refuse). On failure the folder is left as it was. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in meta.items() if not str(k).startswith("_")}
    clean.setdefault("format", FORMAT)
    source = Path(meta["_source"]) if meta.get("_source") else None
    made: list[Path] = []
    meta_path = folder / META_FILE
    before = meta_path.read_bytes() if meta_path.is_file() else None
    try:
        if isinstance(clean.get("architecture"), dict) and "family" not in clean["architecture"]:
            for name in _architecture_files(clean["architecture"]):
                if not (folder / name).is_file() and source is not None and (source / name).is_file():
                    shutil.copy2(source / name, folder / name)
                    made.append(folder / name)
        if weights is not None:
            weights = Path(weights)
            if weights.resolve().parent != folder.resolve():
                if (folder / weights.name).exists():
                    raise MusicLensError(f"{folder / weights.name} exists already; not overwriting it")
                shutil.copy2(weights, folder / weights.name)
                made.append(folder / weights.name)
            if weights.name == WEIGHTS_FILE:
                clean.pop("weights", None)
            else:
                clean["weights"] = weights.name
        elif clean.get("weights") and not (folder / clean["weights"]).is_file() and source is not None:
            src = source / str(clean["weights"])
            if src.is_file():
                shutil.copy2(src, folder / src.name)
                made.append(folder / src.name)
        meta_path.write_text(json.dumps(clean, indent=2) + "\n")
        load(folder, device="cpu", trust_code=trust_code)
    except BaseException:
        for p in made:
            p.unlink(missing_ok=True)
        if before is None:
            meta_path.unlink(missing_ok=True)
        else:
            meta_path.write_bytes(before)
        raise
    return folder


def _works_with_gradients(model: LoadedModel) -> str | None:
    """None if a gradient reaches the input through the network, else why not."""
    x, mask = probe_input(model.input, model.patch_frames)
    x = x.to(model.device).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model.logits(x, None if mask is None else mask.to(model.device))
            grad = torch.autograd.grad(out[:, 0].sum(), x, allow_unused=True)[0]
    except Exception as exc:  # noqa: BLE001 - the network's own error is the reason
        return f"the network cannot be differentiated ({_first_line(exc)})"
    return None if grad is not None else "no gradient reaches the input"


def describe(model: LoadedModel) -> list[str]:
    """What works with ``model`` and what does not, one line per panel or feature (with the
    reason), for the window and the CLI (``musiclens layers``)."""
    arch = model.architecture
    how = (
        f"family {arch['family']}"
        if "family" in arch
        else ", ".join(f"{k} {arch[k]}" for k in ARCHITECTURES if k in arch) or "unknown architecture"
    )
    x, _ = probe_input(model.input, model.patch_frames)
    lines = [
        f"{model.name}: {model.kind} model ({how}), {len(model.labels)} labels, "
        f"input {input_axes(model.input)} = {tuple(x.shape)}"
    ]
    lines.append("predict: works (" + ("sigmoid tags" if model.multilabel else "softmax classes") + ")")
    grad_problem = _works_with_gradients(model)
    for feature in ("input attributions (saliency)", "dream"):
        lines.append(f"{feature}: " + ("works" if grad_problem is None else f"does not work: {grad_problem}"))
    if not model.hooks_supported:
        reason = model.limits.get("layers", "its layers cannot be hooked")
        for feature in ("layers", "CAM", "filter listening (auralise)", "layer similarity", "kernels"):
            lines.append(f"{feature}: not available: {reason}")
        return lines + _other_limits(model)
    kinds: dict[str, int] = {}
    for info in model.layers.values():
        kinds[info.kind] = kinds.get(info.kind, 0) + 1
    if not model.layers:
        lines.append("layers: none found (no conv, linear, norm, recurrent, attention or pool modules)")
    else:
        counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
        lines.append(f"layers: {len(model.layers)} found ({counts})")
    cam = model.limits.get("cam")
    if cam is None:
        layer = default_cam_layer(model)
        what = "time-frequency" if model.kind == "audio" else "time"
        cam = (
            f"works (default layer {layer!r}, the last with a {what} output; another can be chosen)"
            if layer
            else f"not available: no layer has a {what} output (give a layer by hand)"
        )
    lines.append(f"CAM: {cam}")
    conv = [n for n, i in model.layers.items() if i.kind == "conv"]
    aur = model.limits.get("auralise") or (
        f"works ({len(conv)} conv layers)" if conv else "not available: the network has no conv layer"
    )
    lines.append(f"filter listening (auralise): {aur}")
    lines.append("layer similarity: " + (model.limits.get("similarity") or "works"))
    kernels = model.limits.get("kernels")
    lines.append("kernels: " + (f"not available: {kernels}" if kernels else "works"))
    return lines + _other_limits(model)


def _other_limits(model: LoadedModel) -> list[str]:
    """``"key: why"`` for the limits the feature lines above do not cover (e.g. ``length``)."""
    return [f"{key}: {why}" for key, why in model.limits.items() if key not in HOOK_FEATURES]
