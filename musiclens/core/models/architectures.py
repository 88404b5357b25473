"""The trainable architectures, each with the input kind it learns from and what it is — ONE
list, read by the CLI's ``train --arch`` choices, the window's Training panel,
:func:`musiclens.core.training.train` and the study models' provenance.

No torch import here (the window builds its panels before torch is loaded). The audio
entries are built by :mod:`musiclens.core.models.study` (front end and patch length there; a
test keeps the two lists equal); ``midi-lstm`` is :mod:`musiclens.core.models.midi_lstm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from musiclens.core.errors import ParameterError

Kind = Literal["audio", "midi"]
KINDS: tuple[Kind, ...] = ("audio", "midi")


@dataclass(frozen=True)
class TrainableArch:
    name: str
    kind: Kind
    description: str


ARCHITECTURES: tuple[TrainableArch, ...] = (
    TrainableArch("vanilla-cnn", "audio", "2 conv + 2 dense (the GTZAN study's baseline)"),
    TrainableArch("masked-cnn", "audio", "vanilla-cnn with Zhang et al.'s interpretable-filter mask on conv 2"),
    TrainableArch("gap-cnn", "audio", "3 conv + transposed conv + global average pooling + linear (exact CAM)"),
    TrainableArch("choi-cnn", "audio", "4 × (conv, BN, leaky ReLU, pool) + dense 128/65 (instrument study)"),
    TrainableArch("stft-cnn", "audio", "CNN on the complex STFT (real, imag) for the dreaming study"),
    TrainableArch("musicnn-probe", "audio", "trainable head on a frozen pretrained MusiCNN (transfer learning)"),
    TrainableArch("midi-lstm", "midi", "LSTM over the first notes of a MIDI piece (pitch, step, duration)"),
    TrainableArch(
        "midi-piece",
        "midi",
        "linear classifier over 147 statistics of the whole piece, every note of every track (swing, grid, "
        "drum kit, chords, bass line, repetition, intervals, velocities, instruments), each differentiable in "
        "a per-note presence weight (saliency: what deleting a note does)",
    ),
)

#: The architecture a folder of each kind gets when none is asked for.
DEFAULT_ARCH: dict[str, str] = {"audio": "vanilla-cnn", "midi": "midi-piece"}


def names(kind: str | None = None) -> list[str]:
    """Architecture names, all or those of one input kind, in the table's order."""
    return [a.name for a in ARCHITECTURES if kind is None or a.kind == kind]


def get(name: str) -> TrainableArch:
    for a in ARCHITECTURES:
        if a.name == name:
            return a
    raise ParameterError(f"unknown architecture {name!r}; choose one of {', '.join(names())}")


def kind_of(name: str) -> Kind:
    return get(name).kind
