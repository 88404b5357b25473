"""``musiclens saliency FILE --model M --method METHOD --target CLASS [-o OUT.npz|.png] [--json]``.

Input attribution of one class/tag on the spectrogram, by any input-resolution method of the
method table (the plain gradient, gradient × input, SmoothGrad, Integrated Gradients, ...).
A MIDI file gets the MIDI model's per-note saliency (its methods are marked [midi]; the
default ``gradient`` is note presence on a whole-piece model that reads note statistics).
Integrated Gradients reports its completeness error: Σ attributions − (score − baseline
score), which should be near 0.

* ``.npz``: ``attribution`` (C, F, T) float32, signed, plus the settings (and for IG the
  scores and the completeness error);
* ``.png``: ``|attribution|`` (C, F, T) as 8-bit greyscale, min..max -> 0..255, low
  frequencies at the bottom, like ``musiclens spectrogram``.
"""

from __future__ import annotations

import argparse
from typing import Any

from musiclens.cli._interpret_common import add_method_argument, add_model_argument, add_segment_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "saliency",
        help="input attribution (gradient, SmoothGrad, Integrated Gradients, ...)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file, or a MIDI file (.mid: a MIDI model, per-note saliency)")
    add_model_argument(p)
    # the method table's input methods, audio and MIDI (a MIDI file gets the MIDI ones; "gradient"
    # on a whole-piece model with note statistics is its note presence: analyses.midi.saliency_method)
    add_method_argument(p, default="gradient", needs_layer=False, kind=("audio", "midi"))
    p.add_argument("--target", default=None, help="label name or index, or a set of tags a+b (default: the top label)")
    p.add_argument(
        "--output-score",
        choices=("logit", "probability"),
        default="logit",
        help="attribute the logit (default) or the probability",
    )
    p.add_argument(
        "--times-input", action="store_true", help="gradient: gradient × input (the same as --method gradient-x-input)"
    )
    p.add_argument("--samples", type=int, default=25, help="smoothgrad: noisy copies (default 25)")
    p.add_argument(
        "--noise",
        type=float,
        default=0.15,
        help="smoothgrad: noise σ as a fraction of the input's range (default 0.15)",
    )
    p.add_argument("--steps", type=int, default=32, help="ig: points on the path (default 32)")
    p.add_argument(
        "--baseline", default="silence", help="ig: 'silence' (default), 'zeros', 'min' or a number (front-end units)"
    )
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", default=None, help="OUT.npz or OUT.png")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _baseline(text: str):
    try:
        return float(text)
    except ValueError:
        return text  # checked by saliency.baseline_tensor


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import _midi

    if _midi.is_midi_file(args.file):  # a MIDI file: the MIDI model's saliency (same command, both kinds)
        return _midi.saliency(args)
    from pathlib import Path

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import (
        features_at_model_rate,
        output_kind,
        peak_of,
        read_audio,
        resolve_target,
        target_name,
        write_png,
    )
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret import methods

    kind = output_kind(args.output, (".npz", ".png"))
    method = methods.get("gradient-x-input" if args.method == "gradient" and args.times_input else args.method)
    if not method.supports("audio"):
        raise ParameterError(
            f"--method {method.name} is for MIDI files; for audio: "
            + ", ".join(methods.names(kind="audio", needs_layer=False))
        )
    m = load_model(args)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    x = features_at_model_rate(m, y, sr)
    target = resolve_target(m, args.target, x, allow_set=True)  # "a+b": a set of labels
    info: dict = {}  # diagnostics the method reports (Integrated Gradients: its completeness)
    options = {
        "output": args.output_score,
        "n_samples": args.samples,
        "noise_level": args.noise,
        "steps": args.steps,
        "baseline": _baseline(args.baseline),
    }
    attr = analyses.attribute(m, x, method.name, target, options=options, info=info)
    maps = attr[0].detach().cpu().numpy().astype(np.float32)
    summary = {
        "model": m.name,
        "file": str(args.file),
        "method": method.name,
        "target": target_name(m, target),
        "score": args.output_score,
        "shape": list(maps.shape),
        "min": float(maps.min()),
        "max": float(maps.max()),
        "sum": float(maps.astype(np.float64).sum()),
        "peak": peak_of(maps, m.front_end),
        "output": args.output,
    }
    extra = {}
    if info:  # under the method's name, e.g. "integrated_gradients"
        extra = {k: (float(v.reshape(-1)[0]) if hasattr(v, "reshape") else v) for k, v in info.items()}
        if "baseline" in method.options:
            extra["baseline"] = args.baseline
        summary[method.name.replace("-", "_")] = extra
    if kind == ".npz":
        out = Path(args.output)
        prepare_output(out)
        # dict[str, Any]: numpy's savez_compressed stub matches **dict values against allow_pickle: bool too
        arrays: dict[str, Any] = {k: np.array(v) for k, v in extra.items()}
        np.savez_compressed(
            out,
            attribution=maps,
            method=np.array(method.name),
            target=np.array(target_name(m, target)),
            model=np.array(m.name),
            frame_seconds=np.array(m.front_end.hop / m.front_end.sample_rate),
            **arrays,
        )
    elif kind == ".png":
        write_png(args.output, np.abs(maps))
    if args.json:
        print_json(summary)
    else:
        pk = summary["peak"]
        print(
            f"{method.name} saliency of {target_name(m, target)!r}: {tuple(maps.shape)}, range "
            f"[{maps.min():.4g}, {maps.max():.4g}], peak at {pk['hz']:.0f} Hz, {pk['seconds']:.2f} s"
            + (f"; wrote {args.output}" if args.output else "")
        )
        if "completeness_error" in extra:
            print(
                f"completeness: sum of attributions {summary['sum']:.4g} vs score difference "
                f"{extra['score_at_input'] - extra['score_at_baseline']:.4g}: error "
                f"{extra['completeness_error']:.3g} ({100 * extra['relative_error']:.2f} %)"
            )
    return 0
