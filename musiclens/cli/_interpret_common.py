"""Helpers shared by the interpretation commands (cam, auralise, dream, similarity, sanity, faithfulness)."""

from __future__ import annotations

import argparse
from typing import Any

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument, load_model  # noqa: F401  (one place)


def add_method_argument(
    p: argparse.ArgumentParser,
    *,
    default: str,
    needs_layer: bool | None = None,
    kind: str | tuple[str, ...] = "audio",
) -> list[str]:
    """``--method`` with the method table's names (for ``kind`` — one input kind or several,
    e.g. ``("audio", "midi")`` for a command that reads both — with or without a layer) as
    its choices, in table order; old spellings (``gradcam``, ``ig``, ...) are turned into the
    canonical name. The help says which kinds each method is for when there are several.
    Returns the choices."""
    from musiclens.core.errors import MusicLensError
    from musiclens.core.interpret import methods

    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    wanted = {name for k in kinds for name in methods.names(kind=k, needs_layer=needs_layer)}
    chosen = [m for m in methods.METHODS if m.name in wanted]
    choices = [m.name for m in chosen]

    def method_name(text: str) -> str:
        try:
            return methods.get(text, among=choices).name
        except MusicLensError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    method_name.__name__ = "method"
    olds = [a for m in chosen for a in m.aliases]

    def for_kinds(m) -> str:
        own = [k for k in kinds if m.supports(k)]
        return f" [{', '.join(own)}]" if len(kinds) > 1 else ""

    p.add_argument(
        "--method",
        type=method_name,
        choices=choices,
        default=default,
        help="; ".join(f"{m.name}{for_kinds(m)}: {m.description}" for m in chosen)
        + (f" (old spellings {', '.join(olds)} work too)" if olds else ""),
    )
    return choices


def add_method_list_argument(
    p: argparse.ArgumentParser, flag: str, *, default: str, control: str | None = None
) -> None:
    """``flag`` (``--methods``, ``--method``): a comma-separated list of the method table's
    audio methods (old spellings too), and ``control`` (a name that is no method) besides;
    read it with :func:`parse_method_list`."""
    from musiclens.core.interpret import methods

    names = ", ".join(methods.names(kind="audio"))
    extra = f", {control} (a control)" if control else ""
    p.add_argument(
        flag,
        default=default,
        help=f"comma-separated: {names}{extra}; old spellings (grad, ig, grad_cam, ...) work too (default {default})",
    )


def parse_method_list(text: str, flag: str, *, control: str | None = None) -> list[tuple[str, Any]]:
    """``"grad,ig"`` -> [(the name as typed, its :class:`~musiclens.core.interpret.methods.Method`
    (old spellings resolved) or None for ``control``)], in the order typed. One clear error for
    an empty list or a name that is no audio method of the table (nor ``control``)."""
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret import methods

    among = methods.names(kind="audio")
    extra = f", {control} (a control)" if control else ""
    typed = [s.strip() for s in text.split(",") if s.strip()]
    if not typed:
        raise ParameterError(f"{flag} is empty; choose from {', '.join(among)}{extra}")
    try:
        return [(n, None if control and n.lower() == control else methods.get(n, among=among)) for n in typed]
    except ParameterError as e:
        raise ParameterError(f"{e}; or {control} (a control)" if control else str(e)) from None


def add_segment_arguments(p: argparse.ArgumentParser, *, default_duration: float | None) -> None:
    p.add_argument("--offset", type=float, default=0.0, help="start reading at this time (s)")
    what = "one model patch" if default_duration is None else f"{default_duration} s"
    p.add_argument("--duration", type=float, default=None, help=f"seconds to read (default {what}; 0 = the whole file)")


def read_audio(path: str, m: Any, *, offset: float, duration: float | None) -> tuple[Any, int]:
    """The span a command reads: :func:`musiclens.core.analyses.recording.read_span`."""
    from musiclens.core.analyses.recording import read_span

    return read_span(path, m, offset=offset, duration=duration)


def features_at_model_rate(m, y, sr: int):
    """(samples,) at ``sr`` -> front-end output (1, C, F, T)."""
    import torch

    from musiclens.core.interpret._common import to_fe_rate

    yy, _, _ = to_fe_rate(y, sr, m.front_end, device=m.device)
    with torch.no_grad():
        return m.front_end(yy)


def resolve_target(m, target: str | None, x, *, allow_set: bool = False) -> int | str:
    """A label name or index; None = the model's top label on ``x``.

    ``allow_set``: ``"a+b"`` (names or indices joined by ``+``) is a set of labels attributed
    at once (the sum of their scores); returned as the label names joined by ``+`` (an int
    for one label). Without it, a set raises one clear error."""
    import torch

    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret._common import target_index

    def one(text: str) -> int:
        text = text.strip()
        return target_index(m, int(text) if text.lstrip("-").isdigit() else text)

    if target is None:
        with torch.no_grad():
            return int(m.probabilities(m.net(x)).mean(0).argmax())
    if "+" in target.strip("+") and target not in m.labels:
        idx = list(dict.fromkeys(one(t) for t in target.split("+")))  # the user's order, once each
        if len(idx) > 1 and not allow_set:
            raise ParameterError(f"this command takes one label, got the set {target!r}")
        return "+".join(m.labels[i] for i in idx) if len(idx) > 1 else idx[0]
    return one(target)


def target_name(m, target: int | str) -> str:
    """The label of a resolved target (``"a+b"`` for a set)."""
    return m.labels[target] if isinstance(target, int) else str(target)


def output_kind(path: str | None, allowed: tuple[str, ...]) -> str | None:
    """The lower-case suffix of ``path`` ('.npz', '.png', ...) if it is one of ``allowed``."""
    from pathlib import Path

    from musiclens.core.errors import ParameterError

    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ParameterError(f"the output must end in {', '.join(allowed)}; got {Path(path).name!r}")
    return suffix


def write_png(path: str, spec) -> None:
    """(C, F, T) or (F, T) float -> 8-bit greyscale PNG, min..max -> 0..255, low frequencies
    at the bottom (channels side by side), as ``musiclens spectrogram`` writes."""
    import numpy as np
    from PIL import Image

    from musiclens.cli._output import prepare_output
    from musiclens.cli.spectrogram import to_grey_image

    out = prepare_output(path)
    Image.fromarray(to_grey_image(np.asarray(spec, dtype=np.float64)), mode="L").save(out)


def peak_of(maps, fe) -> dict:
    """Where |maps| (C, F, T) or (F, T) is largest: row, frame, time (s) and channel."""
    import numpy as np

    arr = np.asarray(maps)
    idx = np.unravel_index(int(np.abs(arr).argmax()), arr.shape)
    row, frame = int(idx[-2]), int(idx[-1])
    out = {"row": row, "frame": frame, "seconds": fe.frames_to_seconds(frame)}
    if arr.ndim == 3:
        out["channel"] = int(idx[0])
    out["hz"] = float(fe.bin_frequencies()[row])
    return out
