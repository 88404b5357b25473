"""``musiclens hear-explanation FILE --model M --target T --method ig --top 20 --out DIR [--json]``.

Hear what the model used for a target, and what it ignored: the top ``--top`` % of the
time-frequency cells with the largest positive attribution mask the recording's own STFT
(inverted with its phase) -> DIR/used.wav; the complement -> DIR/ignored.wav (used +
ignored = the recording). The model's probability for the target is printed for the
original, the used and the ignored audio (mean over the span's patches): a faithful map
keeps the score on "used" and drops it on "ignored".
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_method_argument, add_model_argument, add_segment_arguments
from musiclens.cli._progress import add_quiet_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "hear-explanation",
        help="hear what the model used for a target (top-k %% attribution) and what it ignored",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    p.add_argument("--target", default=None, help="label name or index (default: the top label)")
    add_method_argument(p, default="integrated-gradients")  # every audio method of the table
    p.add_argument("--layer", default=None, help="layer methods (grad-cam...): the layer (default the first conv)")
    p.add_argument("--top", type=float, default=20.0, help="percentage of time-frequency cells kept as 'used'")
    p.add_argument("--soft", action="store_true", help="a soft mask: weaker positive cells fade in")
    p.add_argument("--steps", type=int, default=None, help="integrated gradients: points on the path")
    p.add_argument("--samples", type=int, default=None, help="smoothgrad: noisy copies")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("--out", required=True, help="folder for used.wav and ignored.wav (made if missing)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import read_audio
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses, audio
    from musiclens.core.analyses.explanation import hear_explanation
    from musiclens.core.errors import ParameterError

    if not 0 < args.top <= 100:
        raise ParameterError(f"--top must be a percentage in (0, 100], got {args.top}")
    m = load_model(args)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    y = audio.resample(y, orig_sr=sr, target_sr=m.sample_rate)
    target = args.target
    if target is None:
        target = analyses.predict(m, y).top[0][0]
    elif target.lstrip("-").isdigit():
        target = int(target)
    options = {k: v for k, v in (("steps", args.steps), ("n_samples", args.samples)) if v is not None}
    shown = Progress("hear-explanation", "%", total=100, quiet=args.quiet)
    result = analyses.run(
        hear_explanation(
            m,
            y,
            args.method,
            target,
            top=args.top,
            soft=args.soft,
            layer=args.layer,
            options=options or None,
            start_s=args.offset,
        ),
        lambda p: shown.update(int(100 * (p.fraction or 0)), detail=p.message),
    )
    shown.update(100, detail="done")
    out = Path(args.out)
    used = audio.save(prepare_output(out / "used.wav"), result.used, result.sample_rate)
    ignored = audio.save(prepare_output(out / "ignored.wav"), result.ignored, result.sample_rate)
    summary = {"model": m.name, "file": str(args.file), **result.summary(), "used": str(used), "ignored": str(ignored)}
    if args.json:
        print_json(summary)
    else:
        s = result.scores
        print(
            f"{result.method} for {result.target!r}, top {result.top:g} % of cells "
            f"({100 * result.used_share:.1f} % used), {summary['seconds']:.2f} s at {result.sample_rate} Hz"
        )
        print(f"P({result.target}): original {s['original']:.3f}, used {s['used']:.3f}, ignored {s['ignored']:.3f}")
        print(f"wrote {used} and {ignored}")
    return 0
