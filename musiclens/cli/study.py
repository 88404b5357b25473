"""``musiclens study NAME --out REPORT_DIR [--quick] [--data DIR]``: reproduce one study.

Writes ``REPORT_DIR/report.md`` (the study's claims beside ours), the figures as PNG and
``numbers.json``. A study not built yet exits 2 saying so (issue 21).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from musiclens.cli._progress import add_quiet_argument
    from musiclens.core.analyses.studies import STUDIES

    built = [s.name for s in STUDIES.values() if s.built]
    p = subparsers.add_parser(
        "study",
        help="reproduce a study: its claims beside ours (report.md, figures, numbers.json)",
        description="Studies: "
        + "; ".join(f"{s.name}{'' if s.built else ' (not built yet)'}: {s.title}" for s in STUDIES.values()),
    )
    p.add_argument(
        "name",
        choices=list(STUDIES),
        metavar="NAME",
        help=f"the study ({', '.join(STUDIES)}); built: {', '.join(built)}",
    )
    p.add_argument("--out", required=True, help="the report folder to write (made when missing)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run (under 5 minutes on 2 CPU cores; the report says what it left out)",
    )
    p.add_argument(
        "--data",
        help="the study's data: " + "; ".join(f"{s.name}: {s.data}" for s in STUDIES.values()),
    )
    p.add_argument("--json", action="store_true", help="print the numbers as JSON on stdout")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses
    from musiclens.core.analyses.studies import run_study

    steps = run_study(args.name, args.out, quick=args.quick, data=args.data)
    shown = Progress("study", "steps", quiet=args.quiet)

    def show(step: analyses.Progress) -> None:
        if step.payload is not None:  # (steps done, steps)
            done, total = step.payload
            shown.update(done, total=total, detail=step.message)

    report = analyses.run(steps, show)
    if args.json:
        print_json(report.numbers)
    else:
        print(f"wrote {report.folder}: " + ", ".join(f.name for f in report.files))
    return 0
