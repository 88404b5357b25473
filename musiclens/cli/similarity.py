"""``musiclens similarity --model M FILE... [--pairs all|within-class --labels-from-folders]
[--metrics ...] [--json]``: layer-wise similarity of the feature maps of recordings.

Every file is run through the model once; pairs of files are compared layer by layer
(Pearson, cosine, nMSE ``‖A−B‖²/‖A‖²``, ``mse_max`` = MSE normalised per pair to its
maximum, linear CKA and debiased CKA, each CKA with its permutation baseline: the exact mean
over all permutations of the positions), and the MEAN over the pairs is printed per layer
(one curve per metric).

* ``--pairs all`` (default): every pair of the given files (two files: the one pair, the
  first being the reference for nMSE, e.g. a mix and one of its stems).
* ``--pairs within-class --labels-from-folders``: the class of a file is the name of its
  parent folder; every pair of files of the same class, giving a curve per class and the
  mean over all within-class pairs.

A directory among FILE... stands for the audio files under it.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments
from musiclens.cli._progress import add_quiet_argument

DEFAULT_METRICS = "pearson,cosine,nmse,mse_max,cka,cka_debiased"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aif", ".aiff", ".m4a")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "similarity",
        help="layer-wise similarity of recordings (mean over pairs)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="two or more audio files (or folders of them)")
    add_model_argument(p)
    p.add_argument(
        "--pairs", choices=("all", "within-class"), default="all", help="which pairs to compare (default all)"
    )
    p.add_argument(
        "--labels-from-folders",
        action="store_true",
        help="a file's class is its parent folder's name (needed for --pairs within-class)",
    )
    p.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated: pearson, cosine, nmse, mse_max, cka, cka_debiased (default {DEFAULT_METRICS})",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the CKA permutation baselines (by default the exact mean over all permutations)",
    )
    p.add_argument("--layers", default=None, help="comma-separated layer names (default all)")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def expand(paths: list[str]) -> list[str]:
    """Files stay; a directory becomes its audio files (recursive, sorted)."""
    from pathlib import Path

    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += [str(f) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES]
        else:
            out.append(p)
    return out


def _listed(curves: dict) -> dict[str, list[float | None]]:
    """metric -> (L,) array -> metric -> JSON list (None where NaN)."""
    import numpy as np

    return {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in curves.items()}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError

    if args.pairs == "within-class" and not args.labels_from_folders:
        raise ParameterError("--pairs within-class needs the classes: add --labels-from-folders")
    files = expand(args.files)
    if len(files) < 2:
        raise ParameterError(f"need at least two audio files to compare, got {len(files)}")
    labels = [Path(f).resolve().parent.name for f in files] if args.labels_from_folders else None
    metrics = [s.strip() for s in args.metrics.split(",") if s.strip()]
    layers = [s.strip() for s in args.layers.split(",")] if args.layers else None
    m = load_model(args)
    reading = Progress("similarity", "files read", quiet=args.quiet)
    comparing = Progress("similarity", "comparisons", quiet=args.quiet)
    n_pairs = [1]

    def show(step) -> None:  # the use case's steps: ("read", files read, files) then ("pairs", n, n)
        stage, done, total = step.payload or ("", 0, 0)
        if stage == "read" and done:
            reading.update(done, total=total)
        elif stage == "pairs":
            n_pairs[0] = max(1, total)

    def compared(done: int, total: int) -> None:
        n = n_pairs[0]
        comparing.update(done, total=total, detail=f"{n} pair{'s' if n != 1 else ''} x {total // n} layers")

    # the same use case as the window's class similarity (core.analyses)
    curve = analyses.run(
        analyses.similarity_of_files(
            m,
            files,
            labels=labels,
            within_class=args.pairs == "within-class",
            metrics=metrics,
            baseline=not args.no_baseline,
            layers=layers,
            offset=args.offset,
            duration=args.duration,
            on_compare=compared,
        ),
        show,
    )
    pairs, groups = curve.pairs, curve.groups
    result: dict = {"model": m.name, "files": files, "pairs": args.pairs, "n_pairs": len(pairs)}
    if len(files) == 2:
        result |= {"a": files[0], "b": files[1]}
    if labels is not None:
        result["labels"] = labels
    result["layers"] = list(curve.layers)
    result |= _listed(curve.mean())
    if groups and labels is not None:  # groups come from the labels
        result["classes"] = {
            label: {"n_files": sum(1 for lab in labels if lab == label), "n_pairs": len(ps)}
            | _listed(curve.mean(label))
            for label, ps in groups.items()
        }
    if args.json:
        print_json(result)
        return 0
    keys = list(curve.values)
    width = max(len(n) for n in curve.layers)

    def table(title: str, curves: dict) -> None:
        print(title)
        print(f"{'layer':<{width}}  " + "  ".join(f"{k:>12}" for k in keys))
        for j, name in enumerate(curve.layers):
            cells = ["         nan" if curves[k][j] is None else f"{curves[k][j]:12.4f}" for k in keys]
            print(f"{name:<{width}}  " + "  ".join(cells))

    for label, res in result.get("classes", {}).items():
        table(f"class {label!r}: mean over {res['n_pairs']} pairs of {res['n_files']} files", res)
        print()
    table(f"mean over {len(pairs)} {'within-class ' if groups else ''}pair{'s' if len(pairs) > 1 else ''}", result)
    return 0
