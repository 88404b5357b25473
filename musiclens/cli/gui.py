"""``musiclens gui [FILE] [--model NAME] [--demo] [--screenshot OUT.png]`` (the default command)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open the MusicLens window (the default)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a recording to open (default: the bundled demo)")
    p.add_argument("--model", default=None, help="bundled model name or model folder (default: MSD_musicnn)")
    p.add_argument("--demo", action="store_true", help="open the bundled demo recording")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="wait for the analysis, save a screenshot of the window and exit")


def run(args: argparse.Namespace) -> int:
    from musiclens.app.main import run as run_gui

    return run_gui(file=args.file, model=args.model, demo=args.demo, screenshot=args.screenshot)
