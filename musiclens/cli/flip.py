"""``musiclens flip FILE --model M --to CLASS -o OUT.wav [--patch-only] [--json]``.

A counterfactual: the smallest change to a span of the recording (one model patch from
--offset by default; --duration sets its length) that makes the model say CLASS. By default
to the waveform itself, so what is written is exactly what was classified. The whole
recording is written, every channel, with the change added over the span (faded in and out
over 10 ms where it meets unchanged audio); --patch-only writes just the span (mono). Prints
the model's probabilities before and after (both measured on audio: the input span and the
same span of what is written) and the size of the change (signal-to-change ratio, RMS).
When the model already says CLASS it says so and writes the recording unchanged.
Progress goes to stderr (--quiet: none); Ctrl-C stops and still writes what it has.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments
from musiclens.cli._progress import add_quiet_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flip",
        help="change a recording until the model says another class",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an audio file, or a MIDI file (.mid: a MIDI model, as midi-flip; -o OUT.mid)")
    add_model_argument(p)
    p.add_argument("--to", required=True, dest="to", help="the label (name or index) to flip to")
    p.add_argument(
        "--domain",
        choices=("audio", "features"),
        default="audio",
        help="change the waveform (default; the flip is what you hear) or the spectrogram",
    )
    p.add_argument("--steps", type=int, default=200, help="at most this many updates (default 200)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam step (default 0.01 of the RMS for audio, 0.5 front-end units for features)",
    )
    p.add_argument("--l2", type=float, default=0.01, help="weight of the closeness penalty")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="multi-label models: target probability that counts as flipped"
    )
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first flipped step")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", required=True, help="the audio file to write (.wav/.flac)")
    p.add_argument(
        "--patch-only", action="store_true", help="write only the changed span (mono), not the whole recording"
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_quiet_argument(p)
    p.set_defaults(func=run)


def _top(m, probs, k: int = 5) -> list[dict]:
    import numpy as np

    order = np.argsort(-probs)[:k]
    return [{"label": m.labels[i], "probability": float(probs[i])} for i in order]


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import _midi

    if _midi.is_midi_file(args.file):  # a MIDI file: the MIDI model's flip (same command, both kinds)
        return _midi.flip(args)
    import signal
    import threading

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import read_audio, resolve_target
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.cli._progress import Progress
    from musiclens.core import audio
    from musiclens.core.analyses import flip_recording
    from musiclens.core.errors import ParameterError

    if not 0 < args.threshold < 1:
        raise ParameterError(f"--threshold must be in (0, 1), got {args.threshold}")
    m = load_model(args)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    start = int(round(args.offset * sr))  # where the span lies (as audio.load counts it)
    target = int(resolve_target(m, args.to, None))  # one label: a set is refused
    label = m.labels[target]
    output = prepare_output(args.output)  # a bad path fails now, not after the optimisation
    stop = threading.Event()
    progress = Progress("flip", "steps", total=args.steps, quiet=args.quiet)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    gen = flip_recording(
        m,
        args.file,
        y,
        sr,
        start=start,
        target=target,
        steps=args.steps,
        lr=args.lr,
        l2=args.l2,
        threshold=args.threshold,
        keep_going=args.keep_going,
        domain=args.domain,
        patch_only=args.patch_only,
        stop=stop.is_set,
    )
    try:
        while True:
            p = next(gen)
            step = p.payload
            progress.update(
                step.step,
                finished=step.done,
                detail=f"loss {step.loss:.4f}, p({label}) {step.target_probability:.3f}"
                + (" (cancelled)" if step.cancelled else ""),
            )
    except StopIteration as done:
        result = done.value
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    out = audio.save(output, result.audio, sr)
    before, after, change, snr = result.before, result.after, result.change, result.snr_db
    already, flipped, steps, cancelled = result.already, result.flipped, result.steps, result.cancelled
    summary = {
        "model": m.name,
        "file": str(args.file),
        "target": label,
        "domain": args.domain,
        "already": already,
        "flipped": flipped,
        "steps": steps,
        "cancelled": cancelled,
        "before": {
            "prediction": m.labels[int(before.argmax())],
            "target_probability": float(before[target]),
            "top": _top(m, before),
        },
        "after": {
            "prediction": m.labels[int(after.argmax())],
            "target_probability": float(after[target]),
            "top": _top(m, after),
        },
        "perturbation": {
            "snr_db": snr,
            "rms": float(np.sqrt(np.mean(change**2))),
            "max_abs": float(np.max(np.abs(change))),
            "feature_rms": result.feature_rms,
        },
        "span": {"start_s": start / sr, "end_s": (start + len(y)) / sr},
        "patch_only": bool(args.patch_only),
        "seconds_written": result.audio.shape[-1] / sr,
        "output": str(out),
        "sample_rate": sr,
    }
    if args.json:
        print_json(summary)
        return 130 if cancelled else 0
    b, a, pt = summary["before"], summary["after"], summary["perturbation"]
    where = (
        f"{summary['seconds_written']:.2f} s"
        if args.patch_only
        else f"the whole recording, {start / sr:.2f}-{(start + len(y)) / sr:.2f} s changed"
    )
    if already:
        print(
            f"already {label!r}: p({label}) = {b['target_probability']:.3f}; nothing to change, "
            f"wrote {out} unchanged ({where if args.patch_only else 'the whole recording'})"
        )
        return 0
    snr_text = "no change" if pt["snr_db"] is None else f"SNR {pt['snr_db']:.1f} dB"
    print(
        f"wrote {out} ({where}): {'flipped' if flipped else 'NOT flipped'} to {label!r} after "
        f"{steps} steps" + (" (cancelled)" if cancelled else "")
    )
    print(f"  before: {b['prediction']!r}, p({label}) = {b['target_probability']:.3f}")
    print(f"  after:  {a['prediction']!r}, p({label}) = {a['target_probability']:.3f}")
    print(f"  change: {snr_text}, RMS {pt['rms']:.3g}, peak {pt['max_abs']:.3g}")
    return 130 if cancelled else 0
