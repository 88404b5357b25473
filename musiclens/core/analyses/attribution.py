"""Attribution: any method of the method table on one input, or over a whole recording."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from musiclens.core.analyses.results import Attribution
from musiclens.core.progress import Progress


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
    runs). Yields one :class:`Progress` per patch."""
    import torch

    from musiclens.core.interpret import methods
    from musiclens.core.tagging import audio_to_patches

    meth = methods.get(method)
    patches = audio_to_patches(model, audio)  # (P, C, F, L)
    base = dict(meth.quick) if options is None else dict(options)
    maps, completeness = [], []
    for i in range(len(patches)):
        yield Progress(fraction=i / len(patches), message=f"{meth.label} for {target}: patch {i + 1}/{len(patches)}")
        x = patches[i : i + 1]
        info: dict[str, Any] = {}
        m = meth.input_map(attribute(model, x, meth.name, target, layer=layer, options=base, info=info), x.shape[-2:])
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
