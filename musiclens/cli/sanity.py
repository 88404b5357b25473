"""``musiclens sanity FILE --model M --method gradient[,smoothgrad,...] [--target CLASS] [--json]``.

Model-parameter randomisation test (Adebayo et al. 2018): re-initialise the layers one
after the other from the output down to the input (on a copy of the model), recompute each
attribution after every step and compare it with the trained model's (Spearman rank
correlation of |map| and SSIM of |map| scaled to [0, 1]).

A method whose map is still much the same when every layer is random (final Spearman or
SSIM >= --threshold) is flagged "does not reflect the model": it shows the input, not what
the model learned. ``input`` (the spectrogram itself) is a control that always fails.
Every method of the method table for audio can be checked (old spellings work too).
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_method_list_argument, add_model_argument, add_segment_arguments
from musiclens.cli._progress import add_quiet_argument

#: the control: the input itself, whatever the model (besides the method table's methods)
CONTROL = "input"
FAILS = "does not reflect the model"
PASSES = "reflects the model"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sanity",
        help="cascading weight randomisation check of attributions",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    add_method_list_argument(p, "--method", default="gradient", control=CONTROL)
    p.add_argument("--target", default=None, help="label name or index (default: the top label)")
    p.add_argument("--layer", default=None, help="the layer for the layer methods (grad-cam, grad-cam++, cam, ...)")
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers to randomise, in this order (default: every layer "
        "with weights, from the output down)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="final Spearman or SSIM at or above this flags the method (default 0.5)",
    )
    p.add_argument("--samples", type=int, default=10, help="smoothgrad: noisy copies (default 10)")
    p.add_argument("--steps", type=int, default=16, help="ig: points on the path (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def verdict(steps: list[dict], threshold: float) -> dict:
    """The final step's similarity -> {"reflects_model", "verdict", "final_spearman", "final_ssim",
    "randomised_layers"}, by the rule the faithfulness scores use
    (:func:`~musiclens.core.analyses.faithfulness.sanity_verdict`)."""
    from musiclens.core.analyses.faithfulness import sanity_verdict

    last = steps[-1]
    v = sanity_verdict(last["spearman"], last["ssim"], last["step"], threshold)
    return {
        "reflects_model": v.passed,
        "verdict": PASSES if v.passed else FAILS,
        "final_spearman": v.final_spearman,
        "final_ssim": v.final_ssim,
        "randomised_layers": v.randomised_layers,
    }


def run(args: argparse.Namespace) -> int:
    import math

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import features_at_model_rate, parse_method_list, read_audio, resolve_target
    from musiclens.cli._model import load_model
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.sanity import Attribution, sanity_check

    # one entry per name as typed; each a method of the table (its old spellings too) or the control
    chosen = dict(parse_method_list(args.method, "--method", control=CONTROL))
    for n, method in chosen.items():
        if method is not None and method.needs_layer and args.layer is None:
            raise ParameterError(f"{n} needs --layer")
    if not 0 < args.threshold <= 1:
        raise ParameterError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.samples < 1 or args.steps < 1:
        raise ParameterError("--samples and --steps must be at least 1")
    m = load_model(args)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    x = features_at_model_rate(m, y, sr)
    target = resolve_target(m, args.target, x)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    result = {
        "model": m.name,
        "file": str(args.file),
        "target": m.labels[target],
        "threshold": args.threshold,
        "methods": {},
    }
    fns: dict[str, str | Attribution] = {}
    options: dict[str, dict] = {}
    for name, method in chosen.items():
        if method is None:
            fns[name] = lambda _mm, xx: xx  # the control: the input, whatever the model
        else:
            fns[name] = method.name
            options[name] = method.supported({"n_samples": args.samples, "steps": args.steps})
    progress = Progress("sanity", "%", total=100, quiet=args.quiet)
    job = sanity_check(m, x, fns, target=target, layer=args.layer, layers=layers, seed=args.seed, options=options)
    done: dict[str, list] = analyses.run(
        job, lambda p: progress.update(int(100 * (p.fraction or 0.0)), detail=p.message)
    )
    for name, steps in done.items():
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in step.to_dict().items()}
            for step in steps
        ]
        result["methods"][name] = {"steps": rows} | verdict(rows, args.threshold)
    if args.json:
        print_json(result)
        return 0
    fmt = lambda v: "     nan" if v is None else f"{v:8.3f}"  # noqa: E731
    for name, res in result["methods"].items():
        width = max(len(s["layer"] or "(trained)") for s in res["steps"])
        print(f"{name} (target {m.labels[target]!r})")
        print(f"  {'step':>4}  {'randomised layer':<{width}}  {'spearman':>8}  {'signed':>8}  {'ssim':>8}")
        for s in res["steps"]:
            print(
                f"  {s['step']:>4}  {(s['layer'] or '(trained)'):<{width}}  {fmt(s['spearman'])}  "
                f"{fmt(s['spearman_signed'])}  {fmt(s['ssim'])}"
            )
        print(f"  -> {res['verdict']}")
    return 0
