"""LSTM genre/style classifier over MIDI note features (pitch, step, duration).

The network takes *raw* note features, ``x: (B, N, 3)`` = ``[pitch, step (s), duration (s)]``,
and an optional ``mask: (B, N)`` bool (True = real note, always a prefix; padding at the
end), and returns logits ``(B, n_labels)``. Normalisation is part of the network
(:class:`NoteNormaliser`), so gradients, saliency and the classification flip are in the
units users see: semitones and seconds.

A MIDI model folder has the registry's format (``musiclens-model/1``,
``weights.safetensors`` + ``model.json``) with two extra keys::

    "input": "midi",
    "note_features": NoteFeatureSpec.to_dict()   # N notes, features, short-piece policy,
                                                 # drum/instrument choice, normalisation

The registry's ``LoadedModel`` carries an audio ``FrontEnd``, so MIDI models are loaded
with :func:`load_midi_model` (same folder format, same safetensors check).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models import registry
from musiclens.core.models.registry import LayerInfo, register_family

DEFAULT_MIDI_MODEL = "midi_style_lstm"


@dataclass(frozen=True)
class NoteFeatureSpec:
    """How a MIDI file becomes model input: the MIDI counterpart of an audio ``FrontEnd``.

    n_notes : window length, the first ``n_notes`` notes (the study used 100).
    features : always ``("pitch", "step", "duration")``.
    short : pieces with fewer notes are ``"drop"``-ped (raise) or ``"pad"``-ded with a mask.
    min_notes : with ``short="pad"``, pieces need at least this many notes.
    drop_drums : leave drum tracks out.
    programs : keep only these General MIDI programs (None = all).
    time_transform : ``"log1p"`` maps seconds ``t`` to ``log1p(t / time_scale)`` before
        standardising, or ``"none"``.
    mean, std : per-feature standardisation after the transform (fitted on training data).
    """

    n_notes: int = 100
    features: tuple[str, ...] = ("pitch", "step", "duration")
    short: Literal["drop", "pad"] = "pad"
    min_notes: int = 1
    drop_drums: bool = True
    programs: tuple[int, ...] | None = None
    time_transform: Literal["log1p", "none"] = "log1p"
    time_scale: float = 0.05
    mean: tuple[float, float, float] = (60.0, 0.0, 0.0)
    std: tuple[float, float, float] = (12.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if tuple(self.features) != ("pitch", "step", "duration"):
            raise ParameterError(f"features must be ('pitch', 'step', 'duration'), got {self.features}")
        if int(self.n_notes) <= 0:
            raise ParameterError(f"n_notes must be positive, got {self.n_notes}")
        if self.short not in ("drop", "pad"):
            raise ParameterError(f"short must be 'drop' or 'pad', got {self.short!r}")
        if self.time_transform not in ("log1p", "none"):
            raise ParameterError(f"time_transform must be 'log1p' or 'none', got {self.time_transform!r}")
        if self.time_scale <= 0 or min(self.std) <= 0:
            raise ParameterError("time_scale and std must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        d["programs"] = None if self.programs is None else list(self.programs)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NoteFeatureSpec":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ParameterError(f"unknown note-feature fields: {sorted(unknown)}")
        d = dict(d)
        for key in ("features", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("programs") is not None:
            d["programs"] = tuple(int(p) for p in d["programs"])
        return cls(**d)

    def replace(self, **changes: Any) -> "NoteFeatureSpec":
        import dataclasses

        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- reading input
    def read(self, path_or_bytes, **kw):
        """Read a MIDI file with this spec's drum/program choice -> :class:`~musiclens.core.midi.Notes`."""
        from musiclens.core.midi import read_midi

        return read_midi(path_or_bytes, drop_drums=self.drop_drums, programs=self.programs, **kw)

    def left_out(self, path_or_bytes):
        """The notes of a file that :meth:`read` leaves out (drums, other programs), as ``Notes``."""
        from musiclens.core.midi import read_midi

        every = read_midi(path_or_bytes)
        drum = every.is_drum
        kept = ~drum if self.drop_drums else np.ones(len(every), dtype=bool)
        if self.programs is not None:
            kept &= ~drum & np.isin(every.program, np.asarray(self.programs))
        return every.select(~kept)

    def window(self, notes) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, 3) float32, mask (N,) bool)`` for one piece; see :func:`note_window`."""
        from musiclens.core.midi import note_window

        return note_window(notes, self.n_notes, short=self.short, min_notes=self.min_notes)

    # -------------------------------------------------------------- normalisation
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Raw ``(..., 3)`` -> standardised model space (differentiable, invertible)."""
        mean = x.new_tensor(self.mean)
        std = x.new_tensor(self.std)
        if self.time_transform == "log1p":
            x = torch.cat([x[..., :1], torch.log1p(x[..., 1:].clamp_min(0) / self.time_scale)], dim=-1)
        return (x - mean) / std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised model space -> raw ``(..., 3)`` (times may come out negative; clip them)."""
        x = z * z.new_tensor(self.std) + z.new_tensor(self.mean)
        if self.time_transform == "log1p":
            x = torch.cat([x[..., :1], torch.expm1(x[..., 1:]) * self.time_scale], dim=-1)
        return x


class NoteNormaliser(nn.Module):
    """Raw note features ``(B, N, 3)`` -> standardised ``(B, N, 3)`` using a :class:`NoteFeatureSpec`."""

    def __init__(self, spec: NoteFeatureSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spec.transform(x)


class MidiLSTM(nn.Module):
    """normalise -> LSTM (``layers`` × ``hidden``) -> last real step -> dropout -> linear.

    forward(x: (B, N, 3) raw features, mask: (B, N) bool prefix or None) -> logits (B, n_labels).
    Padding must be at the end; the output is read at each sequence's last real note, so
    padded steps never influence the result (and get zero gradient).
    """

    def __init__(self, *, n_labels: int, hidden: int = 168, layers: int = 2, dropout: float = 0.2,
                 spec: NoteFeatureSpec | None = None) -> None:
        super().__init__()
        self.normalise = NoteNormaliser(spec or NoteFeatureSpec())
        self.lstm = nn.LSTM(3, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_labels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ParameterError(f"MidiLSTM expects (B, N, 3) note features, got {tuple(x.shape)}")
        out, _ = self.lstm(self.normalise(x))
        if mask is None:
            last = out[:, -1]
        else:
            lengths = mask.to(torch.long).sum(dim=1).clamp_min(1)
            idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
            last = out.gather(1, idx).squeeze(1)
        return self.head(self.dropout(last))


@register_family("midi_lstm")
def build_midi_lstm(*, n_labels: int, hidden: int = 168, layers: int = 2, dropout: float = 0.2,
                    note_features: dict[str, Any] | None = None) -> tuple[nn.Module, list[LayerInfo]]:
    """Builder for the registry. ``note_features`` is a :meth:`NoteFeatureSpec.to_dict` (normalisation)."""
    spec = NoteFeatureSpec.from_dict(note_features) if note_features else NoteFeatureSpec()
    net = MidiLSTM(n_labels=int(n_labels), hidden=int(hidden), layers=int(layers), dropout=float(dropout),
                   spec=spec)
    layer_list = [
        LayerInfo("normalise", "normalise", "input", "block", "raw (pitch, step, duration) -> standardised"),
        LayerInfo("lstm", "lstm", "recurrent", "block", f"{layers} × {hidden} LSTM"),
        LayerInfo("output", "head", "back end", "output", "linear -> logits"),
    ]
    return net, layer_list


@dataclass
class LoadedMidiModel:
    """A MIDI model ready to run: the MIDI counterpart of the registry's ``LoadedModel``."""

    name: str
    net: MidiLSTM
    spec: NoteFeatureSpec
    labels: list[str]
    layers: dict[str, LayerInfo]
    architecture: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    multilabel: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def label_index(self, label: str | int) -> int:
        """Index of a class given by name (case-insensitive) or index."""
        if isinstance(label, (int, np.integer)) or (isinstance(label, str) and label.isdigit()):
            i = int(label)
            if 0 <= i < len(self.labels):
                return i
        else:
            lowered = [x.lower() for x in self.labels]
            if str(label).lower() in lowered:
                return lowered.index(str(label).lower())
        raise ParameterError(f"unknown class {label!r}; this model's classes are: {', '.join(self.labels)}")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def tensors(self, features: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """numpy ``(N, 3)``/``(B, N, 3)`` + mask -> batched tensors on the model's device."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device)
        m = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device)
        if x.ndim == 2:
            x, m = x[None], m[None]
        return x, m

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, 3) raw features -> probabilities (B, n_labels)."""
        return self.probabilities(self.net(x, mask))

    def classify_notes(self, notes) -> dict[str, Any]:
        """Classify a :class:`~musiclens.core.midi.Notes` piece (already filtered by the spec).

        ``n_notes_read``: the notes the model reads (the first ``spec.n_notes``) of
        ``n_notes_total`` (the piece's notes on the tracks the spec reads).
        :meth:`classify_file` adds ``n_notes_not_read_tracks`` (notes on the tracks the spec
        leaves out, e.g. drums; kept in the file) and ``n_drum_notes_not_read``.
        """
        feats, mask = self.spec.window(notes)
        x, m = self.tensors(feats, mask)
        p = self.predict(x, m)[0].cpu().numpy()
        k = int(p.argmax())
        return {"labels": list(self.labels),
                "probabilities": {lab: float(v) for lab, v in zip(self.labels, p)},
                "predicted": self.labels[k], "confidence": float(p[k]),
                "notes_used": int(mask.sum()), "padded": bool(mask.sum() < len(mask)),
                "n_notes_read": int(mask.sum()), "n_notes_total": len(notes)}

    def classify_file(self, path) -> dict[str, Any]:
        """Read a MIDI file with the model's spec and classify it."""
        from musiclens.core.midi import other_notes

        notes = self.spec.read(path)
        out = self.classify_notes(notes)
        others = other_notes(notes)  # on tracks the spec leaves out (drums, other programs)
        out["n_notes_not_read_tracks"] = len(others)
        out["n_drum_notes_not_read"] = int(others.is_drum.sum())
        out["repairs"] = list(notes.repairs)
        return out


def midi_model_folder(name_or_dir: str | os.PathLike[str]) -> Path:
    folder = Path(name_or_dir)
    if folder.is_dir():
        return folder
    candidate = registry.bundled_models_dir() / str(name_or_dir)
    if candidate.is_dir():
        return candidate
    raise MusicLensError(
        f"no MIDI model named {str(name_or_dir)!r}; bundled MIDI models: "
        f"{', '.join(available_midi_models()) or 'none'}; or give a folder with "
        f"{registry.WEIGHTS_FILE} and {registry.META_FILE}")


def available_midi_models() -> list[str]:
    """Names of bundled models whose ``model.json`` says ``"input": "midi"``."""
    from musiclens.core.resources import available_for

    return available_for("midi")


def load_midi_model(name_or_dir: str | os.PathLike[str] = DEFAULT_MIDI_MODEL, *,
                    device: str | torch.device = "cpu") -> LoadedMidiModel:
    """Load a bundled MIDI model by name, or a model folder, in eval mode."""
    folder = midi_model_folder(name_or_dir)
    meta = registry.read_meta(folder)
    meta_path = folder / registry.META_FILE
    if meta.get("input") != "midi":
        raise MusicLensError(f"{meta_path} is not a MIDI model (it has no 'note_features'); "
                             "use an audio analysis for it")
    spec = NoteFeatureSpec.from_dict(meta["note_features"])
    arch = meta["architecture"]
    if arch.get("family") != "midi_lstm":
        raise MusicLensError(f"{meta_path}: family {arch.get('family')!r} is not a MIDI family")
    net, layers = build_midi_lstm(**arch.get("params", {}), note_features=spec.to_dict())
    if len(meta["labels"]) != net.head.out_features:
        raise MusicLensError(f"{meta_path}: {len(meta['labels'])} labels but the network has "
                             f"{net.head.out_features} outputs")
    registry.load_weights(net, folder / registry.WEIGHTS_FILE)
    net.eval().to(device)
    return LoadedMidiModel(name=meta.get("name", folder.name), net=net, spec=spec,
                           labels=list(meta["labels"]), layers={x.name: x for x in layers},
                           architecture=arch, provenance=meta.get("provenance", {}), source=folder)


def save_midi_model(model: LoadedMidiModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/weights.safetensors`` + ``folder/model.json`` (loadable by :func:`load_midi_model`)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(folder / registry.WEIGHTS_FILE))
    meta = {
        "format": registry.FORMAT,
        "name": model.name,
        "input": "midi",
        "architecture": model.architecture,
        # No "front_end": a MIDI model has no audio front end, so the registry's audio
        # loader stops with "the key 'front_end' is missing" instead of misreading it.
        "patch_frames": model.spec.n_notes,
        "multilabel": False,
        "note_features": model.spec.to_dict(),
        "labels": list(model.labels),
        "provenance": model.provenance,
    }
    (folder / registry.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
