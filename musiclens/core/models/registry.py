"""Every model, bundled or trained, audio or MIDI, is a folder: ``weights.safetensors`` + ``model.json``.

``model.json`` holds::

    {"format": "musiclens-model/1",
     "name": "MSD_musicnn",
     "input": "audio",                                        # or "midi", "waveform"; default "audio"
     "architecture": {"family": "musicnn", "params": {...}},   # builder keyword arguments
     "front_end": {...},                                      # audio: FrontEnd.to_dict()
     "note_features": {...},                                  # midi: NoteSpec.to_dict()
     "waveform": {"sample_rate": ..., "patch_samples": ...},   # waveform: Waveform.to_dict()
     "labels": [...], "multilabel": true, "patch_frames": 187,
     "provenance": {...}}                                     # free-form: source, licence, metrics

:func:`load` reads every kind into one :class:`LoadedModel` (``model.kind`` says which);
its ``input`` is the spec (see :mod:`musiclens.core.models.inputs`).

A *family* is a Python module that registers a builder with :func:`register_family`:
``builder(**params) -> (net, layers)`` where ``net`` maps the input spec's output
(audio: a front-end output ``(B, C, F, T)``; MIDI: ``(B, N, 3)`` note features and a mask)
to logits ``(B, n_labels)`` and ``layers`` lists the inspectable layers. Builders of MIDI
families also receive ``note_features=`` (the spec's dict: the normalisation is part of the
network). Weights are only ever read with safetensors (never unpickled).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core import resources as _resources
from musiclens.core.device import resolve_device
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.models.inputs import (  # noqa: F401  (re-exported)
    SPEC_KEYS,
    InputSpec,
    NoteSpec,
    Waveform,
    input_kind,
    spec_from_meta,
    spec_to_meta,
)
from musiclens.core.resources import available as available  # re-exported
from musiclens.core.resources import bundled_models_dir as bundled_models_dir
from musiclens.core.resources import resources_dir as resources_dir

if TYPE_CHECKING:
    from musiclens.core.midi import Notes

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
    "musiclens.core.models.midi_piece",
    "musiclens.core.models.musicnn_probe",
)

_FAMILIES: dict[str, Callable[..., tuple[nn.Module, list[LayerInfo]]]] = {}


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


@dataclass(init=False, eq=False, repr=False)
class LoadedModel:
    """A network ready to run, with everything needed to feed it and read it, for every input
    kind (one class: audio spectrogram models, MIDI note models, raw-waveform models).

    name : the model's name. net : the ``nn.Module`` (logits ``(B, n_labels)``).
    input : the input spec: a :class:`~musiclens.core.features.FrontEnd` (``kind == "audio"``),
        a :class:`~musiclens.core.models.inputs.NoteSpec` (``"midi"``) or a
        :class:`~musiclens.core.models.inputs.Waveform` (``"waveform"``).
    labels : class or tag names. multilabel : sigmoid outputs (tags) instead of softmax.
    patch_frames : the network's input length in the spec's units: frames (audio), notes
        (MIDI: the spec's ``n_notes``), samples (waveform). None = the spec's own length.
    layers : the inspectable layers by readable name. architecture : ``{"family", "params"}``.
    provenance : free-form (source, licence, metrics, training data). source : the folder.

    ``front_end`` and ``spec`` are kept for the many call sites that use them: they return
    ``input`` and raise a clear :class:`MusicLensError` for a model of another kind.
    The constructor also accepts ``front_end=`` or ``spec=`` instead of ``input=``;
    ``dataclasses.replace(model, net=...)`` works.
    """

    name: str
    net: nn.Module
    input: InputSpec
    labels: list[str]
    patch_frames: int
    multilabel: bool
    layers: dict[str, LayerInfo]
    architecture: dict[str, Any]
    provenance: dict[str, Any]
    source: Path | None

    def __init__(
        self,
        name: str,
        net: nn.Module,
        input: InputSpec | None = None,
        labels: Sequence[str] | None = None,
        patch_frames: int | None = None,
        multilabel: bool = False,
        layers: dict[str, LayerInfo] | None = None,
        architecture: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        source: Path | None = None,
        *,
        front_end: FrontEnd | None = None,
        spec: NoteSpec | None = None,
    ) -> None:
        given = [v for v in (input, front_end, spec) if v is not None]
        if len(given) != 1:
            raise ParameterError("give a model exactly one input spec (input=, front_end= or spec=)")
        self.name = name
        self.net = net
        self.input: InputSpec = given[0]
        input_kind(self.input)  # checks the type
        self.labels = list(labels or [])
        if patch_frames is None:
            if isinstance(self.input, FrontEnd):
                raise ParameterError("an audio model needs patch_frames (its input length in frames)")
            patch_frames = self.input.n_notes if isinstance(self.input, NoteSpec) else self.input.patch_samples
        self.patch_frames = int(patch_frames)
        self.multilabel = bool(multilabel)
        self.layers = dict(layers or {})
        self.architecture = dict(architecture or {})
        self.provenance = dict(provenance or {})
        self.source = source

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, kind={self.kind!r}, labels={len(self.labels)}, "
            f"patch_frames={self.patch_frames}, device={str(self.device)!r})"
        )

    # ------------------------------------------------------------------ the input spec
    @property
    def kind(self) -> str:
        """``"audio"`` (a FrontEnd), ``"midi"`` (a NoteSpec) or ``"waveform"`` (a Waveform)."""
        return input_kind(self.input)

    @property
    def front_end(self) -> FrontEnd:
        """The audio front end; a clear error for a MIDI or waveform model."""
        if not isinstance(self.input, FrontEnd):
            raise MusicLensError(
                f"model {self.name!r} is a {self.kind} model: it has no audio front end ({_KIND_HINT[self.kind]})"
            )
        return self.input

    @front_end.setter
    def front_end(self, value: FrontEnd) -> None:
        input_kind(value)
        self.input = value

    @property
    def spec(self) -> NoteSpec:
        """The MIDI note-feature spec; a clear error for an audio or waveform model."""
        if not isinstance(self.input, NoteSpec):
            raise MusicLensError(
                f"model {self.name!r} is a {self.kind} model, not a MIDI model: {_KIND_HINT[self.kind]}"
            )
        return self.input

    @spec.setter
    def spec(self, value: NoteSpec) -> None:
        input_kind(value)
        self.input = value

    @property
    def sample_rate(self) -> int:
        """The audio rate the model listens at (audio and waveform models)."""
        if isinstance(self.input, NoteSpec):  # kind == "midi"
            raise MusicLensError(f"model {self.name!r} reads MIDI notes; it has no sample rate")
        return int(self.input.sample_rate)

    # ------------------------------------------------------------------ the patch length
    @property
    def patch_samples(self) -> int:
        """Samples of audio in one patch: exactly ``patch_frames`` frames of the input spec."""
        if isinstance(self.input, NoteSpec):  # kind == "midi"
            raise MusicLensError(
                f"model {self.name!r} reads a window of {self.patch_frames} MIDI notes, not a length of audio"
            )
        return self.input.frames_to_samples(self.patch_frames)

    @property
    def patch_seconds(self) -> float:
        """A patch's nominal length in seconds (``patch_frames`` frame steps; consecutive
        patches start this far apart)."""
        if isinstance(self.input, NoteSpec):  # kind == "midi"
            raise MusicLensError(
                f"model {self.name!r} reads a window of {self.patch_frames} MIDI notes, not a length of audio"
            )
        return float(self.input.frames_to_seconds(self.patch_frames))

    # ------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        """Where the network's weights are (cpu for a network without any)."""
        for t in self.net.parameters():
            return t.device
        for b in self.net.buffers():
            return b.device
        return torch.device("cpu")

    def to(self, device: str | torch.device = "auto") -> LoadedModel:
        """Move the network to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; see
        :func:`musiclens.core.device.resolve_device`); returns the model itself."""
        self.net.to(resolve_device(device))
        return self

    def tensor(self, array: npt.ArrayLike | torch.Tensor, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """A numpy array or tensor as a tensor on the model's device."""
        if isinstance(array, torch.Tensor):
            return array.to(device=self.device, dtype=dtype or array.dtype)
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ layers and labels
    def module(self, layer: str) -> nn.Module:
        """The ``nn.Module`` for a readable layer name (or a dotted module path)."""
        path = self.layers[layer].module if layer in self.layers else layer
        try:
            return self.net.get_submodule(path)
        except AttributeError:
            raise MusicLensError(
                f"model {self.name!r} has no layer {layer!r}; layers are: " + ", ".join(self.layers)
            ) from None

    def label_index(self, label: str | int) -> int:
        """Index of a class given by name (case-insensitive) or index (also as a digit string)."""
        if isinstance(label, (int, np.integer)) or (isinstance(label, str) and label.isdigit()):
            i = int(label)
            if 0 <= i < len(self.labels):
                return i
        else:
            lowered = [x.lower() for x in self.labels]
            if str(label).lower() in lowered:
                return lowered.index(str(label).lower())
        raise ParameterError(f"unknown class {label!r}; this model's classes are: {', '.join(self.labels)}")

    # ------------------------------------------------------------------ running
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid for multi-label models, softmax over labels otherwise. (B, L) -> (B, L)."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    def logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output for an input batch (with gradients if enabled); ``mask`` is
        the MIDI note mask (B, N) and is only passed on when given."""
        out: torch.Tensor = self.net(x) if mask is None else self.net(x, mask)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Input batch -> probabilities (B, n_labels). Audio: x (B, C, F, T) front-end output;
        MIDI: x (B, N, 3) raw note features and mask (B, N) bool or None; waveform: (B, 1, S)."""
        return self.probabilities(self.logits(x, mask))

    # ------------------------------------------------------------------ MIDI input
    def tensors(self, features: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """MIDI: numpy features ``(N, 3)``/``(B, N, 3)`` + mask -> batched tensors on the model's device."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device)
        m = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device)
        if x.ndim == 2:
            x, m = x[None], m[None]
        return x, m

    def classify_notes(self, notes: Notes) -> dict[str, Any]:
        """MIDI: classify a :class:`~musiclens.core.midi.Notes` piece (already read with the spec).

        ``n_notes_read``: the notes the model reads (the first ``spec.n_notes``) of
        ``n_notes_total`` (the piece's notes on the tracks the spec reads).
        :meth:`classify_file` adds ``n_notes_not_read_tracks`` (notes on the tracks the spec
        leaves out, e.g. drums; kept in the file) and ``n_drum_notes_not_read``.
        """
        feats, mask = self.spec.window(notes)
        x, m = self.tensors(feats, mask)
        p = self.predict(x, m)[0].cpu().numpy()
        k = int(p.argmax())
        return {
            "labels": list(self.labels),
            "probabilities": {lab: float(v) for lab, v in zip(self.labels, p)},
            "predicted": self.labels[k],
            "confidence": float(p[k]),
            "notes_used": int(mask.sum()),
            "padded": bool(mask.sum() < len(mask)),
            "n_notes_read": int(mask.sum()),
            "n_notes_total": len(notes),
        }

    def classify_file(self, path: str | os.PathLike[str] | bytes) -> dict[str, Any]:
        """MIDI: read a file with the model's spec and classify it."""
        from musiclens.core.midi import other_notes

        notes = self.spec.read(path)
        out = self.classify_notes(notes)
        others = other_notes(notes)  # on tracks the spec leaves out (drums, other programs)
        out["n_notes_not_read_tracks"] = len(others)
        out["n_drum_notes_not_read"] = int(others.is_drum.sum())
        out["repairs"] = list(notes.repairs)
        return out


_KIND_HINT = {
    "audio": "it reads audio through its front end",
    "midi": "it reads MIDI note features (model.spec); open a MIDI file with it",
    "waveform": "it reads raw audio (model.input is a Waveform)",
}


#: A family's builder: ``build(**params) -> (net, layers)``.
Builder = Callable[..., tuple[nn.Module, list["LayerInfo"]]]


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Decorator: ``@register_family("musicnn") def build(**params) -> (net, layers)``."""

    def decorate(builder: Builder) -> Builder:
        _FAMILIES[name] = builder
        return builder

    return decorate


def _family(name: str) -> Builder:
    if name not in _FAMILIES:
        import importlib

        for module in FAMILY_MODULES:
            importlib.import_module(module)
    if name not in _FAMILIES:
        raise MusicLensError(f"unknown model family {name!r}; known families: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def build(architecture: dict[str, Any]) -> tuple[nn.Module, list[LayerInfo]]:
    """Instantiate an untrained network from an ``architecture`` dict."""
    builder = _family(architecture["family"])
    return builder(**architecture.get("params", {}))


#: The keys each input kind needs in ``model.json`` besides "architecture" and "labels".
INPUT_KEYS = {
    "audio": ("front_end", "patch_frames", "multilabel"),
    "midi": ("note_features",),
    "waveform": ("waveform",),
}


def read_meta(folder: Path) -> dict[str, Any]:
    """Read and check ``folder/model.json``: the format, the architecture and labels, and
    what the model's input kind (``"input"``: ``"audio"`` by default, ``"midi"`` or
    ``"waveform"``) needs."""
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


def model_folder(name_or_dir: str | os.PathLike[str]) -> Path:
    """A model folder, or the bundled model of that name; a clear error for neither."""
    folder = Path(name_or_dir)
    if folder.is_dir():
        return folder
    candidate = bundled_models_dir() / str(name_or_dir)
    if candidate.is_dir():
        return candidate
    raise MusicLensError(
        f"no model named {str(name_or_dir)!r}; bundled models: "
        f"{', '.join(available()) or 'none'}; or give a folder with "
        f"{WEIGHTS_FILE} and {META_FILE}"
    )


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


def load(
    name_or_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu", kind: str | None = None
) -> LoadedModel:
    """Load a bundled model by name, or a model folder (safetensors + JSON), in eval mode,
    on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; see :func:`~musiclens.core.device.resolve_device`).

    Every input kind loads into a :class:`LoadedModel`; ``kind`` (``"audio"``, ``"midi"``,
    ``"waveform"``) makes a model of another kind an error.
    """
    dev = resolve_device(device)
    folder = model_folder(name_or_dir)
    meta = read_meta(folder)
    meta_path = folder / META_FILE
    found = meta.get("input", "audio")
    if kind is not None and found != kind:
        raise MusicLensError(f"{meta_path} is a {found} model, not a{'n' if kind == 'audio' else ''} {kind} model")
    try:
        spec = spec_from_meta(meta)
    except ParameterError as exc:
        raise MusicLensError(f"{meta_path}: {exc}") from None
    architecture = meta["architecture"]
    params = dict(architecture.get("params", {}))
    if found == "midi":
        params["note_features"] = spec.to_dict()  # the normalisation is part of the network
    n_labels = params.get("n_labels")
    if n_labels is not None and int(n_labels) != len(meta["labels"]):
        raise MusicLensError(f"{meta_path}: {len(meta['labels'])} labels but the network has {n_labels} outputs")
    net, layers = _family(architecture["family"])(**params)
    load_weights(net, folder / WEIGHTS_FILE)
    net.eval().to(dev)
    return LoadedModel(
        name=meta.get("name", folder.name),
        net=net,
        input=spec,
        labels=list(meta["labels"]),
        patch_frames=int(meta["patch_frames"]) if found == "audio" else None,
        multilabel=bool(meta.get("multilabel", False)),
        layers={layer.name: layer for layer in layers},
        architecture=architecture,
        provenance=meta.get("provenance", {}),
        source=folder,
    )


def save(model: LoadedModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` (any input kind) as ``folder/weights.safetensors`` + ``folder/model.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    meta: dict[str, Any] = {"format": FORMAT, "name": model.name}
    if model.kind != "audio":
        meta["input"] = model.kind
    meta["architecture"] = model.architecture
    meta.update({k: v for k, v in spec_to_meta(model.input).items() if k != "input"})
    meta.update(
        {
            "labels": list(model.labels),
            "multilabel": model.multilabel,
            "patch_frames": model.patch_frames,
            "provenance": model.provenance,
        }
    )
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
