"""``musiclens kernels --model NAME [--json]``: kernel norms, batch-norm parameters, dead kernels."""

from __future__ import annotations

import argparse

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument  # noqa: F401


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kernels", help="Frobenius norm of every conv kernel, batch-norm parameters, dead kernels"
    )
    add_model_argument(p)
    p.add_argument(
        "--dead-tol",
        type=float,
        default=1e-3,
        help="a kernel is dead when its norm <= this × the layer's largest (default 0.001)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.core.errors import MusicLensError, ParameterError
    from musiclens.core.interpret.kernels import kernel_stats

    if not 0 <= args.dead_tol < 1:
        raise ParameterError(f"--dead-tol must be in [0, 1), got {args.dead_tol}")
    m = load_model(args)
    if "kernels" in m.limits:  # a TorchScript or exported network: say why, not "0 of 0"
        raise MusicLensError(f"model {m.name!r}: {m.limits['kernels']}")
    stats = kernel_stats(m, dead_rel_tol=args.dead_tol)
    if args.json:
        print_json(stats)
        return 0
    print(
        f"{stats['model']}: {stats['totals']['dead']} of {stats['totals']['kernels']} conv "
        f"kernels are dead (norm <= {args.dead_tol:g} × the layer's largest)"
    )
    for c in stats["conv"]:
        print(
            f"  {c['layer']:<40} {tuple(c['kernel_shape'])!s:<18} dead {c['dead']:>3}/"
            f"{c['kernel_shape'][0]:<4} norm max {c['max_norm']:.3f} median {c['median_norm']:.3f}"
        )
    for b in stats["batchnorm"]:
        beta = [abs(v) for v in b["beta"]]
        print(
            f"  {b['layer']:<40} batch norm ({len(beta)}): |beta| max {max(beta):.4f} mean {sum(beta) / len(beta):.4f}"
        )
    return 0
