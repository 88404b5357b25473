"""A model's input spec: what it reads and how a file becomes its input.

Three kinds, one per :attr:`LoadedModel.kind <musiclens.core.models.registry.LoadedModel.kind>`:

``"audio"``     a :class:`~musiclens.core.features.FrontEnd` (spectrogram: log-mel, MusiCNN's mel,
                STFT ...); the network takes ``(B, C, F, T)`` patches of ``patch_frames`` frames.
``"midi"``      a :class:`NoteSpec` (note features: the first ``n_notes`` notes as
                ``[pitch, step, duration]``); the network takes ``(B, N, 3)`` and a ``(B, N)`` mask.
``"waveform"``  a :class:`Waveform` (raw audio at ``sample_rate``); the network takes
                ``(B, 1, patch_samples)``.

Every spec is frozen, hashable and JSON-serialisable, and knows its patch length: the
frames <-> samples <-> seconds conversions live on the spec (``n_frames``,
``frames_to_samples``, ``frames_to_seconds``, ``seconds_to_frames``), nowhere else.

In ``model.json``: ``"input"`` names the kind (``"audio"`` when absent), and the spec is under
``"front_end"``, ``"note_features"`` or ``"waveform"`` (see :data:`SPEC_KEYS`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd

if TYPE_CHECKING:
    from musiclens.core.midi import Notes

INPUT_KINDS: tuple[str, ...] = ("audio", "midi", "waveform")
#: The key of ``model.json`` that holds each kind's spec.
SPEC_KEYS: dict[str, str] = {"audio": "front_end", "midi": "note_features", "waveform": "waveform"}


@dataclass(frozen=True)
class NoteSpec:
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
    def from_dict(cls, d: dict[str, Any]) -> NoteSpec:
        if d.get("whole_piece") and cls is NoteSpec:
            return PieceSpec.from_dict(d)
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

    def replace(self, **changes: Any) -> NoteSpec:
        import dataclasses

        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- reading input
    def read(self, path_or_bytes: str | os.PathLike[str] | bytes, **kw: Any) -> Notes:
        """Read a MIDI file with this spec's drum/program choice -> :class:`~musiclens.core.midi.Notes`."""
        from musiclens.core.midi import read_midi

        return read_midi(path_or_bytes, drop_drums=self.drop_drums, programs=self.programs, **kw)

    def left_out(self, path_or_bytes: str | os.PathLike[str] | bytes) -> Notes:
        """The notes of a file that :meth:`read` leaves out (drums, other programs), as ``Notes``."""
        from musiclens.core.midi import read_midi

        every = read_midi(path_or_bytes)
        drum = every.is_drum
        kept = ~drum if self.drop_drums else np.ones(len(every), dtype=bool)
        if self.programs is not None:
            kept &= ~drum & np.isin(every.program, np.asarray(self.programs))
        return every.select(~kept)

    def window(self, notes: Notes) -> tuple[np.ndarray, np.ndarray]:
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


#: The older name of :class:`NoteSpec`.
NoteFeatureSpec = NoteSpec

#: The note features of a :class:`PieceSpec`, in column order.
PIECE_FEATURES: tuple[str, ...] = ("pitch", "step", "duration", "velocity", "program", "drum", "beat")


@dataclass(frozen=True)
class PieceSpec(NoteSpec):
    """The whole piece as model input: every note of every track (drums included), in order
    of onset, with seven raw features per note (:data:`PIECE_FEATURES`)::

        pitch (MIDI number), step (s since the previous onset), duration (s), velocity (1..127),
        program (General MIDI 0..127), drum (1.0 for a drum note), beat (onset in beats, the
        file's tempo map; its fraction is the position in the beat)

    ``window(notes)`` returns ``(n, 7)`` features and an all-True mask for the piece's ``n``
    notes (no padding, no cut below ``n_notes``, which is only a cap against absurd files);
    the network reads them all. ``mean``/``std``/``time_transform`` apply to the first three
    columns (as :class:`NoteSpec`); the network standardises the rest itself.
    In ``model.json`` the spec carries ``"whole_piece": true``.
    """

    n_notes: int = 200_000
    features: tuple[str, ...] = PIECE_FEATURES
    drop_drums: bool = False
    min_notes: int = 16
    whole_piece: bool = True

    def __post_init__(self) -> None:
        if tuple(self.features) != PIECE_FEATURES:
            raise ParameterError(f"a whole-piece spec's features are {PIECE_FEATURES}, got {self.features}")
        if int(self.n_notes) <= 0 or self.time_scale <= 0 or min(self.std) <= 0:
            raise ParameterError("n_notes, time_scale and std must be positive")
        if self.short not in ("drop", "pad") or self.time_transform not in ("log1p", "none"):
            raise ParameterError(f"bad short {self.short!r} or time_transform {self.time_transform!r}")

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PieceSpec:
        d = dict(d)
        for key in ("features", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("programs") is not None:
            d["programs"] = tuple(int(p) for p in d["programs"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ParameterError(f"unknown note-feature fields: {sorted(unknown)}")
        return cls(**d)

    def window(self, notes: Notes) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, 7) float32, mask (n,) bool all True)`` for every note of the piece."""
        from musiclens.core.midi import TooFewNotesError

        n = len(notes)
        if n < max(1, self.min_notes):
            where = f" ({notes.source.name})" if notes.source else ""
            raise TooFewNotesError(f"the piece{where} has {n} notes; this model needs at least {self.min_notes}")
        feats = piece_features(notes)[: self.n_notes]
        return feats, np.ones(len(feats), dtype=bool)


def piece_features(notes: Notes) -> np.ndarray:
    """``(n, 7)`` float32 :data:`PIECE_FEATURES` of every note of ``notes`` (in their order).

    ``beat`` uses the file's tempo map when the notes carry their document, else the
    notes' initial tempo."""
    n = len(notes)
    if n == 0:
        return np.zeros((0, len(PIECE_FEATURES)), np.float32)
    doc = notes.document
    if doc is not None:
        beat = doc.to_ticks(notes.start).astype(np.float64) / max(1, doc.resolution)
    else:
        beat = notes.start * float(notes.tempo) / 60.0
    cols = [notes.pitch, notes.step, notes.duration, notes.velocity, notes.program, notes.is_drum, beat]
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Waveform:
    """Raw audio as model input: mono at ``sample_rate``, patches of ``patch_samples`` samples.

    A frame is a sample here, so the conversions are trivial; they exist so that code written
    for any input kind (``model.input.frames_to_seconds(model.patch_frames)``) works unchanged.
    """

    sample_rate: int
    patch_samples: int

    def __post_init__(self) -> None:
        for name in ("sample_rate", "patch_samples"):
            if int(getattr(self, name)) <= 0:
                raise ParameterError(f"{name} must be a positive integer, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Waveform:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ParameterError(f"unknown waveform fields: {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in d.items()})

    def replace(self, **changes: Any) -> Waveform:
        return dataclasses.replace(self, **changes)

    @property
    def channels(self) -> int:
        return 1

    def n_frames(self, n_samples: int) -> int:
        return max(0, int(n_samples))

    def frames_to_samples(self, n_frames: int) -> int:
        n = int(n_frames)
        if n <= 0:
            raise ParameterError(f"the number of samples must be positive, got {n_frames}")
        return n

    @overload
    def frames_to_seconds(self, n_frames: float) -> float: ...
    @overload
    def frames_to_seconds(self, n_frames: npt.NDArray[Any]) -> npt.NDArray[Any]: ...

    def frames_to_seconds(self, n_frames: float | npt.NDArray[Any]) -> float | npt.NDArray[Any]:
        return n_frames / self.sample_rate

    def seconds_to_frames(self, seconds: float) -> int:
        if float(seconds) <= 0:
            raise ParameterError(f"patch length must be positive, got {seconds} s")
        return int(round(float(seconds) * self.sample_rate))

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """(samples,) or (B, samples) -> the network input (B, 1, samples)."""
        if audio.dim() == 1:
            audio = audio[None]
        if audio.dim() != 2:
            raise ParameterError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
        return audio[:, None, :]


#: What ``LoadedModel.input`` holds.
InputSpec: TypeAlias = FrontEnd | NoteSpec | Waveform


def input_kind(spec: InputSpec) -> str:
    """``"audio"``, ``"midi"`` or ``"waveform"`` for an input spec."""
    if isinstance(spec, FrontEnd):
        return "audio"
    if isinstance(spec, NoteSpec):
        return "midi"
    if isinstance(spec, Waveform):
        return "waveform"
    raise ParameterError(f"a model's input must be a FrontEnd, a NoteSpec or a Waveform, got {type(spec).__name__}")


def spec_from_meta(meta: dict[str, Any], where: str | os.PathLike[str] = "model.json") -> InputSpec:
    """The input spec of a ``model.json`` dict (its ``"input"`` kind and that kind's key),
    checked field by field first (:func:`musiclens.core.models.schema.check_spec`; ``where``
    names the file in the messages)."""
    from musiclens.core.models.schema import check_spec

    kind = meta.get("input", "audio")
    if not isinstance(kind, str) or kind not in SPEC_KEYS:
        raise ParameterError(f"input {kind!r} is unknown; allowed: {', '.join(INPUT_KINDS)}")
    d = meta[SPEC_KEYS[kind]]
    whole = kind == "midi" and isinstance(d, dict) and d.get("whole_piece") is True
    spec_class = {"audio": FrontEnd, "midi": PieceSpec if whole else NoteSpec, "waveform": Waveform}[kind]
    check_spec(kind, d, spec_class, where, SPEC_KEYS[kind])
    readers: dict[str, Callable[[dict[str, Any]], InputSpec]] = {
        "audio": FrontEnd.from_dict,
        "midi": NoteSpec.from_dict,
        "waveform": Waveform.from_dict,
    }
    return readers[kind](d)


def spec_to_meta(spec: InputSpec) -> dict[str, Any]:
    """``{"input": kind, <spec key>: spec.to_dict()}`` for ``model.json``."""
    kind = input_kind(spec)
    return {"input": kind, SPEC_KEYS[kind]: spec.to_dict()}
