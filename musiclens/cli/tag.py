"""``musiclens tag FILE --model NAME [--json]``: taggram (per 3 s patch) and top tags."""

from __future__ import annotations

import argparse

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument  # noqa: F401


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tag", help="tag an audio file (taggram per patch and top tags)")
    p.add_argument("file", help="an audio file (wav, flac, ogg, mp3, aiff)")
    add_model_argument(p)
    p.add_argument(
        "--top", type=int, default=None, help="number of top tags to list (default: 10 in text, all in JSON)"
    )
    p.add_argument(
        "--hop", type=int, default=None, help="frames between patch starts (default: the patch length, no overlap)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError

    if args.top is not None and args.top <= 0:
        raise ParameterError(f"--top must be positive, got {args.top}")
    if args.hop is not None and args.hop <= 0:
        raise ParameterError(f"--hop must be a positive number of frames, got {args.hop}")
    m = load_model(args)
    tg = analyses.predict_file(m, args.file, hop=args.hop)  # the window's predict (core.analyses)
    if args.json:
        print_json({"model": m.name, "file": str(args.file)} | tg.to_dict(top=args.top))
        return 0
    n = args.top or 10
    print(
        f"{args.file}: {len(tg.probabilities)} patches of {tg.patch_seconds:.2f} s, "
        f"{m.name}, top {n} tags (mean probability over patches):"
    )
    for tag, p in tg.ranked(n):
        print(f"  {p:6.3f}  {tag}")
    return 0
