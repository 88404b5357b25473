"""Reproduce the studies MusicLens was built for (issue 21), one report per study.

``musiclens study NAME --data DIR --out REPORT_DIR [--quick]`` and the window's Studies menu
both run :func:`run_study`. A study writes ``REPORT_DIR/report.md`` (the study's claims on
the left, ours on the right), the figures as PNG and ``numbers.json``
(:mod:`.report`). :data:`STUDIES` lists the five by name; each built one lives in its own
module of this package and is named here as ``"module:function"`` (imported when it runs).
A study not built yet raises :class:`~musiclens.core.errors.MusicLensError` saying so.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass

from musiclens.core.analyses.studies.report import ISSUE, StudyReport
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Progress

__all__ = ["Study", "StudyReport", "STUDIES", "run_study"]


@dataclass(frozen=True)
class Study:
    """One study: its name, what it reproduces, what ``--data`` means for it, and its runner
    as ``"module:function"`` in this package (None: not built yet)."""

    name: str
    title: str
    data: str
    runner: str | None = None

    @property
    def built(self) -> bool:
        return self.runner is not None

    def function(self) -> Callable[..., Generator[Progress, None, StudyReport]]:
        """The runner ``fn(out, *, quick, data) -> Generator[Progress, None, StudyReport]``."""
        if self.runner is None:
            raise MusicLensError(f"{self.name} is not built yet ({ISSUE})")
        module, fn = self.runner.split(":")
        runner: Callable[..., Generator[Progress, None, StudyReport]] = getattr(
            importlib.import_module(f"{__name__}.{module}"), fn
        )
        return runner


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "genre-cnn",
            "GTZAN vanilla, masked and GAP CNNs: accuracy, filters, deconvolution, CAMs",
            "a folder of GTZAN-style recordings in one sub-folder per genre, or several such folders joined by ':'"
            " (a track in two of them counts once)",
            "genre_cnn:genre_cnn",
        ),
        Study(
            "dreaming",
            "STFT- vs mel-input CNNs: accuracy and how cleanly their dreams invert",
            "a folder of recordings in one sub-folder per genre, or several joined by ':' (a track in two counts once)",
            "dreaming:dreaming",
        ),
        Study(
            "midi-rnn",
            "the MIDI RNN: the study's recipe beside ours, saliency and a flip",
            "a folder of MIDI files in one sub-folder per class (e.g. jazz/ and dance/)",
            "midi_rnn:midi_rnn",
        ),
        Study(
            "musicnn-dissection",
            "MusiCNN: 561 front-end filters, W, kernel norms, dead kernels, batch norms, unit time series",
            "an audio file or folder for the per-unit time series (default: the bundled demo clip)",
            "musicnn_dissection:musicnn_dissection",
        ),
        Study(
            "instrument-similarity",
            "per-layer similarity of same-instrument stems over depth",
            "a folder with one sub-folder of isolated stems / solo clips per instrument, or the shared data root"
            " (its musdb .stem.mp4 is decoded with ffmpeg)",
            "instrument_similarity:instrument_similarity",
        ),
    )
}


def run_study(
    name: str, out: str | os.PathLike[str], *, quick: bool = False, data: str | os.PathLike[str] | None = None
) -> Generator[Progress, None, StudyReport]:
    """The study ``name``'s generator (see :data:`STUDIES`); a study that is not built yet
    raises :class:`MusicLensError` saying so."""
    study = STUDIES.get(name)
    if study is None:
        raise ParameterError(f"unknown study {name!r}; the studies are: {', '.join(STUDIES)}")
    return study.function()(out, quick=quick, data=data)
