"""Flip a recording: the smallest change to a span of it that makes the model say a class.

The MIDI counterpart is :func:`musiclens.core.analyses.midi.flip`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.results import RecordingFlip
from musiclens.core.progress import Progress


def _probabilities(model: Any, y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean class probabilities over the patches of (samples,) audio at ``sample_rate``."""
    import torch

    from musiclens.core.interpret._common import to_fe_rate

    yy, _, _ = to_fe_rate(y, sample_rate, model.front_end, device=model.device)
    with torch.no_grad():
        probs = model.predict(model.front_end(yy)).mean(0)
    return np.asarray(probs.cpu().numpy(), dtype=np.float64)


def flip_recording(
    model: Any,
    path: str | Path,
    span: np.ndarray,
    sample_rate: int,
    *,
    start: int,
    target: int,
    steps: int = 200,
    lr: float | None = None,
    l2: float = 0.01,
    threshold: float = 0.5,
    keep_going: bool = False,
    domain: str = "audio",
    patch_only: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, RecordingFlip]:
    """Change ``span`` ((samples,) mono float32 at ``sample_rate`` Hz, read from ``path`` at
    sample ``start``) until ``model`` says class index ``target``.

    ``domain`` "audio" changes the waveform (what is written is what was classified),
    "features" the front-end output (written through its inversion). ``lr`` None = 0.01 of the
    RMS for audio, 0.5 front-end units for features. Yields a :class:`Progress` per update
    (``payload``: the interpret step); ``stop()`` turning True ends the search with what it has
    (``cancelled``). When the model already says ``target`` nothing is optimised. Returns
    :class:`RecordingFlip`: the whole recording (every channel, the change spliced in over the
    span) unless ``patch_only``, with the probabilities before and after measured on audio."""
    from musiclens.core import audio
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.flip import flip, splice_change

    if not 0 < threshold < 1:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold}")
    label = model.labels[target]

    def says_target(probs: np.ndarray) -> bool:
        return bool(probs[target] >= threshold) if model.multilabel else int(probs.argmax()) == target

    y = np.asarray(span, dtype=np.float32)
    before = _probabilities(model, y, sample_rate)
    already = says_target(before)
    changed, n_steps, cancelled, feature_rms = y, 0, False, 0.0
    if not already:
        rate = lr if lr is not None else (0.01 if domain == "audio" else 0.5)
        last = None
        for step in flip(
            model,
            y,
            target=target,
            steps=steps,
            lr=rate,
            l2=l2,
            threshold=threshold,
            stop_on_flip=not keep_going,
            domain=domain,
            sample_rate=sample_rate,
            cancel=stop or (lambda: False),
        ):
            last = step
            yield Progress(
                fraction=step.step / max(steps, 1),
                message=f"flip to {label}: step {step.step}/{steps}, loss {step.loss:.4f}, "
                f"p({label}) {step.target_probability:.3f}" + (" (cancelled)" if step.cancelled else ""),
                payload=step,
            )
        if last is None or last.audio is None:
            raise ParameterError("the flip made no step")
        changed = np.asarray(last.audio, dtype=np.float32)
        n_steps, cancelled, feature_rms = last.step, bool(last.cancelled), float(last.distance)
    if patch_only:
        written, heard = changed, changed
    else:  # the whole recording, every channel, with the changed span put back in
        whole, _ = audio.load(path, sr=None, mono=False)
        written = splice_change(whole, y, changed, start, sample_rate=sample_rate)
        heard = audio.to_mono(written)[start : start + len(y)]
    after = _probabilities(model, heard, sample_rate)
    return RecordingFlip(
        label=label,
        target=target,
        audio=written,
        sample_rate=sample_rate,
        span=y,
        heard=np.asarray(heard, dtype=np.float32),
        start=start,
        before=before,
        after=after,
        already=already,
        flipped=says_target(after),
        steps=n_steps,
        cancelled=cancelled,
        feature_rms=feature_rms,
    )
