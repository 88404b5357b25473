"""``musiclens cam FILE --model M [--layer L] [--target TAG] [--method ...] [-o OUT.npz] [--json]``.

A class activation map (CAM for GAP models, Grad-CAM, Grad-CAM++) of a recording for one
layer and class/tag, at the layer's resolution or upsampled to the spectrogram. Without
``--layer``: the last layer with a time-frequency output
(:func:`musiclens.core.models.discover.default_cam_layer`).
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_method_argument, add_model_argument, add_segment_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cam", help="class activation map (CAM, Grad-CAM, Grad-CAM++)")
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    p.add_argument(
        "--layer",
        default=None,
        help="a layer name from `musiclens layers` (default: the last layer with a time-frequency output)",
    )
    p.add_argument("--target", default=None, help="label name or index, or a set of tags a+b (default: the top label)")
    add_method_argument(p, default="grad-cam", needs_layer=True)  # the method table's layer methods
    p.add_argument("--relu", action="store_true", help="keep positive evidence only")
    p.add_argument("--upsample", action="store_true", help="resize the map to the spectrogram")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", default=None, help="write the map to this .npz file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def default_layer(m) -> str:
    """The layer a CAM reads when none is given; one clear line when the model has none."""
    from musiclens.core.errors import MusicLensError
    from musiclens.core.models.discover import default_cam_layer

    layer = default_cam_layer(m)
    if layer is None:
        why = m.limits.get("cam") or f"{m.name} has no layer with a time-frequency output; give --layer"
        raise MusicLensError(f"model {m.name!r}: {why}" if m.limits.get("cam") else why)
    return layer


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import features_at_model_rate, read_audio, resolve_target, target_name
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.maps import upsample

    m = load_model(args)
    if args.layer is None:
        args.layer = default_layer(m)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    x = features_at_model_rate(m, y, sr)
    target = resolve_target(m, args.target, x, allow_set=True)  # "a+b": a set of labels
    heat = analyses.attribute(m, x, args.method, target, layer=args.layer, options={"relu": args.relu})
    if args.upsample:
        heat = upsample(heat, x.shape[-2:])
    maps = heat[0].cpu().numpy().astype(np.float32)
    f, t = np.unravel_index(int(np.abs(maps).argmax()), maps.shape)
    fe = m.front_end
    summary = {
        "model": m.name,
        "file": str(args.file),
        "layer": args.layer,
        "method": args.method,
        "target": target_name(m, target),
        "shape": list(maps.shape),
        "min": float(maps.min()),
        "max": float(maps.max()),
        "peak": {"row": int(f), "frame": int(t)},
        "output": args.output,
    }
    if args.output:
        out = Path(args.output)
        if out.suffix != ".npz":
            raise ParameterError(f"the output must be a .npz file, got {out}")
        prepare_output(out)
        np.savez_compressed(
            out,
            map=maps,
            layer=np.array(args.layer),
            target=np.array(target_name(m, target)),
            method=np.array(args.method),
            model=np.array(m.name),
            frame_seconds=np.array(fe.hop / fe.sample_rate),
        )
    if args.json:
        print_json(summary)
    else:
        print(
            f"{args.method} of {target_name(m, target)!r} at {args.layer!r}: map {tuple(maps.shape)}, "
            f"range [{maps.min():.4g}, {maps.max():.4g}], peak at row {f}, frame {t}"
            + (f"; wrote {args.output}" if args.output else "")
        )
    return 0
