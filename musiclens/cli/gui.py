"""``musiclens gui [FILE] [--model NAME] [--device auto|cpu|cuda] [--demo] [--screenshot OUT.png]
[--geometry WxH]`` (the default command)."""

from __future__ import annotations

import argparse
import re

GEOMETRY_LIMITS = ((320, 240), (16384, 16384))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open the MusicLens window (the default)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a recording to open (default: the bundled demo)")
    from musiclens.core.resources import DEFAULT_MODEL

    p.add_argument("--model", default=None, help=f"bundled model name or model folder (default: {DEFAULT_MODEL})")
    from musiclens.core.device import DEVICE_CHOICES  # torch-free

    p.add_argument(
        "--device",
        default=None,
        choices=DEVICE_CHOICES,
        help="where the model runs: auto = the GPU when one is present (default: the "
        "window's Model > Device setting, auto at first)",
    )
    p.add_argument("--demo", action="store_true", help="open the bundled demo recording")
    p.add_argument(
        "--screenshot", metavar="OUT.png", help="wait for the analysis, save a screenshot of the window and exit"
    )
    p.add_argument(
        "--geometry",
        metavar="WxH",
        help="the window's size in pixels, e.g. 1280x800 (a --screenshot is exactly that size)",
    )


def parse_geometry(text: str) -> tuple[int, int]:
    """``"1280x800"`` -> (1280, 800); a MusicLensError that says what is allowed otherwise."""
    from musiclens.core.errors import MusicLensError

    (w_min, h_min), (w_max, h_max) = GEOMETRY_LIMITS
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if m is None:
        raise MusicLensError(f"--geometry {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1280x800")
    w, h = int(m.group(1)), int(m.group(2))
    if not (w_min <= w <= w_max and h_min <= h <= h_max):
        raise MusicLensError(f"--geometry {text!r}: the size must be from {w_min}x{h_min} to {w_max}x{h_max}")
    return w, h


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import fail
    from musiclens.core.errors import MusicLensError

    try:
        geometry = parse_geometry(args.geometry) if getattr(args, "geometry", None) else None
        device = getattr(args, "device", None)
        if device == "cuda":  # like every command: no GPU is one line, before any window opens
            from musiclens.core.device import resolve_device

            resolve_device(device)
        if getattr(args, "screenshot", None):  # the output rule of every command
            from musiclens.cli._output import prepare_output

            prepare_output(args.screenshot)
        from musiclens.app.preflight import xcb_problem  # no Qt: a missing xcb library aborts Qt

        if problem := xcb_problem():
            return fail(problem)
        from musiclens.app.main import run as run_gui

        return run_gui(
            file=args.file,
            model=args.model,
            demo=args.demo,
            screenshot=args.screenshot,
            geometry=geometry,
            device=device,
        )
    except MusicLensError as exc:  # also when no sub-command was given (outside cli.main's handler)
        return fail(str(exc))
