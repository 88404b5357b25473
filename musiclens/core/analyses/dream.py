"""Deep dreaming: optimise an input so the model hears more (or less) of a class."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from musiclens.core.analyses.recording import display_of, probabilities
from musiclens.core.analyses.results import Dreamt
from musiclens.core.progress import Progress


def dream(
    model: Any,
    start: np.ndarray | None = None,
    *,
    sample_rate: int | None = None,
    stop: Callable[[], bool] | None = None,
    preview_every: int | None = None,
    previews: bool = True,
    **options: Any,
) -> Generator[Progress, None, Dreamt]:
    """Dream from ``start`` ((samples,) at ``sample_rate``, default the model's; None = a sine
    sweep of one patch). ``options``: :func:`musiclens.core.interpret.dream.dream`'s keywords
    (target, minus, steps, lr, update, output, normalise_grad, channels, jitter, ...).

    Yields a :class:`Progress` every ``preview_every`` steps (default: about 25 in all) whose
    ``payload`` is the (F, T) display of the input so far (``previews=False``: no payload).
    ``stop()`` turning True ends the dream after its current step *with* the dream so far
    (``Dreamt.stopped``); closing the generator cancels it (nothing is returned). Returns
    :class:`Dreamt` (raw audio level, not normalised)."""
    from musiclens.core.errors import MusicLensError
    from musiclens.core.interpret.dream import dream as run_dream
    from musiclens.core.interpret.dream import sine_sweep

    fe = model.front_end
    if start is None:
        start, sample_rate = sine_sweep(fe, seconds=model.patch_seconds), None
    every = preview_every or max(1, int(options.get("steps", 100)) // 25)
    kwargs = dict(options)
    if sample_rate is not None:
        kwargs["sample_rate"] = sample_rate
    first = last = None
    for step in run_dream(model, start, cancel=stop or (lambda: False), **kwargs):
        first = first or step
        last = step
        if step.done:
            break
        if step.step % every == 0:
            yield Progress(
                fraction=step.progress,
                message=f"dreaming: step {step.step}/{step.total}, objective {step.objective:.3f}",
                payload=display_of(step.x[0], fe) if previews else None,
            )
    if first is None or last is None or not last.done:
        raise MusicLensError("the dream ended without a result")
    output = options.get("output", "logit")
    stopped = bool(last.cancelled)
    return Dreamt(
        np.asarray(last.audio, dtype=np.float32),
        last.sample_rate,
        display_of(first.x[0], fe),
        display_of(last.x[0], fe),
        first.objective,
        last.objective,
        probabilities(model, first.scores, output),
        probabilities(model, last.scores, output),
        f"dream of {options.get('target')}" + (f" (stopped at step {last.step})" if stopped else ""),
        steps=last.step,
        total=last.total,
        stopped=stopped,
    )
