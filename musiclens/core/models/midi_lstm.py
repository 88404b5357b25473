"""LSTM genre/style classifier over MIDI note features (pitch, step, duration).

The network takes *raw* note features, ``x: (B, N, 3)`` = ``[pitch, step (s), duration (s)]``,
and an optional ``mask: (B, N)`` bool (True = real note, always a prefix; padding at the
end), and returns logits ``(B, n_labels)``. Normalisation is part of the network
(:class:`NoteNormaliser`), so gradients, saliency and the classification flip are in the
units users see: semitones and seconds.

A MIDI model folder has the registry's format (``musiclens-model/1``,
``weights.safetensors`` + ``model.json``) with two extra keys::

    "input": "midi",
    "note_features": NoteSpec.to_dict()   # N notes, features, short-piece policy,
                                          # drum/instrument choice, normalisation

:func:`musiclens.core.models.registry.load` loads it into the one ``LoadedModel`` (``kind ==
"midi"``, ``model.spec`` is its :class:`~musiclens.core.models.inputs.NoteSpec`);
:func:`load_midi_model` is the same with "must be a MIDI model" checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models import registry
from musiclens.core.models.inputs import NoteFeatureSpec, NoteSpec
from musiclens.core.models.registry import LayerInfo, LoadedModel, register_family
from musiclens.core.resources import DEFAULT_MIDI_MODEL

__all__ = [
    "DEFAULT_MIDI_MODEL",
    "NoteSpec",
    "NoteFeatureSpec",
    "NoteNormaliser",
    "MidiLSTM",
    "build_midi_lstm",
    "midi_model_folder",
    "available_midi_models",
    "load_midi_model",
    "save_midi_model",
]


class NoteNormaliser(nn.Module):
    """Raw note features ``(B, N, 3)`` -> standardised ``(B, N, 3)`` using a :class:`NoteSpec`."""

    def __init__(self, spec: NoteSpec) -> None:
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

    def __init__(
        self, *, n_labels: int, hidden: int = 168, layers: int = 2, dropout: float = 0.2, spec: NoteSpec | None = None
    ) -> None:
        super().__init__()
        self.normalise = NoteNormaliser(spec or NoteSpec())
        self.lstm = nn.LSTM(3, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
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
        logits: torch.Tensor = self.head(self.dropout(last))
        return logits


@register_family("midi_lstm")
def build_midi_lstm(
    *,
    n_labels: int,
    hidden: int = 168,
    layers: int = 2,
    dropout: float = 0.2,
    note_features: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[LayerInfo]]:
    """Builder for the registry. ``note_features`` is a :meth:`NoteSpec.to_dict` (normalisation)."""
    spec = NoteSpec.from_dict(note_features) if note_features else NoteSpec()
    net = MidiLSTM(n_labels=int(n_labels), hidden=int(hidden), layers=int(layers), dropout=float(dropout), spec=spec)
    layer_list = [
        LayerInfo("normalise", "normalise", "input", "block", "raw (pitch, step, duration) -> standardised"),
        LayerInfo("lstm", "lstm", "recurrent", "block", f"{layers} × {hidden} LSTM"),
        LayerInfo("output", "head", "back end", "output", "linear -> logits"),
    ]
    return net, layer_list


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
        f"{registry.WEIGHTS_FILE} and {registry.META_FILE}"
    )


def available_midi_models() -> list[str]:
    """Names of bundled models whose ``model.json`` says ``"input": "midi"``."""
    from musiclens.core.resources import available_for

    return available_for("midi")


def load_midi_model(
    name_or_dir: str | os.PathLike[str] = DEFAULT_MIDI_MODEL, *, device: str | torch.device = "cpu"
) -> LoadedModel:
    """:func:`registry.load <musiclens.core.models.registry.load>` for a model that must be a
    MIDI model (a bundled name or a folder), in eval mode."""
    folder = midi_model_folder(name_or_dir)
    meta = registry.read_meta(folder)
    if meta.get("input") != "midi":
        raise MusicLensError(
            f"{folder / registry.META_FILE} is not a MIDI model (it has no "
            "'note_features'); use an audio analysis for it"
        )
    return registry.load(folder, device=device, kind="midi")


def save_midi_model(model: LoadedModel, folder: str | os.PathLike[str]) -> Path:
    """:func:`registry.save <musiclens.core.models.registry.save>` for a MIDI model."""
    if model.kind != "midi":
        raise MusicLensError(f"model {model.name!r} is a {model.kind} model, not a MIDI model")
    return registry.save(model, folder)
