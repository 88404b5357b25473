"""``musiclens evaluate --model MODEL --data DIR [--split auto|all|train|val|test] [--vote mean|majority]
[--per-file] [--json]``: metrics of a trained model (audio or MIDI) on a labelled folder.

Default split: the model's own test files when ``DIR`` holds them (``model.json`` records
the files of each split at training time), else every file of ``DIR``. When files it
scores were in the model's training (or validation) split, it says so on stderr and in the
JSON (``"training_overlap"``): those are not held-out scores. JSON::

    {"accuracy", "n_files", "split", "confusion", "per_class_accuracy", "classes", "kind",
     "training_overlap": {"train", "val", "held_out", ...} | null, ...}

plus, for audio, ``"track_accuracy"`` (a file's patches decide by mean probability, or by
majority with ``--vote majority``; both are given as ``"track_accuracy_mean"`` and
``"track_accuracy_majority"``) and ``"n_tracks"``; ``--per-file`` adds ``"files"``, each
file's label, prediction, probabilities and the model's split it was in.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of a trained model (audio or MIDI) on a labelled folder")
    p.add_argument("--model", required=True, help="model folder or bundled model name")
    p.add_argument("--data", required=True, help="dataset folder (root/<label>/ of audio or MIDI files)")
    p.add_argument(
        "--split",
        default="auto",
        choices=["auto", "all", "train", "val", "test"],
        help="which files: auto = the model's test files if present, else all",
    )
    p.add_argument(
        "--vote",
        default="mean",
        choices=["mean", "majority"],
        help="audio: a file's label from the mean probability of its patches, or their majority",
    )
    p.add_argument("--per-file", action="store_true", help="list each file's prediction")
    from musiclens.cli._model import add_device_argument, add_trust_code_argument

    add_device_argument(p)
    add_trust_code_argument(p)
    p.add_argument(
        "--task",
        default=None,
        choices=["genre", "mood", "instruments"],
        help="audio; default: from the model (multi-label -> instruments)",
    )
    p.add_argument("--no-cache", action="store_true", help="don't use the feature cache")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def overlap_warning(out: dict) -> str | None:
    """The line that says when scored files were in the model's training/validation split."""
    ov = out.get("training_overlap")
    if ov is None:
        return (
            f"note: {out['model']} does not record its training split, so whether these "
            f"{out['n_files']} files were seen in training is unknown"
        )
    if not (ov["train"] or ov["val"]):
        return None
    parts = [f"{ov['train']} in its training split"] if ov["train"] else []
    parts += [f"{ov['val']} in its validation split"] if ov["val"] else []
    return (
        f"warning: of the {out['n_files']} files scored, {' and '.join(parts)} of {out['model']}: "
        f"these are not held-out scores (held out: {ov['held_out']}; --split test scores only its test files)"
    )


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.core import analyses

    m = load_model(args)
    out = analyses.evaluate(
        m,
        args.data,
        split=args.split,
        task=args.task,
        vote=args.vote,
        per_file=args.per_file,
        cache=None if args.no_cache else "default",
    )
    warning = overlap_warning(out)
    if warning:
        print(f"evaluate: {warning}", file=sys.stderr, flush=True)
    if args.json:
        print_json(out)
        return 0
    which, n = out["split"], out["n_files"]
    if out["multilabel"]:
        print(
            f"{m.name} on {which} ({n} files, {out['n_patches']} patches): mean ROC-AUC "
            f"{_f(out['roc_auc_mean'])}, mean PR-AUC {_f(out['pr_auc_mean'])}"
        )
        for lab in m.labels:
            print(f"  {lab:>12}: ROC-AUC {_f(out['roc_auc'][lab])}  PR-AUC {_f(out['pr_auc'][lab])}")
    elif out["kind"] == "audio":
        print(
            f"{m.name} on {which} ({n} files, {out['n_patches']} patches): accuracy "
            f"{_f(out['accuracy'])} per patch, {_f(out['track_accuracy_mean'])} per file by mean probability, "
            f"{_f(out['track_accuracy_majority'])} by majority vote (chance {out['chance']:.3f})"
        )
    else:
        print(f"{m.name} on {which} ({n} MIDI files): accuracy {_f(out['accuracy'])} (chance {out['chance']:.3f})")
    if not out["multilabel"]:
        for lab, acc in out["per_class_accuracy"].items():
            print(f"  {lab:>12}: {_f(acc)}")
    for row in out.get("files", []):
        where = f" [{row['split']}]" if row.get("split") else ""
        print(f"  {'ok ' if row['correct'] else 'BAD'} {row['file']}{where}: {row['predicted']} (true {row['label']})")
    for item in out["skipped"]:
        print(f"  skipped {item['file']}: {item['reason']}")
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
