"""``musiclens deconv FILE --model M --layer L --filter K -o OUT.npz|.png|.wav [--json]``.

Project one filter back to input space (deconvolution, Zeiler & Fergus 2014; Choi et al.
2016) and write it:

* ``.npz``: ``deconv`` (C, F, T) float32 (signed, input space), ``mask`` (F, T) (its
  positive part / magnitude scaled to a maximum of 1) and the settings;
* ``.png``: the deconvolution (C, F, T) as 8-bit greyscale, min..max -> 0..255, low
  frequencies at the bottom (channels side by side), like ``musiclens spectrogram``;
* ``.wav`` (or ``.flac``): the deconvolution as a mask on the recording's own STFT
  (``auralise_deconv``), at the file's sample rate.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments

AUDIO = (".wav", ".flac", ".ogg")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "deconv",
        help="deconvolve one filter back to the spectrogram",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    p.add_argument("--layer", required=True, help="a layer name from `musiclens layers`")
    p.add_argument("--filter", type=int, required=True, help="the filter (channel) index")
    p.add_argument(
        "--keep",
        choices=("all", "max"),
        default="all",
        help="keep the filter's whole map (Choi et al., default) or its strongest position",
    )
    p.add_argument(
        "--rule",
        choices=("deconvnet", "guided", "gradient"),
        default="deconvnet",
        help="how ReLUs pass the signal back (default deconvnet)",
    )
    p.add_argument("--signed", action="store_true", help="send the signed activation down (default: its positive part)")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", required=True, help="OUT.npz, OUT.png or OUT.wav")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import output_kind, peak_of, read_audio, write_png
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.core import audio
    from musiclens.core.interpret._common import to_fe_rate
    from musiclens.core.interpret.auralise import apply_mask
    from musiclens.core.interpret.deconv import deconv, deconv_mask

    kind = output_kind(args.output, (".npz", ".png") + AUDIO)
    m = load_model(args)
    fe = m.front_end
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    yy, _, _ = to_fe_rate(y, sr, fe)
    with torch.no_grad():
        x = fe(yy)
    d = deconv(m, x, layer=args.layer, filter=args.filter, keep=args.keep, rule=args.rule, positive=not args.signed)
    mask = deconv_mask(d)
    maps = d[0].cpu().numpy().astype(np.float32)
    out = Path(args.output)
    summary = {
        "model": m.name,
        "file": str(args.file),
        "layer": args.layer,
        "filter": args.filter,
        "keep": args.keep,
        "rule": args.rule,
        "shape": list(maps.shape),
        "min": float(maps.min()),
        "max": float(maps.max()),
        "peak": peak_of(maps, fe),
        "output": str(out),
    }
    if float(np.abs(maps).max()) == 0.0:
        summary["note"] = "the filter is silent on this input: the deconvolution is all zeros"
    if kind == ".npz":
        prepare_output(out)
        np.savez_compressed(
            out,
            deconv=maps,
            mask=mask[0].cpu().numpy().astype(np.float32),
            layer=np.array(args.layer),
            filter=np.array(args.filter),
            keep=np.array(args.keep),
            rule=np.array(args.rule),
            model=np.array(m.name),
            frame_seconds=np.array(fe.hop / fe.sample_rate),
            bin_hz=np.asarray(fe.bin_frequencies(), dtype=np.float32),
        )
    elif kind == ".png":
        write_png(str(out), maps)
    else:
        res = apply_mask(y, mask, fe, sample_rate=sr)
        out = audio.save(prepare_output(out), res.audio[0], res.sample_rate)
        rms_in = float(np.sqrt(np.mean(y**2)))
        rms_out = float(np.sqrt(np.mean(res.audio[0] ** 2)))
        summary |= {
            "output": str(out),
            "sample_rate": res.sample_rate,
            "seconds": len(y) / sr,
            "kept_db": float(20 * np.log10(max(rms_out, 1e-12) / max(rms_in, 1e-12))),
        }
    if args.json:
        print_json(summary)
    else:
        pk = summary["peak"]
        print(
            f"deconvolution of filter {args.filter} of {args.layer!r}: {tuple(maps.shape)}, "
            f"range [{maps.min():.4g}, {maps.max():.4g}], peak at {pk['hz']:.0f} Hz, "
            f"{pk['seconds']:.2f} s; wrote {out}"
        )
    return 0
