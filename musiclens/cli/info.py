"""``musiclens info FILE [--json]``: what an audio file holds, read from its header."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="duration, sample rate and channels of an audio file")
    p.add_argument("file", help="an audio file (wav, flac, ogg, mp3, aiff)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from musiclens.cli import print_json
    from musiclens.core.audio import info

    meta = info(args.file)
    summary = {
        "duration_s": round(meta.duration_s, 6),
        "sample_rate": meta.sample_rate,
        "channels": meta.channels,
        "frames": meta.frames,
    }
    if meta.warning:  # an implausible header: said on stderr, kept in the JSON
        print(f"info: warning: {meta.warning}", file=sys.stderr)
    if args.json:
        print_json(
            summary
            | {"format": meta.format, "subtype": meta.subtype, "plausible": meta.plausible, "warning": meta.warning}
        )
    else:
        print(
            f"{meta.path}: {meta.duration_s:.3f} s, {meta.sample_rate} Hz, "
            f"{meta.channels} channel(s), {meta.frames} frames, {meta.format}/{meta.subtype}"
        )
    return 0
