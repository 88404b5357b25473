"""``musiclens spectrogram FILE --frontend KIND -o OUT.(png|npy)``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FRONTENDS = ("logmel", "stft", "stft_real", "magnitude", "musicnn")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spectrogram",
        help="compute a front end's spectrogram and save it as PNG or NumPy",
        description="PNG: 8-bit greyscale scaled to [0, 255], low frequencies at the bottom "
        "(for 'stft' the two channels real | imag side by side). NPY: the float32 array "
        "(C, F, T).",
    )
    p.add_argument("file", help="an audio file")
    p.add_argument("--frontend", choices=FRONTENDS, default="logmel")
    p.add_argument("--sr", type=int, default=None, help="sample rate in Hz (default: the front end's)")
    p.add_argument("--offset", type=float, default=0.0, help="start, seconds")
    p.add_argument("--duration", type=float, default=None, help="length, seconds")
    p.add_argument("-o", "--output", required=True, help="OUT.png or OUT.npy")
    p.set_defaults(func=run)


def to_grey_image(spec: np.ndarray) -> np.ndarray:
    """(C, F, T) float -> (F, C·T) uint8, min..max -> 0..255, row 0 = highest frequency."""
    panel = np.concatenate(list(spec), axis=-1) if spec.ndim == 3 else spec
    lo, hi = float(np.min(panel)), float(np.max(panel))
    scaled = (panel - lo) / (hi - lo) if hi > lo else np.zeros_like(panel)
    return np.flipud(np.round(scaled * 255.0).astype(np.uint8))


def run(args: argparse.Namespace) -> int:
    from musiclens.core.audio import load
    from musiclens.core.errors import ParameterError
    from musiclens.core.features import frontend_by_name

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".npy"):
        raise ParameterError(f"output must end in .png or .npy, got {out.name!r}")
    fe = frontend_by_name(args.frontend)
    if args.sr:
        fe = fe.replace(sample_rate=args.sr)
    audio, _ = load(args.file, sr=fe.sample_rate, offset=args.offset, duration=args.duration)
    spec = fe.compute(audio)
    from musiclens.cli._output import prepare_output

    prepare_output(out)
    if out.suffix.lower() == ".npy":
        np.save(out, spec.astype(np.float32))
    else:
        from PIL import Image

        Image.fromarray(to_grey_image(spec), mode="L").save(out)
    return 0
