"""``musiclens auralise FILE --model M --layer L --filter K -o OUT.wav [--deconv] [--json]``.

Hear one filter: its activation (or its deconvolution) masks the recording's own STFT,
inverted with the original phase, written at the file's sample rate.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("auralise", help="hear what one filter responds to in a recording")
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    p.add_argument("--layer", required=True, help="a layer name from `musiclens layers`")
    p.add_argument("--filter", type=int, required=True, help="the filter (channel) index")
    p.add_argument(
        "--deconv", action="store_true", help="use the deconvolution to input space instead of the activation map"
    )
    add_segment_arguments(p, default_duration=30.0)
    p.add_argument("-o", "--output", required=True, help="the audio file to write (.wav/.flac)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import read_audio
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.core import analyses, audio

    m = load_model(args)
    duration = 30.0 if args.duration is None else args.duration
    y, sr = read_audio(args.file, m, offset=args.offset, duration=duration)
    # the window's "hear a filter" (core.analyses), on the file at its own rate
    res = analyses.hear_filter(
        m, y, args.layer, args.filter, how="deconv" if args.deconv else "activation", sample_rate=sr
    )
    out = audio.save(prepare_output(args.output), res.audio, res.sample_rate)
    rms_in = float(np.sqrt(np.mean(y**2)))
    rms_out = float(np.sqrt(np.mean(res.audio**2)))
    summary = {
        "model": m.name,
        "file": str(args.file),
        "layer": args.layer,
        "filter": args.filter,
        "method": "deconv" if args.deconv else "activation",
        "output": str(out),
        "sample_rate": res.sample_rate,
        "seconds": len(y) / sr,
        "rms_in": rms_in,
        "rms_out": rms_out,
        "kept_db": float(20 * np.log10(max(rms_out, 1e-12) / max(rms_in, 1e-12))),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {out}: filter {args.filter} of {args.layer!r}, {summary['seconds']:.2f} s at "
            f"{sr} Hz, {summary['kept_db']:.1f} dB relative to the input"
        )
    return 0
