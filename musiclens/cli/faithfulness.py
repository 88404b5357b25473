"""``musiclens faithfulness FILE --model M --target T --methods grad,ig,grad-cam [--json]``.

Which attribution map to believe: each method's map is scored by deletion and insertion curves
over time-frequency cells (--cells BINSxFRAMES). Deletion replaces the cells, most important
first, by the baseline (--baseline: ROAD's noisy linear imputation from the neighbours,
the patch's mean, or silence) and follows the target's probability divided by its probability at the full input:
a LOWER deletion AUC is better. Insertion starts from the baseline and puts the cells back: a
HIGHER insertion AUC is better. A random order of the cells (--random-seeds orders, averaged)
is scored in the same run: a faithful map beats it on both.

Also per method: the time its maps took, the weight-randomisation sanity check on the first
patch (passed: the map changes once the model's layers are re-initialised; --sanity-layers
limits how many, 0 skips it) and, with --captum-metrics, Captum's infidelity and sensitivity
(lower is better for both). Each method runs with the window's quick settings (Integrated
Gradients 24 steps, SmoothGrad 16 samples). The span is --seconds START:END (default: the
first patch), cut into the model's patches; AUCs are the mean over the patches.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_method_list_argument, add_model_argument, load_model
from musiclens.cli._progress import add_quiet_argument

DEFAULT_METHODS = "gradient,integrated-gradients,grad-cam"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "faithfulness",
        help="score attribution methods by deletion/insertion AUC against a random baseline",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    add_method_list_argument(p, "--methods", default=DEFAULT_METHODS)
    p.add_argument("--target", default=None, help="label name or index (default: the top label of the span)")
    p.add_argument("--layer", default=None, help="the layer of the layer methods (default: the first conv layer)")
    p.add_argument("--cells", default="8x16", help="one cell: BINSxFRAMES")
    p.add_argument("--steps", type=int, default=16, help="points on each curve besides the start")
    p.add_argument(
        "--baseline",
        default="noisy-linear",
        choices=("noisy-linear", "mean", "silence"),
        help="what a removed cell becomes: ROAD's noisy linear imputation from its neighbours, the "
        "patch's mean, or the front end's silence",
    )
    p.add_argument("--random-seeds", type=int, default=3, help="random cell orders averaged for the baseline")
    p.add_argument(
        "--seconds",
        default=None,
        help="START:END of the file to score, in s (either may be empty: '10:' to the end; default one patch from 0)",
    )
    p.add_argument(
        "--sanity-layers",
        type=int,
        default=None,
        help="layers re-initialised in the sanity check, from the output down (default: all; 0: no check)",
    )
    p.add_argument("--captum-metrics", action="store_true", help="also Captum's infidelity and sensitivity (slower)")
    p.add_argument(
        "--batch", type=int, default=None, help="perturbed inputs per forward pass (default: 1 on the CPU, 32 on a GPU)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def parse_seconds(text: str | None) -> tuple[float, float | None]:
    """``"START:END"`` -> (offset s, duration s or 0 = to the end); None -> (0, None): exactly
    one patch from 0 (:func:`~musiclens.core.analyses.recording.read_span`)."""
    from musiclens.core.errors import ParameterError

    if text is None:
        return 0.0, None
    start_text, sep, end_text = str(text).partition(":")
    try:
        start = float(start_text) if start_text.strip() else 0.0
        end = float(end_text) if end_text.strip() else None
    except ValueError:
        raise ParameterError(f"--seconds must be START:END in seconds such as 0:9, got {text!r}") from None
    if not sep:
        raise ParameterError(f"--seconds must be START:END in seconds such as 0:9, got {text!r}")
    if start < 0 or (end is not None and end <= start):
        raise ParameterError(f"--seconds needs 0 <= START < END, got {text!r}")
    return start, (0.0 if end is None else end - start)


def _fmt(v: float | None, width: int = 7, digits: int = 3) -> str:
    import math

    return f"{'—':>{width}}" if v is None or not math.isfinite(v) else f"{v:{width}.{digits}f}"


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import parse_method_list, read_audio
    from musiclens.cli._progress import Progress
    from musiclens.core.analyses.faithfulness import BETTER, faithfulness
    from musiclens.core.audio import resample
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.faithfulness import parse_cells

    # a misspelt method fails before the model loads
    names = [typed for typed, _ in parse_method_list(args.methods, "--methods")]
    cells = parse_cells(args.cells)
    if args.steps < 1 or args.random_seeds < 1 or (args.batch is not None and args.batch < 1):
        raise ParameterError("--steps, --random-seeds and --batch must be at least 1")
    if args.sanity_layers is not None and args.sanity_layers < 0:
        raise ParameterError(f"--sanity-layers must be 0 or more, got {args.sanity_layers}")
    offset, duration = parse_seconds(args.seconds)
    m = load_model(args, kind="audio")
    y, sr = read_audio(args.file, m, offset=offset, duration=duration)
    if sr != m.sample_rate:
        y = resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=m.sample_rate)
    target = args.target
    if target is None:
        from musiclens.core import analyses

        target = analyses.predict(m, y).top[0][0]
    elif target.lstrip("-").isdigit():
        target = int(target)
    progress = Progress("faithfulness", "%", total=100, quiet=args.quiet)
    steps = faithfulness(
        m,
        y,
        names,
        target,
        layer=args.layer,
        start_s=offset,
        cells=cells,
        steps=args.steps,
        baseline=args.baseline,
        seeds=args.random_seeds,
        sanity_layers=args.sanity_layers,
        captum_metrics=args.captum_metrics,
        chunk=args.batch,
    )
    try:
        while True:
            p = next(steps)
            progress.update(int(100 * (p.fraction or 0.0)), detail=p.message)
    except StopIteration as stop:
        result = stop.value
    out = result.to_dict()
    out["file"] = str(args.file)
    if args.json:
        print_json(out)
        return 0
    print(
        f"faithfulness of {result.target!r} ({m.name}, {result.start_s:.1f}–{result.end_s:.1f} s, "
        f"{result.patches} patch{'es' if result.patches != 1 else ''}, cells {args.cells}, "
        f"{args.steps} steps, baseline {args.baseline}; probability at the input {result.score:.3f})"
    )
    print(BETTER)
    print(
        f"  {'method':<22} {'deletion':>8} {'random':>7} {'insertion':>9} {'random':>7}  {'sanity':<7} "
        f"{'seconds':>7}" + ("  infidelity sensitivity" if args.captum_metrics else "")
    )
    for s in result.methods:
        if s.error:
            print(f"  {s.method:<22} could not run: {s.error}")
            continue
        sanity = "—" if s.sanity is None else ("pass" if s.sanity.passed else "FAIL")
        line = (
            f"  {s.method:<22} {_fmt(s.deletion_auc, 8)} {_fmt(s.random_deletion_auc)} "
            f"{_fmt(s.insertion_auc, 9)} {_fmt(s.random_insertion_auc)}  {sanity:<7} {_fmt(s.seconds, 7, 1)}"
        )
        if args.captum_metrics:
            line += f"  {_fmt(s.infidelity, 10)} {_fmt(s.sensitivity, 11)}"
        print(line)
    layers = {s.layer for s in result.methods if s.layer}
    if layers:
        print(f"layer methods at: {', '.join(sorted(layers))}")
    return 0
