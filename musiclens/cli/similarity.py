"""``musiclens similarity --model M FILE... [--pairs all|within-class --labels-from-folders]
[--metrics ...] [--json]``: layer-wise similarity of the feature maps of recordings.

Every file is run through the model once; pairs of files are compared layer by layer
(Pearson, cosine, nMSE ``‖A−B‖²/‖A‖²``, ``mse_max`` = MSE normalised per pair to its
maximum, linear CKA and debiased CKA, each CKA with a permutation baseline), and the MEAN
over the pairs is printed per layer (one curve per metric).

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
    p = subparsers.add_parser("similarity", help="layer-wise similarity of recordings (mean over pairs)",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="two or more audio files (or folders of them)")
    add_model_argument(p)
    p.add_argument("--pairs", choices=("all", "within-class"), default="all",
                   help="which pairs to compare (default all)")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="a file's class is its parent folder's name (needed for --pairs within-class)")
    p.add_argument("--metrics", default=DEFAULT_METRICS,
                   help=f"comma-separated: pearson, cosine, nmse, mse_max, cka, cka_debiased "
                        f"(default {DEFAULT_METRICS})")
    p.add_argument("--permutations", type=int, default=10,
                   help="permutations for the CKA baselines (0 = none)")
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
            out += [str(f) for f in sorted(path.rglob("*"))
                    if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES]
        else:
            out.append(p)
    return out


def _mean_curves(values: dict, rows) -> dict[str, list[float | None]]:
    import warnings

    import numpy as np

    out = {}
    for k, v in values.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (dense CKA)
            mean = np.nanmean(v[rows], axis=0)
        out[k] = [None if not np.isfinite(x) else float(x) for x in mean]
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import features_at_model_rate, read_audio
    from musiclens.cli._progress import Progress
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.similarity import all_pairs, class_pairs, pairwise_similarity
    from musiclens.core.models import registry

    if args.permutations < 0:
        raise ParameterError(f"--permutations must be non-negative, got {args.permutations}")
    if args.pairs == "within-class" and not args.labels_from_folders:
        raise ParameterError("--pairs within-class needs the classes: add --labels-from-folders")
    files = expand(args.files)
    if len(files) < 2:
        raise ParameterError(f"need at least two audio files to compare, got {len(files)}")
    labels = [Path(f).resolve().parent.name for f in files] if args.labels_from_folders else None
    if args.pairs == "within-class":
        groups = class_pairs(labels)
        if not groups:
            raise ParameterError("no class has two files: nothing to compare within a class")
        pairs = [p for ps in groups.values() for p in ps]
    else:
        groups = {}
        pairs = all_pairs(len(files))
    metrics = [s.strip() for s in args.metrics.split(",") if s.strip()]
    layers = [s.strip() for s in args.layers.split(",")] if args.layers else None
    m = registry.load(args.model, device=args.device)
    used = sorted({i for p in pairs for i in p})
    xs: list = [None] * len(files)
    reading = Progress("similarity", "files read", total=len(used), quiet=args.quiet)
    for k, i in enumerate(used, start=1):
        y, sr = read_audio(files[i], m, offset=args.offset, duration=args.duration)
        xs[i] = features_at_model_rate(m, y, sr)
        reading.update(k)
    comparing = Progress("similarity", "comparisons", quiet=args.quiet)
    # only the files in some pair are run; renumber the pairs to the compact list
    pos = {i: k for k, i in enumerate(used)}
    curve = pairwise_similarity(m, [xs[i] for i in used], [(pos[a], pos[b]) for a, b in pairs],
                                layers=layers, metrics=metrics, n_permutations=args.permutations,
                                progress=lambda done, total: comparing.update(
                                    done, total=total, detail=f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''} x {total // len(pairs)} layers"))
    result: dict = {"model": m.name, "files": files, "pairs": args.pairs, "n_pairs": len(pairs)}
    if len(files) == 2:
        result |= {"a": files[0], "b": files[1]}
    if labels is not None:
        result["labels"] = labels
    result["layers"] = list(curve.layers)
    result |= _mean_curves(curve.values, slice(None))
    if groups:
        result["classes"] = {}
        start = 0
        for label, ps in groups.items():
            rows = slice(start, start + len(ps))
            result["classes"][label] = {"n_files": sum(1 for lab in labels if lab == label),
                                        "n_pairs": len(ps)} | _mean_curves(curve.values, rows)
            start += len(ps)
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
    table(f"mean over {len(pairs)} {'within-class ' if groups else ''}pair{'s' if len(pairs) > 1 else ''}",
          result)
    return 0
