"""Predict: per-patch probabilities of a whole recording (audio models)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.results import Analysis
from musiclens.core.progress import Progress


def predict(model: Any, audio: np.ndarray, *, hop: int | None = None) -> Analysis:
    """Mono (samples,) at the model's rate -> :class:`Analysis`: (P, L) probabilities of the
    non-overlapping patches (``hop``: frames between patch starts), the file's ranking."""
    from musiclens.core.tagging import taggram

    return _analysis(taggram(model, audio, hop=hop))


def predict_steps(model: Any, audio: np.ndarray, *, hop: int | None = None) -> Generator[Progress, None, Analysis]:
    """:func:`predict` in steps (a long recording takes seconds): yields a :class:`Progress`
    per patch (fraction done), returns the :class:`Analysis`."""
    from musiclens.core.tagging import taggram_steps

    tg = yield from taggram_steps(model, audio, hop=hop)
    return _analysis(tg)


def _analysis(tg: Any) -> Analysis:
    return Analysis(tg.labels, tg.probabilities, tg.patch_starts_s, tg.patch_seconds, tg.top())


def predict_file(model: Any, path: str | Path, *, hop: int | None = None) -> Analysis:
    """An audio file (read mono at the model's rate) -> :class:`Analysis`."""
    from musiclens.core.tagging import load_audio_for

    return predict(model, load_audio_for(model, path), hop=hop)
