"""Look inside a layer: its filters' activation maps on a patch, and hearing one filter."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from musiclens.core.analyses.results import Heard, LayerMaps
from musiclens.core.progress import Progress, run


def layer_maps(model: Any, audio: np.ndarray, layer: str, *, patch: int = 0, start_s: float = 0.0) -> LayerMaps:
    """Per-filter activation maps of ``layer`` on one patch ((samples,) at the model's rate),
    with what each filter's auralisation sounds like (energy of the positive part, level in
    dBFS, silent or not). ``patch``/``start_s`` say where the patch is, for the result.
    Raw-waveform models: ``maps`` is (K, 1, T_l), each filter's activation over time (a
    1-D layer's channels × time), heard by time-domain masking."""
    return run(layer_maps_steps(model, audio, layer, patch=patch, start_s=start_s))


def layer_maps_steps(
    model: Any, audio: np.ndarray, layer: str, *, patch: int = 0, start_s: float = 0.0
) -> Generator[Progress, None, LayerMaps]:
    """:func:`layer_maps` in steps: yields a :class:`Progress` (fraction of the layer's
    filters heard) before each batch of filters; returns the :class:`LayerMaps`."""
    from musiclens.core.interpret.auralise import filter_levels_steps

    levels = yield from filter_levels_steps(model, audio, layer=layer)  # the same input hear_filter uses
    return LayerMaps(
        layer, patch, start_s, levels.maps, levels.energy, levels.level_db, levels.silent, levels.silent_db
    )


def hear_filter(
    model: Any,
    audio: np.ndarray,
    layer: str,
    k: int,
    *,
    how: str = "activation",
    start_s: float = 0.0,
    sample_rate: int | None = None,
    normalise_to: float | None = None,
) -> Heard:
    """Auralise (``how="activation"``) or deconvolve (``"deconv"``) filter ``k`` of ``layer``
    on ``audio`` ((samples,) at ``sample_rate``, default the model's). ``normalise_to``: scale
    the result to that RMS level in dBFS (peak ≤ 0.99; silence stays silent); the gain is in
    ``Heard.gain_db``, the level as computed in ``Heard.level_db``. Raw-waveform models are
    heard by time-domain masking (``Heard.mask`` is (1, T_l), the filter's activation over
    time); deconvolution is for spectrogram models."""
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.auralise import auralise_filter, normalise_loudness, rms_dbfs
    from musiclens.core.interpret.deconv import auralise_deconv

    if how not in ("activation", "deconv"):
        raise ParameterError(f"how must be 'activation' or 'deconv', got {how!r}")
    if how == "deconv" and model.kind == "waveform":
        raise ParameterError(
            f"deconvolution hears a filter through a spectrogram; {model.name} reads raw samples: use how='activation'"
        )
    run = auralise_filter if how == "activation" else auralise_deconv
    result = run(model, audio, layer=layer, filter=k, sample_rate=sample_rate)
    y = result.audio[0]
    level, gain = rms_dbfs(y), 0.0
    if normalise_to is not None:
        y, gain = normalise_loudness(y, target_dbfs=normalise_to)
    label = f"{layer} #{k} ({how}" + (f", {gain:+.1f} dB)" if normalise_to is not None else ")")
    seconds = len(audio) / (sample_rate or model.sample_rate)
    return Heard(
        label, y, result.sample_rate, result.mask[0].float().cpu().numpy(), start_s, start_s + seconds, level, gain
    )


def kernels(model: Any) -> dict[str, Any]:
    """Kernel statistics of the model (norms, dead kernels, batch-norm parameters)."""
    from musiclens.core.interpret.kernels import kernel_stats

    return kernel_stats(model)
