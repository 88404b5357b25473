"""``musiclens predict FILE [--model MODEL] [--json]``: class probabilities of an audio or MIDI file.

Every model kind gives ``{"classes", "probabilities", "predicted"}`` (``probabilities``:
{class: p} for the whole file; ``predicted``: the top class, or for multi-label models the
classes whose probability is >= ``--threshold``).

* audio: the whole-file probabilities are the mean over the patches (non-overlapping, the
  trailing partial patch dropped); also ``patches`` (per-patch probabilities),
  ``patch_starts_s``, and the older names ``labels``, ``file_probabilities``, ``prediction``.
* MIDI (``.mid``/``.midi``/``.rmi``/``.kar`` with a MIDI model): the model reads the first
  notes of the piece; also ``n_notes_read``, ``n_notes_total``, ``padded``, the notes on
  tracks it does not read, and the repairs made while reading the file.

``--model`` defaults to the bundled model of the file's kind. ``musiclens midi-classify`` is
this command for MIDI files (its default model is the bundled MIDI model).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="class probabilities of an audio or MIDI file")
    p.add_argument("file", help="an audio file (wav, flac, ogg, mp3, aiff) or a MIDI file (.mid)")
    p.add_argument(
        "--model",
        default=None,
        help="model folder or bundled model name (default: the bundled model of the file's kind)",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label decision threshold")
    from musiclens.cli._model import add_device_argument, add_trust_code_argument

    add_device_argument(p)
    add_trust_code_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def is_midi_file(path) -> bool:
    from pathlib import Path

    from musiclens.core.midi import MIDI_EXTENSIONS

    return Path(str(path)).suffix.lower() in MIDI_EXTENSIONS


def default_model(path) -> str:
    from musiclens.core.resources import DEFAULT_MIDI_MODEL, DEFAULT_MODEL

    return DEFAULT_MIDI_MODEL if is_midi_file(path) else DEFAULT_MODEL


def predict_midi(path, m) -> dict:
    """The MIDI JSON: ``classes``, ``probabilities``, ``predicted``, the note counts and
    ``training_distance`` (how far the piece lies from the model's training pieces; None when
    the model keeps no statistics of them)."""
    from musiclens.core.analyses.midi import training_distance

    out = m.classify_file(path)
    out["training_distance"] = training_distance(m, path)
    return {"file": str(path), "model": m.name, "kind": "midi", "classes": list(m.labels), "multilabel": False} | out


def check_kinds(path, m) -> None:
    from musiclens.core.errors import MusicLensError

    midi_file = is_midi_file(path)
    kind = getattr(m, "kind", "audio")
    if midi_file and kind != "midi":
        raise MusicLensError(
            f"{path} is a MIDI file but {m.name} is an {kind} model; give a MIDI model "
            "(--model midi_style_lstm or a MIDI model folder)"
        )
    if not midi_file and kind == "midi":
        raise MusicLensError(f"{m.name} is a MIDI model but {path} is not a MIDI file (.mid, .midi, .rmi, .kar)")


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.core.errors import ParameterError

    if not 0 < args.threshold < 1:
        raise ParameterError(f"--threshold must be between 0 and 1, got {args.threshold}")
    m = load_model(args, default=default_model(args.file))
    check_kinds(args.file, m)
    if getattr(m, "kind", "audio") == "midi":
        out = predict_midi(args.file, m)
        if args.json:
            print_json(out)
            return 0
        print_midi(args.file, m, out)
        return 0
    from musiclens.core import analyses

    tg = analyses.predict_file(m, args.file)  # the window's predict (core.analyses)
    mean = tg.mean()
    whole = {lab: float(v) for lab, v in zip(m.labels, mean)}
    decision: list[str] | str
    if m.multilabel:
        decision = [lab for lab, v in whole.items() if v >= args.threshold]
    else:
        decision = m.labels[int(mean.argmax())]
    out = {
        "model": m.name,
        "file": str(args.file),
        "kind": "audio",
        "classes": list(m.labels),
        "probabilities": whole,
        "predicted": decision,
        "multilabel": m.multilabel,
        "patch_seconds": tg.patch_seconds,
        "patch_starts_s": tg.patch_starts_s.astype(float).tolist(),
        "patches": tg.probabilities.astype(float).tolist(),
        "labels": list(m.labels),
        "file_probabilities": whole,
        "prediction": decision,
    }
    if args.json:
        print_json(out)
        return 0
    print(f"{args.file}: {len(tg.probabilities)} patches of {tg.patch_seconds:.2f} s, {m.name}")
    for lab, v in tg.ranked():
        print(f"  {v:6.3f}  {lab}")
    print(f"prediction: {decision if isinstance(decision, str) else ', '.join(decision) or '(none)'}")
    return 0


def print_midi(path, m, out: dict) -> None:
    """The text report of a MIDI prediction (``predict`` and ``midi-classify``)."""
    ranked = sorted(out["probabilities"].items(), key=lambda kv: -kv[1])
    print(
        f"{path}: {out['predicted']} ({out['confidence']:.3f}) with {m.name}, "
        f"reading notes 1–{out['n_notes_read']} of {out['n_notes_total']}" + (" (padded)" if out["padded"] else "")
    )
    n_other, n_drum = out["n_notes_not_read_tracks"], out["n_drum_notes_not_read"]
    if n_other:
        what = [f"{n_drum} drum notes"] if n_drum else []
        what += [f"{n_other - n_drum} notes of other instruments"] if n_other > n_drum else []
        print(f"  not read (other tracks, kept in the file): {' and '.join(what)}")
    for label, p in ranked:
        print(f"  {label:<16} {p:.4f}")
    for r in out["repairs"]:
        print(f"  note: {r}")
    scope = out.get("training_distance")
    if scope and scope["outside"]:
        print(
            f"  outside the model's training pieces: distance {scope['distance']:.1f} (95 % of them <= "
            f"{scope['training_p95']:.1f}; farthest: {', '.join(scope['farthest'])}): the answer is a guess"
        )
