"""What a training run reports: ONE progress type for every trainer, plus the two stage events
around it. No torch import, so the GUI and the CLI can name these types cheaply.

A whole run (:func:`musiclens.core.training.train`) yields, in order:

1. :class:`PrepareProgress` — one per track/file read (audio patches or MIDI note windows);
   the last one carries the prepared data;
2. :class:`Progress` — the trainer's events: ``"batch"``, ``"epoch"``, the probe's
   ``"features"`` and ``"cv"``, and finally ``"done"`` or ``"cancelled"`` (with the model);
3. :class:`Finished` — the model (saved when asked) and the run's summary (the CLI's JSON).

The audio loop, the MusiCNN probe and the MIDI LSTM trainer all yield :class:`Progress`, so
the GUI worker, the CLI and the tests drive them the same way. (The window's job progress,
``musiclens.app.worker.JobProgress``, and the CLI's stderr printer,
``musiclens.cli._progress.Progress``, are display types, not events.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from musiclens.core.progress import Progress as _Step
from musiclens.core.progress import is_cancelled

__all__ = ["Progress", "PrepareProgress", "Finished", "is_cancelled", "run"]

Kind = Literal["batch", "epoch", "features", "cv", "done", "cancelled"]


@dataclass
class Progress(_Step):
    """One event of a trainer (a :class:`musiclens.core.progress.Progress` step: the core's
    one progress type, whose ``fraction``/``message``/``payload`` the analyses layer fills).

    kind : ``"batch"`` (after each batch: ``loss``), ``"epoch"`` (after each epoch:
        ``metrics`` = {"train": {...}, "val": {...}}), ``"features"`` / ``"cv"`` (the probe:
        frozen features ready, one L2 strength scored), ``"done"`` or ``"cancelled"``
        (last event: ``model``, ``history``, ``stopped`` = "epochs" | "early stopping" |
        "fitted" | "cancelled").
    text : a line of its own (else :meth:`line` writes one from the fields).
    predictions : {split: (N, L) probabilities} when the trainer has them already (the
        frozen probe), so the summary need not run the model again.
    cv : the probe's cross-validation report.
    model : the trained model on ``"done"``/``"cancelled"`` (the MIDI trainer also puts its
        best model so far on every ``"epoch"``).
    """

    kind: Kind
    epoch: int
    epochs: int
    batch: int = 0
    batches: int = 0
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: int = 0
    best_score: float | None = None
    patches_per_second: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    model: Any = None
    text: str = ""
    predictions: dict[str, Any] | None = None
    cv: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        """True on the last event of a trainer (``"done"`` or ``"cancelled"``)."""
        return self.kind in ("done", "cancelled")

    def line(self) -> str:
        if self.text:
            return self.text
        if self.kind == "batch":
            loss = "n/a" if self.loss is None else f"{self.loss:.4f}"
            return f"epoch {self.epoch}/{self.epochs} batch {self.batch}/{self.batches}: loss {loss}"
        if self.kind == "epoch":
            tr, va = self.metrics.get("train", {}), self.metrics.get("val", {})
            key = "roc_auc_mean" if "roc_auc_mean" in tr else "accuracy"
            name = "ROC-AUC" if key == "roc_auc_mean" else "acc"
            rate = f", {self.patches_per_second:.0f} patches/s" if self.patches_per_second else ""
            return (
                f"epoch {self.epoch}/{self.epochs}: loss {_fmt(tr.get('loss'), 4)}, train {name} "
                f"{_fmt(tr.get(key))}, val {name} {_fmt(va.get(key))} (best epoch {self.best_epoch})" + rate
            )
        return f"{self.kind}: {self.stopped} after {len(self.history)} epochs (best epoch {self.best_epoch})"


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


@dataclass
class PrepareProgress(_Step):
    """One track (audio) or file (MIDI) read; the last step carries ``data``."""

    done: int
    total: int
    track: str | None = None
    error: str | None = None
    data: Any = None  # PreparedData (audio) or MidiDataset (MIDI), on the last step


@dataclass
class Finished:
    """Last event of a whole run: the trained model and the run's summary."""

    model: Any
    summary: dict[str, Any]
    cancelled: bool = False
    kind: str = "finished"

    def line(self) -> str:
        return "cancelled" if self.cancelled else "finished"


def run(events: Iterator[Any], callback: Callable[[Any], None] | None = None) -> Any:
    """Drive a trainer generator to its end, calling ``callback`` on every event; returns
    the last event (``"done"``/``"cancelled"`` for a trainer, :class:`Finished` for a run)."""
    from musiclens.core.errors import MusicLensError

    last = None
    for ev in events:
        if callback is not None:
            callback(ev)
        last = ev
    if last is None:
        raise MusicLensError("training produced no events")
    return last
