"""``musiclens similarity A B --model M [--metrics ...] [--json]``: layer-wise similarity of
the feature maps of two recordings (e.g. a mix and one of its stems), one curve per metric."""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("similarity", help="layer-wise similarity of two recordings")
    p.add_argument("a", help="the reference audio file (e.g. the mix)")
    p.add_argument("b", help="the other audio file (e.g. a stem)")
    add_model_argument(p)
    p.add_argument("--metrics", default="pearson,cosine,nmse,cka",
                   help="comma-separated: pearson, cosine, nmse, cka (default all)")
    p.add_argument("--permutations", type=int, default=10,
                   help="permutations for the CKA baseline (0 = none)")
    p.add_argument("--layers", default=None, help="comma-separated layer names (default all)")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import features_at_model_rate, read_audio
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.similarity import layer_similarity
    from musiclens.core.models import registry

    if args.permutations < 0:
        raise ParameterError(f"--permutations must be non-negative, got {args.permutations}")
    m = registry.load(args.model)
    xs = []
    for path in (args.a, args.b):
        y, sr = read_audio(path, m, offset=args.offset, duration=args.duration)
        xs.append(features_at_model_rate(m, y, sr))
    metrics = [s.strip() for s in args.metrics.split(",") if s.strip()]
    layers = [s.strip() for s in args.layers.split(",")] if args.layers else None
    curve = layer_similarity(m, xs[0], xs[1], layers=layers, metrics=metrics,
                             n_permutations=args.permutations)
    result = {"model": m.name, "a": str(args.a), "b": str(args.b)} | curve.to_dict()
    if args.json:
        print_json(result)
        return 0
    keys = list(curve.values)
    width = max(len(n) for n in curve.layers)
    print(f"{'layer':<{width}}  " + "  ".join(f"{k:>12}" for k in keys))
    for j, name in enumerate(curve.layers):
        cells = [curve.values[k][0, j] for k in keys]
        print(f"{name:<{width}}  " + "  ".join(f"{v:12.4f}" for v in cells))
    return 0
