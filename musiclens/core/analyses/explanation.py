"""Hear an explanation: the part of a recording the model used for a target, and the rest.

Over a span of a recording: the attribution of any method of the method table (patch by
patch, :func:`musiclens.core.analyses.attribution.attribution_over_file`), its top-k % cells
as a mask on the recording's STFT (:mod:`musiclens.core.interpret.explanation_audio`), and
the model's probability for the target on the original, on "what it used" and on "what it
ignored" (each run through the model's own front end).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musiclens.core.analyses.attribution import attribution_over_file
from musiclens.core.analyses.results import Attribution
from musiclens.core.progress import Progress

#: the three versions a score is reported for, in this order
VERSIONS = ("original", "used", "ignored")


@dataclass
class HeardExplanation:
    """What the model used and what it ignored, heard and scored.

    used, ignored, original : (samples,) float32 at ``sample_rate`` Hz, the analysed span
        (whole patches: ``end_s - start_s`` seconds); ``original`` is the unmasked iSTFT.
    scores : version ("original", "used", "ignored") -> the target's probability, the mean
        over the span's patches.
    mask : (F, T) in [0, 1] on the front end's grid: the cells used.
    used_share : mean of ``mask`` (0..1).
    attribution : the map the mask was made from (re-used when only ``top``/``soft`` change).
    """

    method: str
    target: str
    layer: str | None
    top: float
    soft: bool
    sample_rate: int
    original: np.ndarray
    used: np.ndarray
    ignored: np.ndarray
    scores: dict[str, float]
    mask: np.ndarray
    used_share: float
    start_s: float
    end_s: float
    attribution: Attribution = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON facts (no arrays)."""
        return {
            "method": self.method,
            "target": self.target,
            "layer": self.layer,
            "top_percent": self.top,
            "soft": self.soft,
            "sample_rate": self.sample_rate,
            "seconds": len(self.used) / self.sample_rate,
            "used_share": self.used_share,
            "scores": dict(self.scores),
            "rms_dbfs": {v: _dbfs(getattr(self, v)) for v in VERSIONS},
        }


def _dbfs(y: np.ndarray) -> float:
    from musiclens.core.interpret.auralise import rms_dbfs

    return rms_dbfs(y)


def default_layer(model: Any) -> str:
    """The layer a layer method (Grad-CAM...) uses when none is given: the first conv layer
    (2-D maps in any CNN, as the window's first example)."""
    from musiclens.core.errors import ParameterError

    convs = [name for name, info in model.layers.items() if info.kind == "conv"]
    if not convs:
        raise ParameterError(f"model {model.name!r} has no conv layer; name a layer for a layer method")
    return str(convs[0])


def analysed_span(model: Any, audio: np.ndarray) -> np.ndarray:
    """The part of ``audio`` ((samples,) at the model's rate) the patches cover: exactly
    ``P × patch_frames`` frames of the front end (the trailing partial patch dropped)."""
    from musiclens.core.errors import ParameterError

    fe = model.front_end
    patches = (fe.n_frames(len(audio))) // model.patch_frames
    if patches < 1:
        raise ParameterError(
            f"the audio is {len(audio) / fe.sample_rate:.2f} s long; {model.name} needs at least "
            f"{model.patch_samples / fe.sample_rate:.2f} s (one patch)"
        )
    return np.asarray(audio[: fe.frames_to_samples(patches * model.patch_frames)], dtype=np.float32)


def target_probability(model: Any, audio: np.ndarray, target: int | str) -> float:
    """The mean over the patches of ``audio`` ((samples,) at the model's rate) of the
    target's probability."""
    from musiclens.core.analyses.predict import predict

    idx = model.label_index(target)
    return float(predict(model, audio).probabilities[:, idx].mean())


def hear_explanation(
    model: Any,
    audio: np.ndarray,
    method: str,
    target: int | str,
    *,
    top: float = 20.0,
    soft: bool = False,
    layer: str | None = None,
    options: dict[str, Any] | None = None,
    attribution: Attribution | None = None,
    start_s: float = 0.0,
) -> Generator[Progress, None, HeardExplanation]:
    """Hear what ``model`` used for ``target`` in ``audio``, and what it ignored.

    Parameters
    ----------
    audio : (samples,) float32 at the model's rate; its whole patches are analysed.
    method : any name of the method table (audio kinds); ``layer`` for a layer method
        (default :func:`default_layer`); ``options`` its keywords (default its quick ones).
    top : percentage of the time-frequency cells kept as "used" (the largest positive
        attribution); ``soft``: weaker positive cells fade in (see ``top_k_mask``).
    attribution : a map computed before for this audio, method and target (skips the work).
    start_s : where ``audio`` starts in the recording (seconds), for the result.

    Yields one :class:`Progress` per patch of the attribution, then the masking and the
    scores; returns :class:`HeardExplanation`.
    """
    import torch

    from musiclens.core.interpret import methods
    from musiclens.core.interpret.explanation_audio import hear_masks

    kind = methods.input_kind(model)
    if kind != "audio":
        from musiclens.core.errors import ParameterError

        raise ParameterError(
            f"hearing an explanation masks a spectrogram: it needs an audio model with a front end, "
            f"and {model.name} reads {kind} input"
        )
    meth = methods.get(method)
    if meth.needs_layer and layer is None:
        layer = default_layer(model)
    label = model.labels[model.label_index(target)]
    span = analysed_span(model, audio)
    if attribution is None:
        steps = attribution_over_file(model, span, meth.name, label, layer=layer, options=options)
        try:  # its steps, on 0..0.9 of this job
            while True:
                step = next(steps)
                yield Progress(fraction=None if step.fraction is None else 0.9 * step.fraction, message=step.message)
        except StopIteration as done:
            attribution = done.value
        finally:
            steps.close()
    yield Progress(fraction=0.9, message=f"masking the top {top:g} % of {meth.label} for {label}")
    heard = hear_masks(
        span, torch.from_numpy(np.asarray(attribution.values, np.float32)), model.front_end, top=top, soft=soft
    )
    yield Progress(fraction=0.95, message=f"scoring {label} on the original, used and ignored audio")
    versions = {"original": heard.original[0], "used": heard.used[0], "ignored": heard.ignored[0]}
    scores = {v: target_probability(model, versions[v], label) for v in VERSIONS}
    return HeardExplanation(
        meth.name,
        label,
        layer if meth.needs_layer else None,
        float(top),
        bool(soft),
        heard.sample_rate,
        versions["original"],
        versions["used"],
        versions["ignored"],
        scores,
        heard.mask[0].cpu().numpy(),
        float(heard.used_share[0]),
        start_s,
        start_s + len(span) / heard.sample_rate,
        attribution,
    )
