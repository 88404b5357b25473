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
    :class:`Dreamt` (raw audio level, not normalised). Raw-waveform models dream on the
    samples (``smoothness``, clamp to [-1, 1]; see :mod:`musiclens.core.interpret.dream`);
    their displays are :func:`waveform_display` of the samples."""
    from musiclens.core.errors import MusicLensError
    from musiclens.core.interpret.dream import dream as run_dream
    from musiclens.core.interpret.dream import sine_sweep

    if model.kind == "waveform":

        def show(x: Any) -> np.ndarray:
            return waveform_display(x[0], model.sample_rate)

    else:
        fe = model.front_end

        def show(x: Any) -> np.ndarray:
            return display_of(x, fe)

    if start is None:
        start, sample_rate = sine_sweep(model.sample_rate, seconds=model.patch_seconds), None
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
                payload=show(step.x[0]) if previews else None,
            )
    if first is None or last is None or not last.done:
        raise MusicLensError("the dream ended without a result")
    output = options.get("output", "logit")
    stopped = bool(last.cancelled)
    return Dreamt(
        np.asarray(last.audio, dtype=np.float32),
        last.sample_rate,
        show(first.x[0]),
        show(last.x[0]),
        first.objective,
        last.objective,
        probabilities(model, first.scores, output),
        probabilities(model, last.scores, output),
        f"dream of {options.get('target')}" + (f" (stopped at step {last.step})" if stopped else ""),
        steps=last.step,
        total=last.total,
        stopped=stopped,
    )


def waveform_display_front_end(sample_rate: int) -> Any:
    """The front end that draws a raw-waveform model's input (which has no front end of its
    own): a 64-band log-mel in dB at ``sample_rate``, n_fft ≈ 32 ms (a power of 2), hop n_fft/4."""
    from musiclens.core.features import FrontEnd

    n_fft = 2 ** max(5, round(np.log2(0.032 * sample_rate)))
    return FrontEnd("logmel", sample_rate=int(sample_rate), n_fft=n_fft, hop=n_fft // 4, n_mels=64)


def waveform_display(samples: Any, sample_rate: int) -> np.ndarray:
    """The picture of raw samples ((S,) array or tensor at ``sample_rate`` Hz) the viewers
    draw for a raw-waveform model (:func:`waveform_display_front_end`) -> (64, T) float32,
    low bands in row 0."""
    import torch

    fe = waveform_display_front_end(sample_rate)
    y = torch.as_tensor(np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples))
    with torch.no_grad():
        image: np.ndarray = fe(y.float().reshape(1, -1))[0, 0].numpy().astype(np.float32)
    return image
