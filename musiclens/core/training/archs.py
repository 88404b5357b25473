"""The trainable architectures, each with the input kind it learns from — ONE list, read by
the CLI's ``train --arch`` choices, the window's Training panel and :func:`musiclens.core.training.train`.

No torch import here (the window builds its panels before torch is loaded). The audio
entries are the study architectures of :mod:`musiclens.core.models.study` (a test keeps the
two lists equal); ``midi-lstm`` is :mod:`musiclens.core.models.midi_lstm`.
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
    TrainableArch("masked-cnn", "audio", "vanilla-cnn with Zhang et al.'s interpretable-filter mask"),
    TrainableArch("gap-cnn", "audio", "3 conv + global average pooling (exact CAM)"),
    TrainableArch("choi-cnn", "audio", "4 conv blocks + dense (instrument study)"),
    TrainableArch("stft-cnn", "audio", "CNN on the complex STFT (dreaming study)"),
    TrainableArch("musicnn-probe", "audio", "a head on a frozen pretrained MusiCNN (transfer learning)"),
    TrainableArch("midi-lstm", "midi", "LSTM over the first notes of a MIDI piece (pitch, step, duration)"),
)

#: The architecture a folder of each kind gets when none is asked for.
DEFAULT_ARCH: dict[str, str] = {"audio": "vanilla-cnn", "midi": "midi-lstm"}


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
