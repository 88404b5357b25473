"""The result types of the analyses: plain Python and numpy (no torch, no Qt), so the window
can import them before torch loads and the CLI can turn them into JSON.

Units: seconds (``*_s``), Hz, dBFS; shapes are given as (F, T) = (front-end bins, frames),
(P, L) = (patches, labels), (K, ...) = filters of a layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ModelSummary:
    """What a front end (window, report) needs of a model, plain Python (no torch)."""

    name: str
    labels: list[str]
    multilabel: bool
    layers: list[tuple[str, str, str]]  # (readable name, group, kind)
    patch_seconds: float  # one patch, s
    front_end_kind: str  # logmel, stft, musicnn, ...
    sample_rate: int  # Hz
    source: str = ""


@dataclass
class Recording:
    """An opened recording as the model sees it."""

    path: Path
    audio: np.ndarray  # (samples,) float32 mono at the model's rate
    sample_rate: int  # Hz
    display: np.ndarray  # (F, T) what the spectrogram viewer draws (dB or log-compressed)
    bin_hz: np.ndarray  # (F,) centre frequency of each row, Hz
    duration_s: float
    caption: str = ""


@dataclass
class Analysis:
    """Whole-file predictions: per-patch probabilities and the file's ranking."""

    labels: list[str]
    probabilities: np.ndarray  # (P, L) per patch, 0..1
    patch_starts_s: np.ndarray  # (P,) s
    patch_seconds: float
    top: list[tuple[str, float]] = field(default_factory=list)  # (label, mean probability), best first

    def mean(self) -> np.ndarray:
        """(L,) mean probability over the patches: the file's probabilities."""
        mean: np.ndarray = self.probabilities.mean(axis=0)
        return mean

    def ranked(self, n: int | None = None) -> list[tuple[str, float]]:
        """(label, mean probability), best first (stable), ``n`` of them (all by default)."""
        mean = self.mean()
        order = np.argsort(-mean, kind="stable")[:n]
        return [(self.labels[i], float(mean[i])) for i in order]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The ``tag`` command's JSON (tags, taggram, top, patch_starts_s, patch_seconds)."""
        return {
            "tags": list(self.labels),
            "taggram": self.probabilities.astype(float).tolist(),
            "top": [[t, p] for t, p in self.ranked(top)],
            "patch_starts_s": self.patch_starts_s.astype(float).tolist(),
            "patch_seconds": self.patch_seconds,
        }


@dataclass
class LayerMaps:
    """Per-filter activation maps of one layer for one patch."""

    layer: str
    patch: int
    start_s: float
    maps: np.ndarray  # (K, F_l, T_l) before any ReLU
    energy: np.ndarray  # (K,) mean square of the positive part: what the auralisation's mask is made of
    level_db: np.ndarray | None = None  # (K,) RMS of each filter's auralisation, dBFS (-inf: digital silence)
    silent: np.ndarray | None = None  # (K,) auralisation below silent_db
    silent_db: float = -40.0


@dataclass
class Heard:
    """Audio made from a filter (auralisation or deconvolution) and the mask behind it."""

    label: str
    audio: np.ndarray  # (samples,) float32
    sample_rate: int  # Hz
    mask: np.ndarray  # (F, T) over [start_s, end_s]
    start_s: float
    end_s: float
    level_db: float = float("nan")  # RMS of the auralisation as computed, dBFS
    gain_db: float = 0.0  # applied for loudness-normalised listening (0: as computed)


@dataclass
class Attribution:
    """A map over the front end's bins and time (F, T_total) for one method and target,
    the patches' maps joined along time (``T_total`` = patches × patch frames)."""

    method: str  # the method table's canonical name
    target: str
    layer: str | None  # None for input-resolution methods
    values: np.ndarray  # (F, T_total) float32, signed when ``signed``
    start_s: float
    end_s: float
    signed: bool
    note: str = ""  # e.g. Integrated Gradients' completeness error


@dataclass
class Dreamt:
    """A finished dream: its audio, the input before and after, and what the model says."""

    audio: np.ndarray  # (samples,) float32, raw level (not normalised)
    sample_rate: int  # Hz
    before: np.ndarray  # (F, T) display of the start
    after: np.ndarray  # (F, T) display of the dream
    objective_before: float
    objective_after: float
    probabilities_before: dict[str, float]
    probabilities_after: dict[str, float]
    label: str
    steps: int = 0  # updates applied
    total: int = 0  # updates asked for
    stopped: bool = False  # stopped (the ``stop`` callable) at ``steps``


@dataclass
class Similarity:
    """Layer-wise similarity of two stimuli (one patch each) and their mean feature maps."""

    name_a: str
    name_b: str
    start_s: float
    layers: list[str]
    values: dict[str, np.ndarray]  # metric -> (L,) one value per layer
    maps: list[tuple[str, np.ndarray, np.ndarray]]  # (layer, map of A, map of B), input first
    kinds: dict[str, str] = field(default_factory=dict)  # layer -> conv, batchnorm, block, pool, dense…


@dataclass
class ClassSimilarity:
    """Mean layer-wise similarity of all within-class pairs, per class."""

    folder: str
    layers: list[str]
    per_class: dict[str, dict[str, np.ndarray]]  # label -> metric -> (L,) mean over the class's pairs
    pairs: dict[str, int]  # label -> number of pairs
    kinds: dict[str, str] = field(default_factory=dict)  # layer -> conv, batchnorm, block, pool, dense…


@dataclass
class PairwiseSimilarity:
    """Layer-wise similarity of many pairs of files (the ``similarity`` command's result)."""

    files: list[str]
    pairs: list[tuple[int, int]]  # indices into ``files``
    layers: list[str]
    values: dict[str, np.ndarray]  # metric -> (P, L), one row per pair in the order of ``pairs``
    groups: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # class -> its pairs
    labels: list[str] | None = None  # the class of each file, when known

    def mean(self, label: str | None = None) -> dict[str, np.ndarray]:
        """metric -> (L,) mean over all pairs (or over the pairs of class ``label``), NaN
        where every pair is NaN (CKA of dense layers)."""
        return mean_curves(self.values, self._rows(label))

    def _rows(self, label: str | None) -> slice:
        if label is None:
            return slice(None)
        start = 0
        for name, ps in self.groups.items():
            if name == label:
                return slice(start, start + len(ps))
            start += len(ps)
        raise KeyError(label)


def mean_curves(values: dict[str, np.ndarray], rows: Any = slice(None)) -> dict[str, np.ndarray]:
    """metric -> (P, L) -> metric -> (L,) NaN-mean over ``rows`` (all-NaN columns stay NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (CKA of dense layers)
        return {k: np.nanmean(v[rows], axis=0) for k, v in values.items()}


@dataclass
class MidiOpened:
    """A MIDI file read with the MIDI model's spec: ``notes`` are the tracks the model reads
    (drums left out); the whole file stays in ``notes.document`` and saving keeps it."""

    path: Path
    notes: Any  # musiclens.core.midi.Notes
    labels: list[str]
    model: str
    window: int  # notes the model reads
    repairs: list[str]


@dataclass
class MidiClassified:
    """The MIDI model's output for one state of the edited notes."""

    revision: int
    labels: list[str]
    probabilities: np.ndarray  # (L,)
    saliency: np.ndarray  # (k, 3) d logit[target] / d (pitch, step, duration), the window's notes
    notes_used: int
    target: int
    elapsed_s: float
    method: str = "gradient"  # the table's method that computed ``saliency`` (``shown_as``: how to draw it)


@dataclass
class MidiFlip:
    """A proposed flip: the engine's result and the whole piece if accepted."""

    result: Any  # FlipResult
    proposal: Any  # Notes: the piece with the flipped opening, as a saved file reads back
    labels: list[str]


@dataclass
class RecordingFlip:
    """A recording flipped toward ``label``: what is written and what the model says of it."""

    label: str
    target: int  # class index
    audio: np.ndarray  # what is written: (channels, samples) the whole recording, or (samples,) the span
    sample_rate: int  # Hz
    span: np.ndarray  # (samples,) mono: the span as read
    heard: np.ndarray  # (samples,) mono: the same span of what is written (what "after" measured)
    start: int  # the span's first sample in the recording
    before: np.ndarray  # (L,) probabilities of the span as read
    after: np.ndarray  # (L,) probabilities of the span as written
    already: bool  # the model already said ``label``: nothing was optimised
    flipped: bool
    steps: int
    cancelled: bool
    feature_rms: float  # RMS of the change in front-end units

    @property
    def change(self) -> np.ndarray:
        """(samples,) float64: written span minus the span as read."""
        return self.heard.astype(np.float64) - self.span.astype(np.float64)

    @property
    def snr_db(self) -> float | None:
        """Signal-to-change ratio in dB (None: no change)."""
        change_energy = float(np.sum(self.change**2))
        if change_energy == 0:
            return None
        energy = float(np.sum(self.span.astype(np.float64) ** 2))
        return float(10 * np.log10(max(energy, 1e-30) / change_energy))


@dataclass
class Trained:
    """A finished (or cancelled) training run: the run's summary (the CLI's JSON: "out",
    "best_epoch", ...) and the trained model; a cancelled run saved its best epoch so far."""

    summary: dict[str, Any]
    model: Any = None  # LoadedModel
    cancelled: bool = False
