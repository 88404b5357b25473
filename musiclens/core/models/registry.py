"""Every model, bundled or trained, audio or MIDI, is a folder: ``weights.safetensors`` + ``model.json``.

``model.json`` holds::

    {"format": "musiclens-model/1",
     "name": "MSD_musicnn",
     "input": "audio",                                        # or "midi", "waveform"; default "audio"
     "architecture": {"family": "musicnn", "params": {...}},   # builder keyword arguments
                                                              # or the user's own network:
                                                              # {"python": "net.py:Net", "params": {...}},
                                                              # {"exported": "model.pt2"},
                                                              # {"torchscript": "model.ts"}
     "weights": "weights.safetensors",                        # optional (.safetensors, .pt/.pth state dict)
     "layer_names": {"module.path": "readable name"},         # optional (the user's own networks)
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
network). Weights are read with safetensors, or as a ``.pt``/``.pth`` state dict with
``torch.load(weights_only=True)``: never a full pickle.

The user's own networks (``"python"``, ``"exported"``, ``"torchscript"`` architectures) are
built by :mod:`musiclens.core.models.user_models`; a ``"python"`` architecture runs the
user's code, so :func:`load` refuses it unless ``trust_code=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core import resources as _resources
from musiclens.core.device import resolve_device
from musiclens.core.errors import MusicLensError, ParameterError, regular_file
from musiclens.core.features import FrontEnd
from musiclens.core.models import schema
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
    hooks_supported : False when layer hooks cannot work (a TorchScript network runs compiled
        code: its submodules' forward hooks never fire); then ``layers`` is empty and
        :meth:`module` raises the reason.
    limits : what does not work with this model and why, one line per feature
        (``{"layers": "...", "cam": "...", ...}``); empty when everything works. The window
        and the CLI print these lines as they are.

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
    hooks_supported: bool
    limits: dict[str, str]

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
        hooks_supported: bool = True,
        limits: dict[str, str] | None = None,
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
        self.hooks_supported = bool(hooks_supported)
        self.limits = dict(limits or {})

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
        """The ``nn.Module`` for a readable layer name (or a dotted module path); the reason
        in :attr:`limits` for a model whose layers cannot be hooked."""
        if not self.hooks_supported:
            raise MusicLensError(f"model {self.name!r}: " + self.limits.get("layers", "its layers cannot be hooked"))
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
        """The network's output for an input batch (with gradients if enabled), run in eval
        mode (the mode the network was in comes back: see :func:`eval_mode`); ``mask`` is
        the MIDI note mask (B, N) and is only passed on when given."""
        with eval_mode(self.net):
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


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode for the block (batch norm reads its running statistics and never
    updates them, no dropout); each submodule's own training flag comes back afterwards.
    Analyses never change a model, whatever mode it was left in."""
    flags = [(mod, mod.training) for mod in net.modules()]
    try:
        net.eval()
        yield net
    finally:
        for mod, flag in flags:
            mod.training = flag


_KIND_HINT = {
    "audio": "it reads audio through its front end",
    "midi": "it reads MIDI note features (model.spec); open a MIDI file with it",
    "waveform": "it reads raw audio (model.input is a Waveform)",
}


#: A family's builder: ``build(**params) -> (net, layers)``.
Builder = Callable[..., tuple[nn.Module, list["LayerInfo"]]]


#: Where a family's ``params`` are declared when its builder takes ``**params``: the class of
#: the builder's module whose keyword arguments they are (:func:`register_family`'s ``params=``
#: says it for new families).
_PARAMS_DECLARED_BY: dict[str, str] = {
    "vanilla-cnn": "VanillaCNN",
    "masked-cnn": "VanillaCNN",
    "gap-cnn": "GapCNN",
    "choi-cnn": "ChoiCNN",
    "stft-cnn": "StftCNN",
}
_PARAMS_OF: dict[str, Callable[..., Any]] = {}
#: Keyword arguments a builder sets itself (never from ``params``).
_BUILDER_SETS: tuple[str, ...] = ("note_features", "masked")


def register_family(name: str, *, params: Callable[..., Any] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: ``@register_family("musicnn") def build(**params) -> (net, layers)``.

    ``params``: the class or function whose signature declares the family's parameters,
    for a builder that takes ``**params`` (``model.json``'s params are checked against it)."""

    def decorate(builder: Builder) -> Builder:
        _FAMILIES[name] = builder
        if params is not None:
            _PARAMS_OF[name] = params
        return builder

    return decorate


def family_params(name: str) -> Callable[..., Any]:
    """The callable whose keyword arguments are family ``name``'s ``params`` (its builder, or
    the class the builder passes ``**params`` to)."""
    import inspect
    import sys

    builder = _family(name)
    if name in _PARAMS_OF:
        return _PARAMS_OF[name]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
    if takes_any and name in _PARAMS_DECLARED_BY:
        declared: Callable[..., Any] = getattr(sys.modules[builder.__module__], _PARAMS_DECLARED_BY[name])
        return declared
    return builder


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


def _build_checked(
    family: str, params: dict[str, Any], where: str | os.PathLike[str], *, meta_device: bool
) -> tuple[nn.Module, list[LayerInfo]]:
    """``builder(**params)``; any error of the builder (a size it refuses, a shape that does
    not work out) as one :class:`MusicLensError`. ``meta_device``: build without allocating
    (tensors on torch's ``meta`` device: shapes only)."""
    shown = {k: v for k, v in params.items() if k not in _BUILDER_SETS}
    try:
        with torch.device("meta") if meta_device else contextlib.nullcontext():
            return _family(family)(**params)
    except MusicLensError as exc:
        raise MusicLensError(f"{where}: architecture {family} with params {shown}: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, ZeroDivisionError, IndexError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise MusicLensError(
            f"{where}: architecture {family} cannot be built with params {schema.show(shown, 200)} ({first})"
        ) from None
    except (MemoryError, RecursionError):
        raise MusicLensError(
            f"{where}: architecture {family} with params {schema.show(shown, 200)} is too large to build"
        ) from None


def check_family(
    architecture: dict[str, Any], spec: InputSpec, labels: list[str], length: int, where: str | os.PathLike[str]
) -> dict[str, Any]:
    """Check a family architecture before anything is allocated; returns the builder's
    keyword arguments. The family must be known, its ``params`` those of its builder (types,
    ranges: :func:`musiclens.core.models.schema.check_fields`); the network, built on torch's
    ``meta`` device (shapes, no memory), must have at most :data:`schema.MAX_PARAMETERS`
    parameters, accept the input spec's shape ``length`` long and give one output per label."""
    family = architecture["family"]
    if not isinstance(family, str) or family not in _known_families():
        raise schema.fail(where, "architecture.family", family, ", ".join(sorted(_FAMILIES)))
    params = dict(architecture.get("params") or {})
    schema.check_fields(params, family_params(family), where, "architecture.params", skip=_BUILDER_SETS, required=True)
    if isinstance(spec, NoteSpec):
        params["note_features"] = spec.to_dict()  # the normalisation is part of the network
    n_labels = params.get("n_labels")
    if n_labels is not None and n_labels != len(labels):
        raise MusicLensError(f"{where}: {len(labels)} labels but architecture.params.n_labels is {n_labels}")
    net, _ = _build_checked(family, params, where, meta_device=True)
    count = sum(t.numel() for t in net.parameters()) + sum(t.numel() for t in net.buffers())
    if count > schema.MAX_PARAMETERS:
        raise MusicLensError(
            f"{where}: architecture {family} with these params has {count:,} parameters; "
            f"allowed: at most {schema.MAX_PARAMETERS:,}"
        )
    from musiclens.core.models.discover import first_tensor, input_axes, probe_input

    if any(isinstance(mod, nn.RNNBase) for mod in net.modules()):
        length = min(length, 4)  # meta kernels run a recurrence step by step (slow); its width is all that counts
    with torch.device("meta"):
        x, mask = probe_input(spec, length, batch=2)
        try:
            with torch.no_grad():
                out = net(x) if mask is None else net(x, mask)
        except NotImplementedError:  # an operation the meta device cannot run: checked at load
            return params
        except Exception as exc:  # noqa: BLE001 - the network's own shape error, with the shapes
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise MusicLensError(
                f"{where}: architecture {family} does not accept the input that model.json describes, "
                f"{input_axes(spec)} = {tuple(x.shape)} ({first})"
            ) from None
    logits = first_tensor(out)
    if logits is not None and (logits.dim() != 2 or logits.shape[1] != len(labels)):
        raise MusicLensError(
            f"{where}: model.json has {len(labels)} labels but the network gives outputs of shape "
            f"{tuple(logits.shape)} for a batch of 2 (needs (2, {len(labels)}))"
        )
    return params


def _known_families() -> dict[str, Builder]:
    """Every registered family (the modules of :data:`FAMILY_MODULES` imported)."""
    import importlib

    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return _FAMILIES


def check_finite(state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Every floating tensor of a state dict finite; else an error naming the first bad one."""
    for name, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise MusicLensError(
                f"the weights in {path} are not finite: tensor {name!r} {tuple(t.shape)} has {bad:,} NaN or "
                "infinite values; allowed: finite numbers (the file is damaged, or training diverged)"
            )


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
    if not os.path.lexists(meta_path):
        raise MusicLensError(f"{folder} is not a model folder: {META_FILE} is missing")
    meta: dict[str, Any] = schema.read_json(meta_path, META_FILE)
    schema.check_meta(meta, meta_path, expected_format=FORMAT)
    return meta


def model_folder(name_or_dir: str | os.PathLike[str]) -> Path:
    """A model folder, or the bundled model of that name; a clear error for neither."""
    folder = Path(name_or_dir)
    try:
        if folder.is_dir():
            return folder
        candidate = bundled_models_dir() / str(name_or_dir)
        if candidate.is_dir():
            return candidate
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission
        reason = getattr(exc, "strerror", None) or exc
        raise MusicLensError(f"cannot open the model folder {str(name_or_dir)[:200]!r}: {reason}") from None
    raise MusicLensError(
        f"no model named {str(name_or_dir)!r}; bundled models: "
        f"{', '.join(available()) or 'none'}; or give a folder with "
        f"{WEIGHTS_FILE} and {META_FILE}"
    )


#: Suffixes of weights files read with ``torch.load(weights_only=True)`` (plain state dicts).
TORCH_WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors, or a ``.pt``/``.pth``/``.bin``/``.ckpt`` file
    read with ``torch.load(weights_only=True)`` (plain tensors only: no code of the file runs;
    a checkpoint dict holding the tensors under ``"state_dict"`` or ``"model_state_dict"`` works
    too). A clear :class:`MusicLensError` for anything else."""
    path = Path(path)
    regular_file(path, "weights file")
    if path.suffix.lower() in TORCH_WEIGHTS_SUFFIXES:
        return _read_torch_state(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise MusicLensError(f"{path} is not a readable safetensors file: {first}") from None


def _read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)``, refusing everything but a state dict."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...: one clear line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MusicLensError(
            f"{path} is not a plain state dict: torch.load(weights_only=True) refused it ({first[:200]}); "
            "MusicLens never unpickles code: save net.state_dict() with torch.save, or use safetensors"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise MusicLensError(f"{path} holds a {type(obj).__name__}, not a state dict (parameter name -> tensor)")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise MusicLensError(
            f"{path} is not a plain state dict: {len(bad)} entries are not tensors (e.g. {', '.join(bad[:3])})"
        )
    return dict(obj)


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a weights file (see :func:`read_weights`) into ``net``, with one clear error
    naming the missing, unexpected and wrongly shaped tensors if it doesn't fit."""
    fit_weights(net, read_weights(path), path)


def fit_weights(net: nn.Module, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Load ``state`` into ``net`` (strict), or one clear error if it doesn't fit."""
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
    check_finite(state, path)
    net.load_state_dict(state, strict=True)


def file_in_folder(folder: Path, name: str, where: Path | str, what: str = "file", hint: str = "") -> Path:
    """``folder / name`` for a file ``model.json`` names: refused when it leaves the folder
    (``"../../etc/passwd"``, an absolute path, a link pointing out) or is not a regular file;
    ``hint`` ends the message for a missing file."""
    try:
        path = (folder / name).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise schema.fail(where, what, name, f"a readable file inside the model folder ({exc})") from None
    if not path.is_relative_to(folder.resolve()):
        raise schema.fail(where, what, name, f"a file inside the model folder {folder}")
    if not os.path.lexists(folder / name):
        raise MusicLensError(f"{where}: the {what} {name} is missing from {folder}{hint}")
    regular_file(path, what)
    return path


def load(
    name_or_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    kind: str | None = None,
    trust_code: bool = False,
) -> LoadedModel:
    """Load a bundled model by name, or a model folder (safetensors + JSON), in eval mode,
    on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; see :func:`~musiclens.core.device.resolve_device`).

    Every input kind loads into a :class:`LoadedModel`; ``kind`` (``"audio"``, ``"midi"``,
    ``"waveform"``) makes a model of another kind an error. A folder holding the user's own
    network (architecture ``"python"``, ``"exported"`` or ``"torchscript"``) is read by
    :func:`musiclens.core.models.user_models.load_user_model`; a ``"python"`` architecture
    runs the user's code and needs ``trust_code=True``.
    """
    dev = resolve_device(device)
    folder = model_folder(name_or_dir)
    meta = read_meta(folder)
    meta_path = folder / META_FILE
    found = meta.get("input", "audio")
    if kind is not None and found != kind:
        raise MusicLensError(f"{meta_path} is a {found} model, not a{'n' if kind == 'audio' else ''} {kind} model")
    spec = read_spec(meta, meta_path)
    architecture = meta["architecture"]
    if "family" not in architecture:
        from musiclens.core.models import user_models

        return user_models.load_user_model(folder, meta, spec, device=dev, trust_code=trust_code)
    length = input_length(meta, spec)
    params = check_family(architecture, spec, list(meta["labels"]), length, meta_path)
    weights = file_in_folder(folder, str(meta.get("weights") or WEIGHTS_FILE), meta_path, "weights file")
    net, layers = _build_checked(architecture["family"], params, meta_path, meta_device=False)
    load_weights(net, weights)
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


def read_spec(meta: dict[str, Any], meta_path: Path) -> InputSpec:
    """The checked input spec of a checked ``model.json`` (:func:`read_meta`), with the size of
    one input item bounded (:data:`schema.MAX_INPUT_VALUES`)."""
    try:
        spec = spec_from_meta(meta, meta_path)
    except ParameterError as exc:
        raise MusicLensError(f"{meta_path}: {exc}") from None
    if isinstance(spec, FrontEnd):
        patch = meta["patch_frames"]
        schema.input_values(spec.channels, spec.n_bins, patch, meta_path, "patch_frames with this front end")
    return spec


def input_length(meta: dict[str, Any], spec: InputSpec) -> int:
    """The network's input length: frames (audio), notes (MIDI) or samples (waveform)."""
    if isinstance(spec, FrontEnd):
        return int(meta["patch_frames"])
    if isinstance(spec, NoteSpec):
        return int(spec.n_notes)
    return int(spec.patch_samples)


def save(model: LoadedModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` (any input kind) as ``folder/weights.safetensors`` + ``folder/model.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net: nn.Module = model.net
    extra: dict[str, Any] = {}
    if "family" not in model.architecture:  # the user's own network: its files travel with it
        from musiclens.core.models import user_models

        net, extra = user_models.save_files(model, folder)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
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
    meta.update(extra)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
