"""``musiclens midi-classify FILE [--model NAME] [--json]``: class probabilities of a MIDI file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("midi-classify", help="classify a MIDI file with a MIDI (LSTM) model")
    p.add_argument("file", help="a MIDI file (.mid, .midi, RIFF .rmi)")
    p.add_argument("--model", default=None,
                   help="bundled MIDI model name or model folder (default: the bundled MIDI model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.core.models.midi_lstm import DEFAULT_MIDI_MODEL, load_midi_model

    model = load_midi_model(args.model or DEFAULT_MIDI_MODEL)
    out = model.classify_file(args.file)
    out = {"file": str(args.file), "model": model.name} | out
    if args.json:
        print_json(out)
    else:
        ranked = sorted(out["probabilities"].items(), key=lambda kv: -kv[1])
        print(f"{args.file}: {out['predicted']} ({out['confidence']:.3f}) with {model.name}, "
              f"reading notes 1–{out['n_notes_read']} of {out['n_notes_total']}"
              + (" (padded)" if out["padded"] else ""))
        n_other, n_drum = out["n_notes_not_read_tracks"], out["n_drum_notes_not_read"]
        if n_other:
            what = [f"{n_drum} drum notes"] if n_drum else []
            what += [f"{n_other - n_drum} notes of other instruments"] if n_other > n_drum else []
            print(f"  not read (other tracks, kept in the file): {' and '.join(what)}")
        for label, p in ranked:
            print(f"  {label:<16} {p:.4f}")
        for r in out["repairs"]:
            print(f"  note: {r}")
    return 0
