"""Scoring a trained model on a labelled folder, for every input kind: :func:`evaluate_folder`.

The model's ``model.json`` records the files of its train/val/test split
(``provenance.data.tracks``, track ids = paths relative to the data folder). Evaluation
scores the model's **test** files by default (``split="auto"``: the test files when the folder
holds them, else every file) and always says how many of the files it scored were in the
model's **training** (or validation) split: such scores are not held-out scores.

Audio files are cut into patches; a file's prediction is the mean of its patches'
probabilities (``vote="mean"``, the default) or the label most of its patches predict
(``vote="majority"``; ties go to the higher mean probability). Both track accuracies are
reported. A MIDI file is one window of notes, so it has one prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError

__all__ = ["evaluate_folder", "SPLIT_CHOICES", "VOTES"]

SPLIT_CHOICES = ("auto", "all", "train", "val", "test")
VOTES = ("mean", "majority")


def _choose(
    tracks: list[Any], recorded: dict[str, list[str]], which: str, model_name: str, root: Any
) -> tuple[str, list[Any]]:
    if which not in SPLIT_CHOICES:
        raise ParameterError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {which!r}")
    if which == "auto":
        which = "test" if set(recorded.get("test", [])) & {t.id for t in tracks} else "all"
    if which == "all":
        return which, list(tracks)
    ids = set(recorded.get(which, []))
    if not ids:
        raise MusicLensError(f"{model_name} does not record its {which} files; use --split all")
    chosen = [t for t in tracks if t.id in ids]
    if not chosen:
        raise MusicLensError(f"none of the model's {which} files are in {root}; use --split all")
    return which, chosen


def _overlap(scored_ids: list[str], recorded: dict[str, list[str]]) -> dict[str, Any] | None:
    """How many scored files were in the model's train / val split (None: not recorded)."""
    if not recorded:
        return None
    train, val = set(recorded.get("train", [])), set(recorded.get("val", []))
    in_train = [i for i in scored_ids if i in train]
    in_val = [i for i in scored_ids if i in val]
    return {
        "train": len(in_train),
        "val": len(in_val),
        "held_out": len(scored_ids) - len(in_train) - len(in_val),
        "train_files": in_train,
        "val_files": in_val,
    }


def _split_of(recorded: dict[str, list[str]]) -> dict[str, str]:
    return {i: s for s, ids in recorded.items() for i in ids}


def _confusion_metrics(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    if len(y):
        np.add.at(conf, (y, pred), 1)
    n = int(conf.sum())
    return {
        "accuracy": float(np.trace(conf) / n) if n else None,
        "per_class_accuracy": {
            lab: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, lab in enumerate(labels)
        },
        "confusion": conf.tolist(),
    }


def evaluate_folder(
    model: Any,
    data: str | Path,
    *,
    split: str = "auto",
    task: str | None = None,
    vote: Literal["mean", "majority"] = "mean",
    per_file: bool = False,
    cache: Any = "default",
) -> dict[str, Any]:
    """Score ``model`` (a loaded model of either kind) on the labelled folder ``data``.

    Returns (JSON-ready) ``{"model", "data", "kind", "split", "classes", "multilabel",
    "accuracy", "n_files", "confusion", "per_class_accuracy", "chance", "training_overlap",
    "split_recorded", "skipped"}``; audio adds ``"track_accuracy"`` (by ``vote``),
    ``"track_accuracy_mean"``, ``"track_accuracy_majority"``, ``"vote"``, ``"n_tracks"``,
    ``"n_patches"``, ``"loss"`` (multi-label models: ``roc_auc``/``pr_auc`` instead of
    accuracies); ``per_file`` adds ``"files"``: one ``{"file", "label", "predicted",
    "correct", "probabilities", "split"}`` per file scored (``split``: the model's split it
    was in, or None). ``training_overlap`` is None when ``model.json`` records no split.
    """
    if vote not in VOTES:
        raise ParameterError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
    recorded: dict[str, list[str]] = (model.provenance.get("data") or {}).get("tracks") or {}
    kind = getattr(model, "kind", "audio")
    if kind == "midi":
        out = _evaluate_midi(model, data, split, recorded, per_file)
    elif kind == "audio":
        out = _evaluate_audio(model, data, split, recorded, per_file, task, vote, cache)
    else:
        raise MusicLensError(f"evaluating a {kind} model on a folder is not supported yet")
    out["split_recorded"] = bool(recorded)
    return out


def _file_rows(
    ids: list[str],
    truth: list[Any],
    probs: np.ndarray,
    labels: list[str],
    multilabel: bool,
    recorded: dict[str, list[str]],
    extra: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    where = _split_of(recorded)
    rows = []
    for i, tid in enumerate(ids):
        p = probs[i]
        if multilabel:
            predicted: Any = [lab for lab, v in zip(labels, p) if v >= 0.5]
            label: Any = [labels[k] for k in truth[i]]
            correct = sorted(predicted) == sorted(label)
        else:
            predicted = labels[int(np.argmax(p))]
            label = labels[int(truth[i])]
            correct = predicted == label
        row = {
            "file": tid,
            "label": label,
            "predicted": predicted,
            "correct": bool(correct),
            "probabilities": {lab: float(v) for lab, v in zip(labels, p)},
            "split": where.get(tid),
        }
        if extra is not None:
            row.update(extra[i])
        rows.append(row)
    return rows


def _evaluate_audio(
    m: Any,
    data: str | Path,
    which: str,
    recorded: dict[str, list[str]],
    per_file: bool,
    task: str | None,
    vote: str,
    cache: Any,
) -> dict[str, Any]:
    from musiclens.core.training import data as data_mod
    from musiclens.core.training.data.splits import _group
    from musiclens.core.training.loop import _nan_to_none, metrics_from, predict_set

    task = task or m.provenance.get("task") or ("instruments" if m.multilabel else "genre")
    ds = data_mod.load_dataset(data, task=task, labels=m.labels)
    which, chosen = _choose(ds.tracks, recorded, which, m.name, data)
    split = data_mod.Split({"train": chosen, "val": [], "test": []}, 0, (1.0, 0.0, 0.0))
    if cache == "default":
        cache = data_mod.FeatureCache()
    prepared = data_mod.prepare_all(ds, split, m.front_end, m.patch_frames, cache=cache)
    ps = prepared.sets["train"]
    probs, loss = predict_set(m, ps)
    metrics = metrics_from(probs, ps, m.labels, loss)
    scored = list(ps.track_ids)
    by_id = {t.id: t for t in chosen}
    out: dict[str, Any] = {
        "model": m.name,
        "data": str(data),
        "kind": "audio",
        "split": which,
        "classes": list(m.labels),
        "multilabel": m.multilabel,
        "n_files": len(scored),
        "n_tracks": len({_group(by_id[i]) for i in scored}),
    }
    out.update({k: v for k, v in metrics.items() if k not in ("n_tracks",)})
    n_tr, k = len(scored), len(m.labels)
    mean_probs = np.zeros((n_tr, k))
    counts = np.zeros(n_tr, dtype=np.int64)
    if len(ps):
        np.add.at(mean_probs, ps.track, probs)
        np.add.at(counts, ps.track, 1)
    mean_probs = mean_probs / np.maximum(counts, 1)[:, None]
    extra = [{"n_patches": int(c)} for c in counts]
    if not m.multilabel:
        votes = np.zeros((n_tr, k))
        if len(ps):
            np.add.at(votes, (ps.track, probs.argmax(1)), 1)
        # majority of the patches' labels; ties go to the higher mean probability
        majority = np.array(
            [max(range(k), key=lambda c: (votes[j, c], mean_probs[j, c])) for j in range(n_tr)], dtype=np.int64
        )
        truth = np.array([by_id[i].labels[0] for i in scored], dtype=np.int64)
        acc_mean = float((mean_probs.argmax(1) == truth).mean()) if n_tr else None
        acc_major = float((majority == truth).mean()) if n_tr else None
        out["track_accuracy_mean"] = acc_mean
        out["track_accuracy_majority"] = acc_major
        out["track_accuracy"] = acc_major if vote == "majority" else acc_mean
        out["vote"] = vote
        out["chance"] = 1.0 / k
        for j in range(n_tr):
            extra[j]["predicted_majority"] = m.labels[int(majority[j])]
            extra[j]["predicted_mean"] = m.labels[int(mean_probs[j].argmax())]
        truth_rows: list[Any] = truth.tolist()
        decided = mean_probs.copy()
        if vote == "majority":  # the per-file "predicted" follows the chosen vote
            decided = np.eye(k)[majority] if n_tr else decided
    else:
        truth_rows = [list(by_id[i].labels) for i in scored]
        decided = mean_probs
    out["training_overlap"] = _overlap(scored, recorded)
    out["skipped"] = [{"file": p, "reason": r} for p, r in prepared.skipped]
    if per_file:
        rows = _file_rows(scored, truth_rows, mean_probs, m.labels, m.multilabel, recorded, extra)
        if not m.multilabel and vote == "majority":
            for row, d in zip(rows, decided):
                row["predicted"] = m.labels[int(d.argmax())]
                row["correct"] = row["predicted"] == row["label"]
        out["files"] = rows
    clean: dict[str, Any] = _nan_to_none(out)
    return clean


def _evaluate_midi(
    m: Any, data: str | Path, which: str, recorded: dict[str, list[str]], per_file: bool
) -> dict[str, Any]:
    from musiclens.core.training.data.scan import scan_midi_folder
    from musiclens.core.training.midi import predict_windows

    ds = scan_midi_folder(data, labels=m.labels)
    which, chosen = _choose(ds.tracks, recorded, which, m.name, data)
    xs, masks, ys, ids, skipped = [], [], [], [], []
    for t in chosen:
        try:
            feats, mask = m.spec.window(m.spec.read(t.files[0]))
        except MusicLensError as exc:
            skipped.append({"file": str(t.files[0]), "reason": str(exc)})
            continue
        xs.append(feats)
        masks.append(mask)
        ys.append(t.labels[0])
        ids.append(t.id)
    n = m.spec.n_notes
    y = np.asarray(ys, dtype=np.int64)
    if getattr(m.spec, "whole_piece", False):  # whole pieces of different lengths: one at a time
        from musiclens.core.training.midi import predict_pieces

        probs = predict_pieces(m, xs)
    else:
        x = np.stack(xs).astype(np.float32) if xs else np.zeros((0, n, 3), np.float32)
        mk = np.stack(masks).astype(bool) if masks else np.zeros((0, n), bool)
        probs = predict_windows(m, x, mk)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    out: dict[str, Any] = {
        "model": m.name,
        "data": str(data),
        "kind": "midi",
        "split": which,
        "classes": list(m.labels),
        "multilabel": False,
        "n_files": len(ids),
    }
    out.update(_confusion_metrics(y, pred, m.labels))
    out["chance"] = 1.0 / len(m.labels)
    out["training_overlap"] = _overlap(ids, recorded)
    out["skipped"] = skipped
    if per_file:
        out["files"] = _file_rows(ids, y.tolist(), probs, m.labels, False, recorded)
    return out
