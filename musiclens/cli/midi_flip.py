"""``musiclens midi-flip FILE --to CLASS [--model NAME] -o OUT.mid [--json]``.

Learns the smallest change to the first N notes (whole-piece models: to the pitch, velocity
or onset of a few notes anywhere in the piece) that makes the model predict CLASS,
writes the modified piece (only the changed notes differ: every other note, track, tempo
change, controller and pitch bend of the file is kept), reads the written file back and
classifies it again, and reports before/after probabilities, the changed notes and the
size of the change.
"""

from __future__ import annotations

import argparse
from typing import Any

from musiclens.cli._model import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("midi-flip", help="change a MIDI file's notes until a MIDI model predicts a class")
    p.add_argument("file", help="a MIDI file (.mid, .midi, RIFF .rmi)")
    p.add_argument("--to", required=True, help="target class (name or index)")
    p.add_argument(
        "--model", default=None, help="bundled MIDI model name or model folder (default: the bundled MIDI model)"
    )
    add_device_argument(p)
    p.add_argument("-o", "--output", required=True, help="where to write the modified .mid")
    p.add_argument("--steps", type=int, default=300, help="maximum optimisation steps (default 300)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam step size (default 0.05)")
    p.add_argument("--penalty", type=float, default=0.001, help="weight of the L1 size of the change (default 0.001)")
    p.add_argument(
        "--features",
        default="pitch,step,duration",
        help="comma-separated features that may change (default pitch,step,duration)",
    )
    p.add_argument(
        "--window-only", action="store_true", help="write only the model's window of notes, not the rest of the piece"
    )
    p.add_argument(
        "--model-notes-only",
        action="store_true",
        help="leave out the tracks the model does not read (e.g. drums) from the output",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._output import prepare_output
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError
    from musiclens.core.midi import write_midi
    from musiclens.core.models.midi_lstm import load_midi_model
    from musiclens.core.resources import DEFAULT_MIDI_MODEL

    if not str(args.output).lower().endswith((".mid", ".midi")):
        raise ParameterError(f"--output must end in .mid or .midi, got {args.output!r}")
    model = load_midi_model(args.model or DEFAULT_MIDI_MODEL, device=getattr(args, "device", "auto"))
    model.label_index(args.to)  # fail early on an unknown class
    notes = analyses.open_midi(model, args.file).notes
    prepare_output(args.output)  # a bad output path fails now, not after the optimisation
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    progress = Progress("midi-flip", "steps", total=args.steps, quiet=args.quiet)
    target = model.labels[model.label_index(args.to)]
    flipping = analyses.flip(
        model, notes, args.to, steps=args.steps, lr=args.lr, penalty=args.penalty, features=features
    )
    last_step = 0

    def show(p: Any) -> None:
        nonlocal last_step
        step = p.payload
        last_step = step.step
        if not step.done:
            progress.update(
                step.step, detail=f"p({target}) = {step.target_probability:.3f}" + (" flipped" if step.flipped else "")
            )

    flipped = analyses.run(flipping, show)
    assert flipped is not None  # steps >= 1; the last step carries the result
    result = flipped.result
    # the last line reports what is written (the smallest change that flips, pruned), the
    # same probability as the summary, not the optimiser's current step
    p_written = float(result.probabilities_after[result.target])
    progress.update(
        last_step,
        finished=True,
        detail=f"p({target}) = {p_written:.3f} in the written notes "
        f"({'flipped' if result.flipped else 'not flipped'}, best of step {result.step})",
    )
    if args.window_only:
        written = result.written
    else:
        written = result.full_notes(notes)  # only the changed notes differ; other tracks kept
    path = write_midi(written, args.output, keep_other_tracks=not (args.window_only or args.model_notes_only))
    check = model.classify_file(path)  # what a user gets when opening the written file
    out = {"file": str(args.file), "model": model.name, "output": str(path)} | result.to_dict()
    out["probabilities_after_reading_output"] = check["probabilities"]
    out["flip_holds_in_output"] = check["predicted"] == out["target"]
    if args.json:
        print_json(out)
    else:
        before = out["probabilities_before"]
        after = out["probabilities_after"]
        print(
            f"{args.file}: {out['predicted_before']} -> {out['predicted_after']} "
            f"({'flipped' if out['flipped'] else 'NOT flipped'} to {out['target']} after {out['step']} steps)"
        )
        for label in model.labels:
            print(f"  {label:<16} {before[label]:.4f} -> {after[label]:.4f}")
        c = out["change"]
        print(
            f"  changed {c['notes_changed']} of {c['notes']} notes: {c['pitches_changed']} pitches "
            f"({c['pitch_l1_semitones']:.0f} semitones), {c['steps_changed']} steps "
            f"({c['step_l1_seconds']:.3f} s), {c['durations_changed']} durations "
            f"({c['duration_l1_seconds']:.3f} s)"
            + (f", {c['velocities_changed']} velocities" if c.get("velocities_changed") else "")
        )
        print(f"  wrote {path}")
    return 0
