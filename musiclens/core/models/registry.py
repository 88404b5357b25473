"""Every model, bundled or trained, is a folder: ``weights.safetensors`` + ``model.json``.

``model.json`` holds::

    {"format": "musiclens-model/1",
     "name": "MSD_musicnn",
     "architecture": {"family": "musicnn", "params": {...}},   # builder keyword arguments
     "front_end": {...},                                      # FrontEnd.to_dict()
     "labels": [...], "multilabel": true, "patch_frames": 187,
     "provenance": {...}}                                     # free-form: source, licence, metrics

A *family* is a Python module that registers a builder with :func:`register_family`:
``builder(**params) -> (net, layers)`` where ``net`` maps a front-end output
``(B, C, F, T)`` to logits ``(B, n_labels)`` and ``layers`` lists the inspectable layers.
Weights are only ever read with safetensors (never unpickled).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from musiclens.core.errors import MusicLensError
from musiclens.core.features import FrontEnd
from musiclens.core import resources as _resources
from musiclens.core.resources import available, bundled_models_dir, resources_dir  # noqa: F401

FORMAT = "musiclens-model/1"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = _resources.META_FILE

# Modules that define families; imported lazily the first time a family is needed.
FAMILY_MODULES: tuple[str, ...] = (
    "musiclens.core.models.musicnn",
    "musiclens.core.models.vanilla_cnn",
    "musiclens.core.models.gap_cnn",
    "musiclens.core.models.choi_cnn",
    "musiclens.core.models.stft_cnn",
    "musiclens.core.models.midi_lstm",
    "musiclens.core.models.musicnn_probe",
)

_FAMILIES: dict[str, Callable[..., tuple[nn.Module, list["LayerInfo"]]]] = {}


@dataclass(frozen=True)
class LayerInfo:
    """An inspectable layer.

    name: readable name shown to users (e.g. ``"mid end / conv 2"``).
    module: dotted path of the ``nn.Module`` inside ``net`` (for hooks).
    group: ``"front end"``, ``"mid end"``, ``"back end"``, ... (for the layer tree).
    kind: ``"conv"``, ``"batchnorm"``, ``"dense"``, ``"pool"``, ``"block"``, ``"output"``.
    """

    name: str
    module: str
    group: str
    kind: str
    description: str = ""


@dataclass
class LoadedModel:
    """A network ready to run, with everything needed to feed it and read it."""

    name: str
    net: nn.Module
    front_end: FrontEnd
    labels: list[str]
    patch_frames: int
    multilabel: bool
    layers: dict[str, LayerInfo]
    architecture: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def module(self, layer: str) -> nn.Module:
        """The ``nn.Module`` for a readable layer name (or a dotted module path)."""
        path = self.layers[layer].module if layer in self.layers else layer
        try:
            return self.net.get_submodule(path)
        except AttributeError:
            raise MusicLensError(
                f"model {self.name!r} has no layer {layer!r}; layers are: "
                + ", ".join(self.layers)
            ) from None

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid for multi-label models, softmax over labels otherwise. (B, L) -> (B, L)."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, F, T) front-end output -> probabilities (B, n_labels)."""
        return self.probabilities(self.net(x))


def register_family(name: str):
    """Decorator: ``@register_family("musicnn") def build(**params) -> (net, layers)``."""

    def decorate(builder):
        _FAMILIES[name] = builder
        return builder

    return decorate


def _family(name: str):
    if name not in _FAMILIES:
        import importlib

        for module in FAMILY_MODULES:
            importlib.import_module(module)
    if name not in _FAMILIES:
        raise MusicLensError(
            f"unknown model family {name!r}; known families: {', '.join(sorted(_FAMILIES))}"
        )
    return _FAMILIES[name]


def build(architecture: dict[str, Any]) -> tuple[nn.Module, list[LayerInfo]]:
    """Instantiate an untrained network from an ``architecture`` dict."""
    builder = _family(architecture["family"])
    return builder(**architecture.get("params", {}))


INPUT_KEYS = {"audio": ("front_end", "patch_frames", "multilabel"), "midi": ("note_features",)}


def read_meta(folder: Path) -> dict[str, Any]:
    """Read and check ``folder/model.json``: the format, the architecture and labels, and
    what the model's input kind (``"input"``: ``"audio"`` by default, or ``"midi"``) needs."""
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise MusicLensError(f"{folder} is not a model folder: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MusicLensError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise MusicLensError(f"{meta_path}: format is {found!r}, expected {FORMAT!r}")
    kind = meta.get("input", "audio")
    if kind not in INPUT_KEYS:
        raise MusicLensError(f"{meta_path}: input {kind!r} is unknown; allowed: {', '.join(INPUT_KEYS)}")
    for key in ("architecture", "labels") + INPUT_KEYS[kind]:
        if key not in meta:
            raise MusicLensError(f"{meta_path}: the key {key!r} is missing")
    return meta


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``net``, with one clear error if it doesn't fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise MusicLensError(f"weights file not found: {path}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise MusicLensError(f"{path} is not a readable safetensors file: {exc}") from None
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown tensors (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {'; '.join(wrong[:3])})")
        raise MusicLensError(f"the weights in {path} don't fit the model: " + ", ".join(parts))
    net.load_state_dict(state, strict=True)


def load(name_or_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a bundled model by name, or a model folder (safetensors + JSON), in eval mode."""
    folder = Path(name_or_dir)
    if not folder.is_dir():
        candidate = bundled_models_dir() / str(name_or_dir)
        if not candidate.is_dir():
            raise MusicLensError(
                f"no model named {str(name_or_dir)!r}; bundled models: "
                f"{', '.join(available()) or 'none'}; or give a folder with "
                f"{WEIGHTS_FILE} and {META_FILE}"
            )
        folder = candidate
    meta = read_meta(folder)
    if meta.get("input", "audio") != "audio":
        raise MusicLensError(f"{folder / META_FILE} is a {meta['input']} model: open a "
                             f"{meta['input'].upper()} file with it (musiclens midi-classify …)")
    net, layers = build(meta["architecture"])
    load_weights(net, folder / WEIGHTS_FILE)
    net.eval().to(device)
    return LoadedModel(
        name=meta.get("name", folder.name),
        net=net,
        front_end=FrontEnd.from_dict(meta["front_end"]),
        labels=list(meta["labels"]),
        patch_frames=int(meta["patch_frames"]),
        multilabel=bool(meta["multilabel"]),
        layers={layer.name: layer for layer in layers},
        architecture=meta["architecture"],
        provenance=meta.get("provenance", {}),
        source=folder,
    )


def save(model: LoadedModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` as ``folder/weights.safetensors`` + ``folder/model.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    meta = {
        "format": FORMAT,
        "name": model.name,
        "architecture": model.architecture,
        "front_end": model.front_end.to_dict(),
        "labels": model.labels,
        "multilabel": model.multilabel,
        "patch_frames": model.patch_frames,
        "provenance": model.provenance,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
