"""``musiclens midi-flip FILE --to CLASS [--model NAME] -o OUT.mid [--json]``.

Learns the smallest change that makes the model predict CLASS: for a model that reads note
statistics (the default ``midi-piece``), the fewest notes to delete anywhere in the piece;
for the others, a change to the first N notes' pitch, step and duration (whole pieces without
statistics: the pitch, velocity or onset of a few notes). Writes the modified piece (only the
changed or deleted notes differ: every other note, track, tempo change, controller and pitch
bend of the file is kept), reads the written file back and classifies it again, and reports
before/after probabilities, the changed notes, the size of the change and what the written
file holds (its notes matched to the source's, its tracks).
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
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="step size (default: 0.05; Adam in standardised units, or the largest move of a note's presence weight)",
    )
    p.add_argument(
        "--penalty",
        type=float,
        default=None,
        help="weight of the L1 size of the change (default 0.001 standardised units; deletion: 0.5 per share of notes)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="comma-separated features that may change (default pitch,step,duration; not for a deletion flip)",
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
    from musiclens.core.analyses.midi import flip_kind
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
    deletion = flip_kind(model) == "delete"
    options: dict[str, Any] = {k: v for k, v in (("lr", args.lr), ("penalty", args.penalty)) if v is not None}
    if args.features is not None:
        if deletion:
            raise ParameterError(f"{model.name} is flipped by deleting notes: --features does not apply")
        options["features"] = [f.strip() for f in args.features.split(",") if f.strip()]
    progress = Progress("midi-flip", "steps", total=args.steps, quiet=args.quiet)
    target = model.labels[model.label_index(args.to)]
    flipping = analyses.flip(model, notes, args.to, steps=args.steps, **options)
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
    out["output_check"] = output_check(args.file, path)
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
        if deletion:
            print(f"  deleted {c['notes_deleted']} of {c['notes']} notes ({100 * c['share_deleted']:.1f} %)")
        else:
            print(
                f"  changed {c['notes_changed']} of {c['notes']} notes: {c['pitches_changed']} pitches "
                f"({c['pitch_l1_semitones']:.0f} semitones), {c['steps_changed']} steps "
                f"({c['step_l1_seconds']:.3f} s), {c['durations_changed']} durations "
                f"({c['duration_l1_seconds']:.3f} s)"
                + (f", {c['velocities_changed']} velocities" if c.get("velocities_changed") else "")
            )
        k = out["output_check"]
        print(
            f"  the written file reads as {check['predicted']} "
            f"({'holds' if out['flip_holds_in_output'] else 'does NOT hold'}); "
            f"{k['notes_unchanged_exact']} of its {k['notes_written']} notes are source notes at their exact times; "
            f"tracks {k['tracks_written']}/{k['tracks']}, other events {k['other_events_written']}/{k['other_events']}"
        )
        print(f"  wrote {path}")
    return 0


def output_check(source, written) -> dict[str, int]:
    """What the written file holds beside the source: its notes (every track, read with
    :func:`~musiclens.core.midi.read_midi`) that are source notes at their exact start, end,
    pitch, velocity, program and drum flag; its tracks; the non-note events of all tracks."""
    from collections import Counter

    import mido

    from musiclens.core.midi import read_midi

    def key(n) -> Counter:
        return Counter(zip(n.start.round(6), n.end.round(6), n.program, n.is_drum, n.pitch, n.velocity, strict=True))

    def events(path) -> tuple[int, int]:
        tracks = mido.MidiFile(path).tracks
        return len(tracks), sum(1 for tr in tracks for m in tr if m.type not in ("note_on", "note_off"))

    before, after = read_midi(source), read_midi(written)
    (t0, e0), (t1, e1) = events(source), events(written)
    return {
        "notes_source": len(before),
        "notes_written": len(after),
        "notes_unchanged_exact": sum((key(before) & key(after)).values()),
        "tracks": t0,
        "tracks_written": t1,
        "other_events": e0,
        "other_events_written": e1,
    }
