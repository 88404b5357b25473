"""``musiclens dream [FILE | --init FILE | --init sweep | --sweep SECONDS] --model M --target TAG
[--minus TAG | --minus-all] [--update add|subtract] [--normalize-grad] --steps N -o OUT.wav``.

Spellings: ``--minus-all`` = ``--minus others``; ``--update add|subtract`` =
``additive|subtractive``; ``--init sweep`` = ``--sweep`` of ``--duration`` seconds (default
one model patch); ``--normalize-grad`` is the default (``--raw-gradient`` turns it off).

Deep dream: change the input so the model hears more of TAG (optionally minus another tag
or minus all others), then write the dreamt audio, normalised to a 0.99 peak (the gain is
in the summary; ``--keep-level`` writes the raw level, as float WAV when it exceeds full
scale). Progress goes to stderr (``--quiet``: none); Ctrl-C stops the dream and still
writes what it has.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments
from musiclens.cli._progress import add_quiet_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dream", help="deep dream towards a class or tag")
    p.add_argument("file", nargs="?", default=None, help="an audio file to start from")
    p.add_argument(
        "--sweep",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start from a sine sweep of this length instead of a file",
    )
    add_model_argument(p)
    p.add_argument("--target", required=True, help="label name or index to maximise")
    p.add_argument(
        "--init", default=None, metavar="FILE|sweep", help="start from this audio file, or 'sweep' for a sine sweep"
    )
    p.add_argument("--minus", default=None, help="a label to subtract, or 'others'")
    p.add_argument("--minus-all", action="store_true", help="subtract the mean of all other labels (= --minus others)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.5, help="step size (front-end units)")
    p.add_argument("--update", choices=("additive", "subtractive", "add", "subtract"), default="additive")
    grad = p.add_mutually_exclusive_group()
    grad.add_argument("--raw-gradient", action="store_true", help="do not normalise the gradient")
    grad.add_argument(
        "--normalize-grad",
        "--normalise-grad",
        action="store_true",
        help="normalise the gradient by its mean magnitude (the default)",
    )
    p.add_argument(
        "--channels", default=None, help="comma-separated input channels to optimise (STFT models: 0 real, 1 imag)"
    )
    p.add_argument("--jitter", type=int, default=0, help="random time shift in frames per step")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", required=True, help="the audio file to write")
    p.add_argument(
        "--keep-level",
        action="store_true",
        help="write the dream at its raw level instead of normalising it to a 0.99 peak "
        "(WAV keeps peaks over full scale as float samples)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_quiet_argument(p)
    p.set_defaults(func=run)


#: the peak a dream is normalised to (just under full scale: no player clips it)
PEAK = 0.99


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import read_audio, resolve_target
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses, audio
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.dream import sine_sweep

    m = load_model(args)
    if args.init is not None:
        if args.file is not None or args.sweep is not None:
            raise ParameterError("give only one start: FILE, --init FILE|sweep or --sweep SECONDS")
        if args.init.lower() == "sweep":
            args.sweep = args.duration or m.patch_samples / m.sample_rate  # one patch
        else:
            args.file = args.init
    if (args.file is None) == (args.sweep is None):
        raise ParameterError("give either an audio FILE (or --init FILE|sweep) or --sweep SECONDS")
    if args.sweep is not None:
        y, sr = sine_sweep(m.front_end, seconds=args.sweep), m.front_end.sample_rate
    else:
        y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    channels = None
    if args.channels:
        try:
            channels = [int(c) for c in args.channels.split(",")]
        except ValueError:
            raise ParameterError(f"--channels must be comma-separated integers, got {args.channels!r}") from None
    minus = args.minus
    if args.minus_all:
        if minus not in (None, "others"):
            raise ParameterError("give either --minus LABEL or --minus-all, not both")
        minus = "others"
    update = {"add": "additive", "subtract": "subtractive"}.get(args.update, args.update)
    if minus is not None and minus != "others":
        minus = resolve_target(m, minus, None)
    target = resolve_target(m, args.target, None)
    output = prepare_output(args.output)  # a bad path fails now, not after the dream
    stop = threading.Event()
    # the window's dream (core.analyses); a step's message ends in "objective X"
    gen = analyses.dream(
        m,
        y,
        sample_rate=sr,
        stop=stop.is_set,
        preview_every=1,
        previews=False,
        target=target,
        minus=minus,
        steps=args.steps,
        lr=args.lr,
        update=update,
        normalise_grad=not args.raw_gradient,
        channels=channels,
        jitter=args.jitter,
    )
    progress = Progress("dream", "steps", total=args.steps, quiet=args.quiet)
    # Ctrl-C sets the stop flag: the dream stops after the current step and still
    # returns the dream so far, which is written below.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        result = analyses.run(
            gen,
            lambda p: progress.update(round((p.fraction or 0.0) * args.steps), detail=p.message.rsplit(", ", 1)[-1]),
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    progress.update(
        result.steps,
        finished=True,
        detail=f"objective {result.objective_after:.4f}" + (" (cancelled)" if result.stopped else ""),
    )
    dreamt = result.audio
    peak = float(np.abs(dreamt).max()) if dreamt.size else 0.0
    gain = 1.0 if args.keep_level or peak == 0.0 else PEAK / peak
    out = audio.save(output, dreamt * np.float32(gain), result.sample_rate)
    if peak * gain > 1.0 and output.suffix.lower() not in (".wav", ".wave", ".ogg", ".oga"):
        gain = PEAK / peak  # audio.save scaled it: FLAC and the like hold no level over full scale
    summary = {
        "model": m.name,
        "target": m.labels[target],
        "minus": minus if minus in (None, "others") else m.labels[minus],
        "steps": result.steps,
        "cancelled": result.stopped,
        "objective_start": result.objective_before,
        "objective_end": result.objective_after,
        "output": str(out),
        "sample_rate": result.sample_rate,
        "peak": peak,
        "keep_level": bool(args.keep_level),
        "gain": gain,
        "gain_db": float(20 * np.log10(gain)) if gain > 0 else None,
        "written_peak": peak * gain,
    }
    if args.json:
        print_json(summary)
    else:
        level = (
            f"raw level, peak {peak:.3g}"
            if args.keep_level
            else f"normalised to a {PEAK} peak (gain {summary['gain_db']:+.1f} dB)"
            if peak > 0
            else "silent"
        )
        print(
            f"wrote {out}: {result.steps} steps, objective {result.objective_before:.4f} -> "
            f"{result.objective_after:.4f}, {level}" + (" (cancelled)" if result.stopped else "")
        )
    return 130 if result.stopped else 0
