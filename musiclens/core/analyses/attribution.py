"""Attribution: any method of the method table on one input, or over a whole recording."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from musiclens.core.analyses.results import Attribution
from musiclens.core.progress import Progress


@dataclass
class WaveformAttribution(Attribution):
    """An attribution over the samples of a raw-waveform model's recording: ``values`` is
    (S_total,) one value per sample at ``sample_rate`` (the patches' curves joined), drawn
    as a curve under the spectrogram on the same time axis (:attr:`times_s`)."""

    sample_rate: int = 0  # Hz

    @property
    def times_s(self) -> np.ndarray:
        """(S_total,) the time of each value in seconds (``start_s`` + sample / rate)."""
        t: np.ndarray = self.start_s + np.arange(len(self.values)) / float(self.sample_rate)
        return t


def attribute(
    model: Any,
    x: Any,
    method: str,
    target: int | str,
    *,
    layer: str | None = None,
    options: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> Any:
    """``method`` (any name or old spelling of the method table) for class ``target`` on the
    front-end input ``x`` (N, C, F, T) -> the method's map as a tensor: (N, C, F, T) for input
    methods, (N, F_l, T_l) for layer methods. ``options``: the method's keywords (those it
    does not take are dropped); ``info`` collects what it reports (IG's completeness)."""
    from musiclens.core.interpret import methods

    meth = methods.get(method)
    opts = dict(options or {})
    if info is not None:
        opts["info"] = info
    return meth(model, x, target=target, layer=layer, **meth.supported(opts))


def attribution_over_file(
    model: Any,
    audio: np.ndarray,
    method: str,
    target: int | str,
    *,
    layer: str | None = None,
    options: dict[str, Any] | None = None,
) -> Generator[Progress, None, Attribution]:
    """``method`` for ``target`` on every patch of ``audio`` ((samples,) at the model's rate,
    non-overlapping patches, the partial last one dropped), each map brought to the input's
    resolution and joined along time -> :class:`Attribution` (F, P × patch frames).

    ``options``: the method's keywords; default the table's ``quick`` options (what the window
    runs). Yields one :class:`Progress` per patch.

    Raw-waveform models: patches of ``patch_samples`` samples, each method's result brought
    to one value per sample (input methods: summed over the input's one channel, or its
    magnitude for ``shown_as="abs"``; layer methods: the layer's curve interpolated
    linearly) and joined -> :class:`WaveformAttribution` (S_total,)."""
    import torch

    from musiclens.core.interpret import methods
    from musiclens.core.tagging import audio_to_patches

    meth = methods.get(method)
    base = dict(meth.quick) if options is None else dict(options)
    if model.kind == "waveform":
        return (yield from _over_waveform(model, audio, meth, target, layer, base))
    from musiclens.core.interpret.integrated_gradients_split import FrontCache

    patches = audio_to_patches(model, audio)  # (P, C, F, L)
    maps, completeness = [], []
    cache = FrontCache()  # IG's baseline front: computed once for all the patches
    for i in range(len(patches)):
        yield Progress(fraction=i / len(patches), message=f"{meth.label} for {target}: patch {i + 1}/{len(patches)}")
        x = patches[i : i + 1]
        info: dict[str, Any] = {}
        with cache.active():
            r = attribute(model, x, meth.name, target, layer=layer, options=base, info=info)
        m = meth.input_map(r, x.shape[-2:])
        if "completeness_error" in info:
            completeness.append(float(info["completeness_error"].abs().max()))
        maps.append(m[0].detach().float().cpu())
    joined = torch.cat(maps, dim=-1).numpy()
    note = f"; completeness error ≤ {max(completeness):.3g}" if completeness else ""
    return Attribution(
        meth.name,
        str(target),
        layer if meth.needs_layer else None,
        joined,
        0.0,
        len(patches) * model.patch_seconds,
        signed=meth.shown_signed,
        note=note,
    )


def _over_waveform(
    model: Any, audio: np.ndarray, meth: Any, target: int | str, layer: str | None, options: dict[str, Any]
) -> Generator[Progress, None, WaveformAttribution]:
    """:func:`attribution_over_file` for a raw-waveform model (non-overlapping patches of
    ``patch_samples``, the partial last one dropped)."""
    import torch

    from musiclens.core.audio import patch_starts
    from musiclens.core.errors import ParameterError

    n, rate = model.patch_samples, model.sample_rate
    y = model.tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
    starts = patch_starts(int(y.shape[0]), n, n)
    if not starts:
        raise ParameterError(
            f"the audio is {y.shape[0] / rate:.3f} s long; {model.name} needs at least one patch of "
            f"{n} samples ({n / rate:.3f} s)"
        )
    curves, completeness = [], []
    for i, a in enumerate(starts):
        yield Progress(fraction=i / len(starts), message=f"{meth.label} for {target}: patch {i + 1}/{len(starts)}")
        x = model.input(y[a : a + n][None])  # (1, 1, S)
        info: dict[str, Any] = {}
        r = attribute(model, x, meth.name, target, layer=layer, options=options, info=info)
        if "completeness_error" in info:
            completeness.append(float(info["completeness_error"].abs().max()))
        if meth.needs_layer:  # the layer's curve over time, one value per sample
            c = r.detach().float()[0].squeeze()  # (T_l,): 1-D layers, or a unit axis dropped
            if c.dim() != 1:
                raise ParameterError(f"{meth.name} at {layer} gave a {tuple(r.shape)} map, not a curve over time")
            curve = torch.nn.functional.interpolate(c[None, None], size=n, mode="linear", align_corners=False)[0, 0]
        else:
            curve = meth.input_map(r, x.shape[-2:])[0].reshape(-1)  # (S,)
        if curve.shape[0] != n:
            raise ParameterError(f"{meth.name} returned {tuple(r.shape)} for a patch of {n} samples")
        curves.append(curve.detach().float().cpu())
    note = f"; completeness error ≤ {max(completeness):.3g}" if completeness else ""
    return WaveformAttribution(
        meth.name,
        str(target),
        layer if meth.needs_layer else None,
        torch.cat(curves).numpy(),
        0.0,
        len(starts) * n / rate,
        signed=meth.shown_signed,
        note=note,
        sample_rate=int(rate),
    )
