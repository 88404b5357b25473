"""``musiclens midi-classify FILE [--model NAME] [--json]``: ``musiclens predict`` for a MIDI file.

An alias kept for scripts: the same JSON as ``predict`` on a MIDI file (``classes``,
``probabilities``, ``predicted``, ``n_notes_read``, ``n_notes_total``, ...), with the bundled
MIDI model by default, plus ``training_distance``: how far the piece's whole-piece statistics lie
from the model's training pieces (``outside`` when farther than 95 % of them; None when the
model keeps no such statistics).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("midi-classify", help="classify a MIDI file with a MIDI model (= predict FILE.mid)")
    p.add_argument("file", help="a MIDI file (.mid, .midi, RIFF .rmi)")
    p.add_argument(
        "--model", default=None, help="bundled MIDI model name or model folder (default: the bundled MIDI model)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    from musiclens.cli._model import add_device_argument

    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli.predict import predict_midi, print_midi
    from musiclens.core.models.midi_lstm import load_midi_model
    from musiclens.core.resources import DEFAULT_MIDI_MODEL

    model = load_midi_model(args.model or DEFAULT_MIDI_MODEL, device=getattr(args, "device", "auto"))
    out = predict_midi(args.file, model)  # with training_distance (None: the model keeps no statistics)
    if args.json:
        print_json(out)
    else:
        print_midi(args.file, model, out)
    return 0
