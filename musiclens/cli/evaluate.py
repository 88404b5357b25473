"""``musiclens evaluate --model MODEL_DIR --data DIR [--split test|all|train|val] [--json]``.

Default split: the model's own test tracks when ``DIR`` holds them (the track ids are
stored in ``model.json`` at training time), else every track of ``DIR``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of a trained model on a folder dataset")
    p.add_argument("--model", required=True, help="model folder or bundled model name")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                   help="which tracks: auto = the model's test tracks if present, else all")
    p.add_argument("--task", default=None, choices=["genre", "mood", "instruments"],
                   help="default: from the model (multi-label -> instruments)")
    p.add_argument("--no-cache", action="store_true", help="don't use the feature cache")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.core import data as data_mod
    from musiclens.core.errors import MusicLensError
    from musiclens.core.models import registry
    from musiclens.core.train import _nan_to_none, evaluate

    m = registry.load(args.model)
    task = args.task or m.provenance.get("task") or ("instruments" if m.multilabel else "genre")
    ds = data_mod.load_dataset(args.data, task=task, labels=m.labels)
    recorded = (m.provenance.get("data") or {}).get("tracks") or {}
    which = args.split
    if which == "auto":
        which = "test" if set(recorded.get("test", [])) & {t.id for t in ds.tracks} else "all"
    if which == "all":
        chosen = list(ds.tracks)
    else:
        ids = set(recorded.get(which, []))
        if not ids:
            raise MusicLensError(f"{args.model} does not record its {which} tracks; use --split all")
        chosen = [t for t in ds.tracks if t.id in ids]
        if not chosen:
            raise MusicLensError(f"none of the model's {which} tracks are in {args.data}; use --split all")
    split = data_mod.Split({"train": chosen, "val": [], "test": []}, 0, (1.0, 0.0, 0.0))
    cache = None if args.no_cache else data_mod.FeatureCache()
    prepared = data_mod.prepare_all(ds, split, m.front_end, m.patch_frames, cache=cache)
    metrics = evaluate(m, prepared.sets["train"])
    out = {"model": m.name, "data": str(args.data), "split": which, "classes": list(m.labels),
           "multilabel": m.multilabel, "n_tracks": len(chosen)} | metrics
    if not m.multilabel:
        out["chance"] = 1.0 / len(m.labels)
    out["skipped"] = [{"file": p, "reason": r} for p, r in prepared.skipped]
    if args.json:
        print_json(_nan_to_none(out))
        return 0
    if m.multilabel:
        print(f"{m.name} on {which} ({len(chosen)} tracks, {metrics['n_patches']} patches): mean ROC-AUC "
              f"{metrics['roc_auc_mean']:.3f}, mean PR-AUC {metrics['pr_auc_mean']:.3f}")
        for lab in m.labels:
            print(f"  {lab:>12}: ROC-AUC {metrics['roc_auc'][lab]:.3f}  PR-AUC {metrics['pr_auc'][lab]:.3f}")
    else:
        print(f"{m.name} on {which} ({len(chosen)} tracks, {metrics['n_patches']} patches): accuracy "
              f"{metrics['accuracy']:.3f} per patch, {metrics['track_accuracy']:.3f} per track "
              f"(chance {1 / len(m.labels):.3f})")
    for p, r in prepared.skipped:
        print(f"  skipped {p}: {r}")
    return 0
