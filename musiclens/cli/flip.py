"""``musiclens flip FILE --model M --to CLASS -o OUT.wav [--json]``.

A counterfactual: the smallest change to the recording (by default to the waveform itself,
so what is written is exactly what was classified) that makes the model say CLASS. Prints
the model's probabilities before and after (both measured on audio: the input file and the
written file) and the size of the change (signal-to-change ratio, RMS of the change).
Progress goes to stderr; Ctrl-C stops and still writes what it has.
"""

from __future__ import annotations

import argparse

from musiclens.cli._interpret_common import add_model_argument, add_segment_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("flip", help="change a recording until the model says another class",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="an audio file")
    add_model_argument(p)
    p.add_argument("--to", required=True, dest="to", help="the label (name or index) to flip to")
    p.add_argument("--domain", choices=("audio", "features"), default="audio",
                   help="change the waveform (default; the flip is what you hear) or the spectrogram")
    p.add_argument("--steps", type=int, default=200, help="at most this many updates (default 200)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam step (default 0.01 of the RMS for audio, 0.5 front-end units for features)")
    p.add_argument("--l2", type=float, default=0.01, help="weight of the closeness penalty")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="multi-label models: target probability that counts as flipped")
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first flipped step")
    add_segment_arguments(p, default_duration=None)
    p.add_argument("-o", "--output", required=True, help="the audio file to write (.wav/.flac)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def _top(m, probs, k: int = 5) -> list[dict]:
    import numpy as np

    order = np.argsort(-probs)[:k]
    return [{"label": m.labels[i], "probability": float(probs[i])} for i in order]


def run(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._interpret_common import features_at_model_rate, read_audio, resolve_target
    from musiclens.core import audio
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.flip import flip
    from musiclens.core.models import registry

    if not 0 < args.threshold < 1:
        raise ParameterError(f"--threshold must be in (0, 1), got {args.threshold}")
    m = registry.load(args.model)
    y, sr = read_audio(args.file, m, offset=args.offset, duration=args.duration)
    target = resolve_target(m, args.to, None)
    lr = args.lr if args.lr is not None else (0.01 if args.domain == "audio" else 0.5)
    before = m.predict(features_at_model_rate(m, y, sr)).mean(0).numpy()
    stop = threading.Event()
    gen = flip(m, y, target=target, steps=args.steps, lr=lr, l2=args.l2, threshold=args.threshold,
               stop_on_flip=not args.keep_going, domain=args.domain, sample_rate=sr, cancel=stop)
    last = None
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for step in gen:
            last = step
            if not step.done and step.step % 10 == 0:
                print(f"step {step.step}/{step.total}: loss {step.loss:.4f}, "
                      f"p({m.labels[target]}) {step.target_probability:.3f}", file=sys.stderr)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    assert last is not None and last.audio is not None
    out_audio = np.asarray(last.audio, dtype=np.float32)
    out = audio.save(args.output, out_audio, sr)
    after = m.predict(features_at_model_rate(m, out_audio, sr)).mean(0).numpy()
    change = out_audio.astype(np.float64) - y.astype(np.float64)
    energy, change_energy = float(np.sum(y.astype(np.float64) ** 2)), float(np.sum(change ** 2))
    snr = float("inf") if change_energy == 0 else 10 * np.log10(max(energy, 1e-30) / change_energy)
    if m.multilabel:
        flipped = bool(after[target] >= args.threshold)
    else:
        flipped = int(after.argmax()) == target
    summary = {
        "model": m.name, "file": str(args.file), "target": m.labels[target], "domain": args.domain,
        "flipped": flipped, "steps": last.step, "cancelled": last.cancelled,
        "before": {"prediction": m.labels[int(before.argmax())],
                   "target_probability": float(before[target]), "top": _top(m, before)},
        "after": {"prediction": m.labels[int(after.argmax())],
                  "target_probability": float(after[target]), "top": _top(m, after)},
        "perturbation": {"snr_db": None if not np.isfinite(snr) else float(snr),
                         "rms": float(np.sqrt(np.mean(change ** 2))),
                         "max_abs": float(np.max(np.abs(change))),
                         "feature_rms": float(last.distance)},
        "output": str(out), "sample_rate": sr,
    }
    if args.json:
        print_json(summary)
    else:
        b, a, pt = summary["before"], summary["after"], summary["perturbation"]
        snr_text = "no change" if pt["snr_db"] is None else f"SNR {pt['snr_db']:.1f} dB"
        print(f"wrote {out}: {'flipped' if flipped else 'NOT flipped'} to {m.labels[target]!r} after "
              f"{last.step} steps" + (" (cancelled)" if last.cancelled else ""))
        print(f"  before: {b['prediction']!r}, p({m.labels[target]}) = {b['target_probability']:.3f}")
        print(f"  after:  {a['prediction']!r}, p({m.labels[target]}) = {a['target_probability']:.3f}")
        print(f"  change: {snr_text}, RMS {pt['rms']:.3g}, peak {pt['max_abs']:.3g}")
    return 130 if last.cancelled else 0
