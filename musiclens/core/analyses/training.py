"""Train and evaluate: thin over :mod:`musiclens.core.training` (one entry point for every
input kind), with the trainers' events filled in as the core's one progress type."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from musiclens.core.analyses.results import Trained
from musiclens.core.progress import Progress


def train_config(options: dict[str, Any], config_class: Any = None) -> Any:
    """The Training panel's ``options`` (epochs, and optionally lr, batch_size, patience:
    None = no early stopping) -> a :class:`~musiclens.core.training.loop.TrainConfig`."""
    if config_class is None:
        from musiclens.core.training.loop import TrainConfig as config_class
    config = config_class(epochs=int(options["epochs"]))
    if "lr" in options:
        config.lr = float(options["lr"])
    if "batch_size" in options:
        config.batch_size = int(options["batch_size"])
    if "patience" in options:
        config.patience = None if options["patience"] is None else int(options["patience"])
    return config


def epoch_curves(metrics: dict[str, Any]) -> dict[str, float]:
    """One epoch's metrics -> the four numbers a training plot draws (train/val loss and
    score: mean ROC-AUC for multi-label models, else accuracy)."""
    train, val = metrics.get("train", {}), metrics.get("val", {})
    key = "roc_auc_mean" if "roc_auc_mean" in train else "accuracy"
    nan = float("nan")
    return {
        "train loss": train.get("loss", nan),
        "val loss": val.get("loss", nan),
        "train score": train.get(key, nan),
        "val score": val.get(key, nan),
    }


def train(
    data: str | Path, out: str | Path | None, arch: str | None = None, *, cancel: Any = None, **options: Any
) -> Generator[Progress, None, Trained]:
    """Train ``arch`` (None: the default of the folder's kind) on the labelled folder ``data``
    and save the model to ``out``; ``options``: :func:`musiclens.core.training.entry.train`'s
    keywords (task, config, fractions, cache, mode, patch_seconds, resume, model_params).

    Yields the trainers' events — :class:`~musiclens.core.training.events.PrepareProgress`
    per file, then :class:`~musiclens.core.training.events.Progress` per batch and epoch —
    which are :class:`musiclens.core.progress.Progress` steps: ``fraction`` (preparing is the
    first 10 %, training the next 85 %), ``message`` and, after an epoch, ``payload`` =
    :func:`epoch_curves`. ``cancel`` (callable or Event) ends the run after the current batch
    *with* its best epoch so far, saved (``Trained.cancelled``); closing the generator
    abandons it. Returns :class:`Trained` (the run's summary: the CLI's JSON)."""
    from musiclens.core.training import entry
    from musiclens.core.training.events import Finished, PrepareProgress

    for ev in entry.train(data, out, arch, cancel=cancel, **options):
        if isinstance(ev, Finished):
            return Trained(ev.summary, ev.model, bool(ev.cancelled))
        if isinstance(ev, PrepareProgress):
            ev.fraction = 0.1 * ev.done / max(1, ev.total)
            ev.message = f"preparing the data: {ev.done}/{ev.total} files" + (
                f" (skipped {ev.track}: {ev.error})" if ev.error else ""
            )
        elif ev.kind == "batch":
            ev.fraction = 0.1 + 0.85 * (ev.epoch - 1 + ev.batch / max(1, ev.batches)) / max(1, ev.epochs)
            ev.message = ev.line()
        elif ev.kind == "epoch":
            ev.fraction = 0.1 + 0.85 * ev.epoch / max(1, ev.epochs)
            ev.message = ev.line()
            ev.payload = epoch_curves(ev.metrics)
        else:
            ev.message = ev.line()
        yield ev
    from musiclens.core.errors import MusicLensError

    raise MusicLensError("training ended without a result")


def evaluate(model: Any, data: str | Path, **options: Any) -> dict[str, Any]:
    """Score ``model`` on the labelled folder ``data``: the ``evaluate`` command's JSON dict
    (see :func:`musiclens.core.training.scoring.evaluate_folder`; ``options``: split, task,
    vote, per_file, cache)."""
    from musiclens.core.training.scoring import evaluate_folder

    return evaluate_folder(model, data, **options)
