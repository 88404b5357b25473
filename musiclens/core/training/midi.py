"""MIDI folder datasets (``root/<label>/*.mid``) and LSTM training, as cancellable generators.

The same steps as audio training, with the same event types
(:mod:`musiclens.core.training.events`)::

    data = None
    for p in load_folder(root, spec, seed=0):        # PrepareProgress per file
        data = p.data or data                        # MidiDataset, set on the last step
    for ev in train_midi_lstm(data, epochs=30):      # Progress: "batch", "epoch", ..., "done"
        print(ev.line()); model = ev.model           # best-on-validation model so far

The folder is scanned by :func:`~musiclens.core.training.data.scan_midi_folder` and split by
:func:`~musiclens.core.training.data.split_by_track` like an audio folder: **by file**,
stratified per label, seeded 80/10/10, so no piece is in two splits. :func:`train_on_folder`
is the whole run (read, train, evaluate, save, record the split in ``model.json``) that
:func:`musiclens.core.training.train` hands MIDI folders to.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core.device import resolve_device
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models.inputs import NoteSpec
from musiclens.core.models.midi_lstm import build_midi_lstm
from musiclens.core.models.registry import LoadedModel
from musiclens.core.training.data.scan import Dataset, scan_midi_folder
from musiclens.core.training.data.splits import SPLITS, Split, split_by_track
from musiclens.core.training.events import Finished, PrepareProgress, Progress, is_cancelled

__all__ = [
    "MidiDataset",
    "load_folder",
    "read_windows",
    "fit_normalisation",
    "train_midi_lstm",
    "evaluate",
    "predict_windows",
    "train_on_folder",
    "MIDI_DEFAULTS",
    "SPEC_KEYS",
    "MODEL_KEYS",
]

#: Training settings of a MIDI run where the caller gives none (the LSTM's own defaults).
MIDI_DEFAULTS: dict[str, Any] = {"epochs": 30, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "patience": None}
#: ``model_params`` of :func:`train_on_folder`: the note window and the network.
SPEC_KEYS = ("n_notes", "short", "min_notes", "drop_drums")
MODEL_KEYS = ("hidden", "layers", "dropout", "label_smoothing")


@dataclass
class MidiDataset:
    """Note windows per split: ``x[split]`` (M, N, 3) float32, ``mask`` (M, N) bool, ``y`` (M,) int64.

    ``files[split]`` are the files read (in the order of ``x``), ``split`` the split made
    before reading (its track ids are what ``model.json`` records)."""

    labels: list[str]
    spec: NoteSpec
    x: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    files: dict[str, list[Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    root: Path | None = None
    split: Split | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per split and label."""
        return {s: {lab: int((self.y[s] == k).sum()) for k, lab in enumerate(self.labels)} for s in SPLITS}

    def summary(self) -> str:
        parts = [f"{s}: " + ", ".join(f"{lab} {n}" for lab, n in c.items()) for s, c in self.counts().items()]
        return "; ".join(parts) + f"; skipped {len(self.skipped)} file(s)"


def _read_split(
    split: Split, spec: NoteSpec
) -> Generator[PrepareProgress, None, tuple[dict[str, dict[str, list[Any]]], list[tuple[Path, str]], int]]:
    """Read every file of ``split`` with ``spec`` -> per split ``{"x": features, "m": masks,
    "y": labels, "f": paths}``, the skipped files with the reason, the number of files; one
    :class:`PrepareProgress` per file but the last (the caller's last step carries the data).

    Unreadable files and pieces too short for ``spec`` are skipped; the split was made on
    files first, so skipping never moves a piece between splits."""
    per: dict[str, dict[str, list[Any]]] = {s: {"x": [], "m": [], "y": [], "f": []} for s in SPLITS}
    skipped: list[tuple[Path, str]] = []
    total = sum(len(split.tracks[s]) for s in SPLITS)
    done = 0
    for s in SPLITS:
        for track in split.tracks[s]:
            path = track.files[0]
            error = None
            try:
                feats, mask = spec.window(spec.read(path))
                per[s]["x"].append(feats)
                per[s]["m"].append(mask)
                per[s]["y"].append(track.labels[0])
                per[s]["f"].append(path)
            except MusicLensError as exc:
                error = str(exc)
                skipped.append((path, error))
            done += 1
            if done < total:
                yield PrepareProgress(done, total, track.id, error)
    return per, skipped, total


def read_windows(ds: Dataset, split: Split, spec: NoteSpec) -> Iterator[PrepareProgress]:
    """Read every file of ``split`` with ``spec`` (:func:`_read_split`: unreadable and too
    short pieces are listed in ``data.skipped`` with the reason); one :class:`PrepareProgress`
    per file, the last carrying ``data`` (a :class:`MidiDataset`)."""
    per, skipped, total = yield from _read_split(split, spec)
    n = spec.n_notes

    def stack(s: str, key: str, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
        vals = per[s][key]
        return np.stack(vals).astype(dtype) if vals else np.zeros(shape, dtype=dtype)

    data = MidiDataset(
        labels=list(ds.labels),
        spec=spec,
        x={s: stack(s, "x", (0, n, 3), np.float32) for s in SPLITS},
        mask={s: stack(s, "m", (0, n), bool) for s in SPLITS},
        y={s: np.asarray(per[s]["y"], dtype=np.int64) for s in SPLITS},
        files={s: per[s]["f"] for s in SPLITS},
        skipped=skipped,
        root=Path(ds.root),
        split=split,
    )
    yield PrepareProgress(total, total, None, None, data)


def load_folder(
    root: str | Path,
    spec: NoteSpec,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    labels: Sequence[str] | None = None,
) -> Iterator[PrepareProgress]:
    """Scan ``root/<label>/``, split it by file and read it (:func:`read_windows`)."""
    ds = scan_midi_folder(root, labels=labels)
    split = split_by_track(ds, fractions=fractions, seed=seed)
    data = None
    for step in read_windows(ds, split, spec):
        data = step.data or data
        yield step
    if data is not None and len(data.y["train"]) == 0:
        raise MusicLensError(f"no usable training pieces in {root} (skipped {len(data.skipped)})")


def fit_normalisation(spec: NoteSpec, x: np.ndarray, mask: np.ndarray) -> NoteSpec:
    """``spec`` with ``mean``/``std`` fitted on the real notes of ``x`` (after the time transform)."""
    t = spec.replace(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    z = t.transform(torch.as_tensor(x[mask], dtype=torch.float64)).numpy()
    if len(z) == 0:
        raise MusicLensError("cannot fit the normalisation: no notes")
    std = np.maximum(z.std(axis=0), 1e-3)
    return spec.replace(mean=tuple(float(v) for v in z.mean(axis=0)), std=tuple(float(v) for v in std))


@torch.no_grad()
def predict_windows(model: LoadedModel, x: np.ndarray, mask: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(M, L) probabilities of the note windows ``x`` (M, N, 3) with ``mask`` (M, N)."""
    was = model.net.training
    model.net.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb, mb = model.tensors(x[i : i + batch_size], mask[i : i + batch_size])
            out.append(model.probabilities(model.net(xb, mb)).cpu().numpy())
    finally:
        model.net.train(was)
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def evaluate(
    model: LoadedModel, x: np.ndarray, mask: np.ndarray, y: np.ndarray, *, batch_size: int = 256
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and confusion matrix (rows = true, columns = predicted)."""
    k = len(model.labels)
    conf = np.zeros((k, k), dtype=np.int64)
    if len(y):
        pred = predict_windows(model, x, mask, batch_size=batch_size).argmax(-1)
        np.add.at(conf, (np.asarray(y), pred), 1)
    n = int(conf.sum())
    return {
        "accuracy": float(np.trace(conf) / n) if n else float("nan"),
        "n": n,
        "confusion": conf.tolist(),
        "per_class_accuracy": {
            lab: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, lab in enumerate(model.labels)
        },
    }


def _epoch_loop(
    model: LoadedModel,
    data: Any,
    *,
    epochs: int,
    batches: int,
    settings: dict[str, Any],
    patience: int | None,
    cancel: Any,
    sched: Any,
    batch_indices: Callable[[], Iterable[Any]],
    train_step: Callable[[Any], tuple[float, int]],
    evaluate_split: Callable[[str], dict[str, Any]],
    last_without_val: bool = False,
    train_acc_label: str = "train acc",
) -> Iterator[Progress]:
    """The epoch loop both MIDI trainers share: ``batch_indices()`` gives an epoch's batches
    (each a sequence of example indices), ``train_step(idx)`` trains on one and returns its
    ``(loss, correct)``, ``evaluate_split(split)`` evaluates ``model`` on ``data``'s split.
    Keeps the best epoch on validation (ties: lower training loss; ``last_without_val``: the
    last epoch when there is no validation split), stops early after ``patience`` epochs
    without a better one, and yields ``"batch"``, ``"epoch"`` (with a snapshot of the best
    model so far), then ``"done"`` or ``"cancelled"``."""
    net = model.net
    has_val = len(data.y["val"]) > 0
    keep_last = last_without_val and not has_val
    best = (-1.0, float("inf"))
    best_epoch = 0
    best_state = copy.deepcopy(net.state_dict())
    history: list[dict[str, Any]] = []
    stopped = "epochs"
    epoch = 0
    train_loss = train_acc = val_acc = float("nan")
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        net.train()
        total = correct = 0
        loss_sum = 0.0
        for b, idx in enumerate(batch_indices()):
            if is_cancelled(cancel):
                net.load_state_dict(best_state)
                net.eval()
                model.provenance = {
                    "training": settings,
                    "stopped": "cancelled",
                    "best_epoch": best_epoch,
                    "note": f"cancelled at epoch {epoch}, best val epoch {best_epoch}",
                }
                yield Progress(
                    "cancelled",
                    epoch,
                    epochs,
                    b,
                    batches,
                    history=history,
                    best_epoch=best_epoch,
                    best_score=best[0] if best_epoch else None,
                    stopped="cancelled",
                    model=model,
                )
                return
            loss, n_correct = train_step(idx)
            loss_sum += loss * len(idx)
            correct += n_correct
            total += len(idx)
            yield Progress("batch", epoch, epochs, b + 1, batches, loss=loss, best_epoch=best_epoch)
        sched.step()
        train_loss, train_acc = loss_sum / total, correct / total
        val_acc = evaluate_split("val")["accuracy"] if has_val else train_acc
        if keep_last or (val_acc, -train_loss) > (best[0], -best[1]):
            best = (val_acc, train_loss)
            best_epoch = epoch
            best_state = copy.deepcopy(net.state_dict())
        seconds = time.time() - t0
        metrics = {"train": {"loss": train_loss, "accuracy": train_acc}, "val": {"accuracy": val_acc}}
        history.append({"epoch": epoch, "train": metrics["train"], "val": metrics["val"], "seconds": seconds})
        early = patience is not None and epoch - best_epoch >= patience and epoch < epochs
        if epoch < epochs and not early:
            snapshot = copy.deepcopy(model)
            snapshot.net.load_state_dict(best_state)
            snapshot.net.eval()
            yield Progress(
                "epoch",
                epoch,
                epochs,
                batches,
                batches,
                loss=train_loss,
                metrics=metrics,
                best_epoch=best_epoch,
                best_score=best[0],
                history=history,
                model=snapshot,
                text=(
                    f"epoch {epoch}/{epochs}: loss {train_loss:.4f}, {train_acc_label} {train_acc:.3f}, "
                    f"val acc {val_acc:.3f} (best {best[0]:.3f}), {seconds:.1f} s"
                ),
            )
        if early:
            stopped = "early stopping"
            break
    net.load_state_dict(best_state)
    net.eval()
    metrics_out: dict[str, Any] = {
        "selected_by": "last epoch" if keep_last else "best validation accuracy",
        "epochs": epochs,
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "counts": data.counts(),
        "skipped_files": len(data.skipped),
    }
    for split in ("val", "test"):
        if len(data.y[split]):
            r = evaluate_split(split)
            metrics_out[f"{split}_accuracy"] = r["accuracy"]
            metrics_out[f"{split}_confusion"] = r["confusion"]
    model.provenance = {"metrics": metrics_out, "training": settings, "stopped": stopped, "best_epoch": best_epoch}
    yield Progress(
        "done",
        epoch,
        epochs,
        batches,
        batches,
        loss=train_loss,
        metrics={"train": {"loss": train_loss, "accuracy": train_acc}, "val": {"accuracy": val_acc}},
        history=history,
        best_epoch=best_epoch,
        best_score=best[0],
        stopped=stopped,
        model=model,
        text=f"done: {stopped} after {epoch} epochs, best val acc {best[0]:.3f} (epoch {best_epoch})",
    )


def train_midi_lstm(
    data: MidiDataset,
    *,
    hidden: int = 168,
    layers: int = 2,
    dropout: float = 0.2,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    label_smoothing: float = 0.1,
    patience: int | None = None,
    device: str | torch.device = "cpu",
    name: str = "midi_lstm",
    cancel: Any = None,
) -> Iterator[Progress]:
    """Train an LSTM on ``data``; yield :class:`~musiclens.core.training.events.Progress`
    events: ``"batch"``, then ``"epoch"`` (its ``model`` is the best on validation so far),
    and finally ``"done"`` (or ``"cancelled"``, keeping the best epoch so far).

    The normalisation is fitted on the training split. The model kept is the one with
    the best validation accuracy (ties: lower training loss); with ``patience``, training
    stops after that many epochs without a better one. After the last epoch the test split
    is evaluated and the final event carries a model whose ``provenance["metrics"]`` holds
    validation and test accuracy, confusion matrices and the class counts per split.

    ``label_smoothing`` (default 0.1) keeps the model from saturating (probabilities of
    exactly 1.00), which would make its input gradients vanish and leave saliency and the
    classification flip nothing to work with.
    """
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ParameterError("epochs, batch_size and lr must be positive")
    if patience is not None and patience < 1:
        raise ParameterError(f"patience must be >= 1 (or None), got {patience}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    spec = fit_normalisation(data.spec, data.x["train"], data.mask["train"])
    params = {"n_labels": len(data.labels), "hidden": int(hidden), "layers": int(layers), "dropout": float(dropout)}
    net, layer_list = build_midi_lstm(**params, note_features=spec.to_dict())
    net.to(resolve_device(device) if isinstance(device, str) else device)
    model = LoadedModel(
        name=name,
        net=net,
        spec=spec,
        labels=list(data.labels),
        layers={x.name: x for x in layer_list},
        architecture={"family": "midi_lstm", "params": params},
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
    xt, mt = model.tensors(data.x["train"], data.mask["train"])
    yt = torch.as_tensor(data.y["train"], device=xt.device)
    batches = max(1, math.ceil(len(yt) / batch_size))
    settings = {
        "hidden": hidden,
        "layers": layers,
        "dropout": dropout,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
        "label_smoothing": label_smoothing,
        "patience": patience,
        "split": "by file, per label, seeded",
    }

    def batch_indices() -> list[torch.Tensor]:
        order = torch.randperm(len(yt), generator=gen).to(xt.device)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def train_step(idx: torch.Tensor) -> tuple[float, int]:
        logits = net(xt[idx], mt[idx])
        loss = loss_fn(logits, yt[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return float(loss.detach()), int((logits.argmax(-1) == yt[idx]).sum())

    yield from _epoch_loop(
        model,
        data,
        epochs=epochs,
        batches=batches,
        settings=settings,
        patience=patience,
        cancel=cancel,
        sched=sched,
        batch_indices=batch_indices,
        train_step=train_step,
        evaluate_split=lambda split: evaluate(model, data.x[split], data.mask[split], data.y[split]),
    )


# ============================================================================ whole runs
def train_on_folder(
    root: str | Path,
    *,
    config: Any = None,
    out: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cancel: Any = None,
    model_params: dict[str, Any] | None = None,
    arch: str = "midi-lstm",
) -> Iterator[Any]:
    """Read, split by file, train, evaluate and save a MIDI model: one generator.

    Yields :class:`PrepareProgress` (one per file), the trainer's :class:`Progress`, then
    :class:`Finished` with the model (saved to ``out`` when given and at least one epoch
    ended) and the run's summary (the CLI's JSON). ``config`` is a
    :class:`~musiclens.core.training.loop.TrainConfig` (epochs, batch_size, lr, weight_decay,
    seed, patience, device); ``model_params``: the note window (``n_notes``, ``short``,
    ``min_notes``, ``drop_drums``) and the network (``hidden``, ``layers``, ``dropout``,
    ``label_smoothing``). ``model.json`` records the files of each split (``provenance.data.tracks``).
    """
    if arch == "midi-piece":
        yield from train_piece_on_folder(
            root, config=config, out=out, fractions=fractions, cancel=cancel, model_params=model_params
        )
        return
    if arch != "midi-lstm":
        raise ParameterError(f"{arch!r} is not a MIDI architecture; use midi-piece or midi-lstm")
    params = dict(model_params or {})
    unknown = set(params) - set(SPEC_KEYS) - set(MODEL_KEYS)
    if unknown:
        raise ParameterError(f"unknown MIDI settings {sorted(unknown)}; allowed: {', '.join(SPEC_KEYS + MODEL_KEYS)}")
    spec = NoteSpec(**{k: params[k] for k in SPEC_KEYS if k in params})
    cfg = _settings(config)
    ds = scan_midi_folder(root)
    split = split_by_track(ds, fractions=fractions, seed=cfg["seed"])
    data = None
    for step in read_windows(ds, split, spec):
        data = step.data or data
        yield step
        if is_cancelled(cancel):
            yield Finished(None, {"arch": arch, "kind": "midi", "cancelled": True}, cancelled=True)
            return
    assert data is not None
    if len(data.y["train"]) == 0:
        raise MusicLensError(
            f"no usable training pieces in {root}: {len(data.skipped)} file(s) skipped"
            + (f" (e.g. {data.skipped[0][0]}: {data.skipped[0][1]})" if data.skipped else "")
        )
    name = Path(out).name if out is not None else "midi_lstm"
    last = None
    for ev in train_midi_lstm(
        data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        seed=cfg["seed"],
        patience=cfg["patience"],
        device=cfg["device"],
        name=name,
        cancel=cancel,
        **{k: params[k] for k in MODEL_KEYS if k in params},
    ):
        last = ev
        yield ev
    assert last is not None
    model = last.model
    summary = summary_of(model, data, arch, last)
    model.provenance = dict(
        model.provenance,
        task="labels",
        data={
            "root": str(Path(root).resolve()),
            "kind": "midi",
            "seed": cfg["seed"],
            "fractions": list(split.fractions),
            "tracks": split.ids(),
        },
    )
    keep = last.kind == "done" or last.best_epoch >= 1
    if out is not None and keep:
        model.net.cpu()
        from musiclens.core.models import registry

        registry.save(model, out)
        summary["out"] = str(out)
    if model.provenance.get("note"):
        summary["note"] = model.provenance["note"]
    yield Finished(model, summary, cancelled=last.kind == "cancelled")


def _settings(config: Any) -> dict[str, Any]:
    """A TrainConfig (or None, or a dict) -> the MIDI trainer's settings."""
    out = dict(MIDI_DEFAULTS, seed=0, device="auto")
    if config is None:
        return out
    given = config if isinstance(config, dict) else asdict(config)
    for key in ("epochs", "batch_size", "lr", "weight_decay", "seed", "patience", "device"):
        if key in given:
            out[key] = given[key]
    if given.get("filter_loss"):
        raise ParameterError("the filter loss is for masked-cnn, not midi-lstm")
    if given.get("checkpoint_dir"):
        raise ParameterError("checkpoints and resume are for the audio architectures, not midi-lstm")
    return out


def summary_of(model: LoadedModel, data: MidiDataset, arch: str, last: Progress) -> dict[str, Any]:
    """The run's summary, with the same keys as an audio run's where they mean the same."""
    out: dict[str, Any] = {
        "arch": arch,
        "kind": "midi",
        "classes": list(model.labels),
        "multilabel": False,
        "split": {s: len(data.split.tracks[s]) if data.split else len(data.y[s]) for s in SPLITS},
        "examples": {s: int(len(data.y[s])) for s in SPLITS},
        "chance": 1.0 / len(model.labels),
    }
    details = {}
    for s in SPLITS:
        if len(data.y[s]):
            r = evaluate(model, data.x[s], data.mask[s], data.y[s])
            out[f"{s}_accuracy"] = r["accuracy"]
            details[s] = r
        else:
            out[f"{s}_accuracy"] = None
    out["epochs_run"] = len(last.history)
    out["best_epoch"] = last.best_epoch
    out["stopped"] = last.stopped
    out["test_metrics"] = details.get("test")
    out["skipped"] = [{"file": str(p), "reason": r} for p, r in data.skipped]
    return out


# ============================================================================ whole pieces
#: ``model_params`` of the whole-piece architecture (``midi-piece``): the network and its window training.
PIECE_KEYS = (
    "channels",
    "layers",
    "kernel",
    "embed",
    "dropout",
    "label_smoothing",
    "window",
    "crops",
    "summary",
    "summary_l2",
    "statistics",
    "hidden",
    "votes",
)
#: Training settings of a whole-piece run where the caller gives none (selected by 5-fold CV on
#: jazz/dance, ``bench_midi_jazz_dance.py``: the note statistics alone, linear, 200 epochs).
PIECE_DEFAULTS: dict[str, Any] = {"epochs": 200, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-2, "patience": None}


@dataclass
class PieceDataset:
    """Whole pieces per split: ``x[split]`` a list of (n_i, 7) float32 arrays, ``y`` (M,) int64."""

    labels: list[str]
    spec: NoteSpec
    x: dict[str, list[np.ndarray]]
    y: dict[str, np.ndarray]
    files: dict[str, list[Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    root: Path | None = None
    split: Split | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {lab: int((self.y[s] == k).sum()) for k, lab in enumerate(self.labels)} for s in SPLITS}

    def summary(self) -> str:
        parts = [f"{s}: " + ", ".join(f"{lab} {n}" for lab, n in c.items()) for s, c in self.counts().items()]
        return "; ".join(parts) + f"; skipped {len(self.skipped)} file(s)"


def read_pieces(ds: Dataset, split: Split, spec: NoteSpec) -> Iterator[PrepareProgress]:
    """Read every file of ``split`` whole with ``spec``; the last step carries a :class:`PieceDataset`."""
    per, skipped, total = yield from _read_split(split, spec)
    data = PieceDataset(
        labels=list(ds.labels),
        spec=spec,
        x={s: per[s]["x"] for s in SPLITS},
        y={s: np.asarray(per[s]["y"], dtype=np.int64) for s in SPLITS},
        files={s: per[s]["f"] for s in SPLITS},
        skipped=skipped,
        root=Path(ds.root),
        split=split,
    )
    yield PrepareProgress(total, total, None, None, data)


def random_windows(
    pieces: Sequence[np.ndarray], length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random window of ``length`` notes from each piece: ``(B, length, F)`` features and
    ``(B, length)`` mask (shorter pieces are padded at the end). The window's first step is 0."""
    f = pieces[0].shape[1] if len(pieces) else 7
    out = np.zeros((len(pieces), length, f), np.float32)
    mask = np.zeros((len(pieces), length), bool)
    for i, x in enumerate(pieces):
        a = int(rng.integers(0, max(1, len(x) - length + 1)))
        w = x[a : a + length]
        out[i, : len(w)] = w
        out[i, 0, 1] = 0.0
        mask[i, : len(w)] = True
    return out, mask


@torch.no_grad()
def predict_pieces(model: LoadedModel, pieces: Sequence[np.ndarray], *, stats: np.ndarray | None = None) -> np.ndarray:
    """(M, L) probabilities of whole pieces (each (n_i, F)), one piece at a time; ``stats``
    (M, S): the pieces' note statistics when already computed (a model with that branch)."""
    was = model.net.training
    model.net.eval()
    try:
        out = []
        for i, x in enumerate(pieces):
            extra = {} if stats is None else {"stats": torch.as_tensor(stats[i : i + 1], device=model.device)}
            logits = model.net(*model.tensors(x, np.ones(len(x), bool)), **extra)
            out.append(model.probabilities(logits).cpu().numpy())
    finally:
        model.net.train(was)
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def evaluate_pieces(
    model: LoadedModel, pieces: Sequence[np.ndarray], y: np.ndarray, *, stats: np.ndarray | None = None
) -> dict[str, Any]:
    """Like :func:`evaluate`, on whole pieces (``stats``: as :func:`predict_pieces`)."""
    k = len(model.labels)
    conf = np.zeros((k, k), dtype=np.int64)
    if len(y):
        np.add.at(conf, (np.asarray(y), predict_pieces(model, pieces, stats=stats).argmax(-1)), 1)
    n = int(conf.sum())
    return {
        "accuracy": float(np.trace(conf) / n) if n else float("nan"),
        "n": n,
        "confusion": conf.tolist(),
        "per_class_accuracy": {
            lab: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, lab in enumerate(model.labels)
        },
    }


def train_midi_piece(
    data: PieceDataset,
    *,
    channels: int = 16,
    layers: int = 3,
    kernel: int = 5,
    embed: int = 8,
    dropout: float = 0.3,
    window: int = 256,
    crops: int = 4,
    summary: bool = False,
    summary_l2: float = 0.02,
    statistics: bool = True,
    hidden: int = 0,
    votes: bool = False,
    epochs: int = 200,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    label_smoothing: float = 0.1,
    patience: int | None = None,
    device: str | torch.device = "cpu",
    name: str = "midi_piece",
    cancel: Any = None,
) -> Iterator[Progress]:
    """Train the whole-piece model (:mod:`musiclens.core.models.midi_piece`).

    By default (``statistics``, ``votes=False``): a linear classifier (``hidden`` > 0: an MLP)
    on the whole piece's note statistics (:func:`~musiclens.core.models.midi_piece.statistics_of`,
    standardised on the training pieces; differentiable in every note's presence), each piece
    once per epoch. ``votes``: the note CNN too, trained on random windows of ``window`` notes
    (``crops`` per piece and epoch), a window's logits being its notes' votes plus the other
    branches' logits for the whole piece it was cut from. ``summary``: the older,
    non-differentiable :func:`~musiclens.core.models.midi_piece.piece_summary` branch. The
    weights of the statistics heads get an L2 penalty ``summary_l2``. Validation and test
    read whole pieces.

    Events as :func:`train_midi_lstm`: ``"batch"``, ``"epoch"`` (best-on-validation model so
    far), ``"done"`` or ``"cancelled"``. Without a validation split, the last epoch is kept."""
    from musiclens.core.models.midi_piece import STAT_SQUASH, PieceCNN, build_midi_piece, piece_summary

    if epochs <= 0 or batch_size <= 0 or lr <= 0 or window <= 0 or crops <= 0:
        raise ParameterError("epochs, batch_size, lr, window and crops must be positive")
    if patience is not None and patience < 1:
        raise ParameterError(f"patience must be >= 1 (or None), got {patience}")
    if not (votes or summary or statistics):
        raise ParameterError("midi-piece needs the note votes, the statistics or the summary branch")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    arch_params: dict[str, Any] = {"n_labels": len(data.labels), "channels": channels, "layers": layers}
    arch_params["kernel"] = kernel
    arch_params.update({"embed": embed, "dropout": float(dropout), "summary": bool(summary)})
    arch_params.update({"statistics": bool(statistics), "votes": bool(votes)})
    if statistics:  # new models squash their standardised statistics (issue 17; 0 in older models)
        arch_params["squash"] = STAT_SQUASH
    if hidden > 0:  # (model.json's sizes are >= 1)
        arch_params["hidden"] = int(hidden)
    net, layer_list = build_midi_piece(**arch_params, note_features=data.spec.to_dict())
    assert isinstance(net, PieceCNN)
    train_x, train_y = data.x["train"], data.y["train"]
    summ = np.stack([piece_summary(x) for x in train_x]) if summary else np.zeros((len(train_y), 0), np.float32)
    if summary:
        net.fit_summary(summ)

    def piece_stats(pieces: Sequence[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return np.stack([net.statistics(torch.as_tensor(x[None])).numpy()[0] for x in pieces])

    stats = np.zeros((len(train_y), 0), np.float32)
    if statistics:
        stats = piece_stats(train_x)
        net.fit_statistics(stats)
    # the statistics of the validation and test pieces, computed once (None: no such branch)
    split_stats = {s: piece_stats(data.x[s]) if statistics and len(data.x[s]) else None for s in ("val", "test")}
    dev = resolve_device(device) if isinstance(device, str) else device
    net.to(dev)
    model = LoadedModel(
        name=name,
        net=net,
        spec=data.spec,
        labels=list(data.labels),
        layers={x.name: x for x in layer_list},
        architecture={"family": "midi_piece", "params": arch_params},
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
    settings: dict[str, Any] = dict(
        arch_params, window=window, crops=crops, epochs=epochs, batch_size=batch_size, lr=lr, summary_l2=summary_l2
    )
    settings.update(weight_decay=weight_decay, seed=seed, label_smoothing=label_smoothing, patience=patience)
    settings["split"] = "by file, per label, seeded"
    per_epoch = crops if votes else 1
    batches = max(1, math.ceil(len(train_y) * per_epoch / batch_size))
    stats_t = torch.as_tensor(stats, device=dev)
    summ_t = torch.as_tensor(summ, device=dev)

    def batch_indices() -> list[np.ndarray]:
        order = np.repeat(np.arange(len(train_y)), per_epoch)
        rng.shuffle(order)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def head_penalty() -> torch.Tensor:
        total = torch.zeros((), device=dev)
        for head in ([net.summary_head] if summary else []) + ([net.stat_head] if statistics else []):
            for mod in head.modules():
                if isinstance(mod, nn.Linear):
                    total = total + mod.weight.square().sum()
        return total

    def train_step(idx: np.ndarray) -> tuple[float, int]:
        yt = torch.as_tensor(train_y[idx], device=dev)
        it = torch.as_tensor(idx, device=dev)
        if votes:
            xt, mt = model.tensors(*random_windows([train_x[j] for j in idx], window, rng))
            logits = net(
                xt,
                mt,
                summary=summ_t[it] if summary else None,
                stats=stats_t[it] if statistics else None,
            )
        else:
            logits = torch.zeros((len(idx), len(data.labels)), device=dev)
            if summary:
                logits = logits + net.summary_logits(summ_t[it])
            if statistics:
                logits = logits + net.stat_logits(stats_t[it])
        loss = loss_fn(logits, yt) + summary_l2 * head_penalty()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return float(loss.detach()), int((logits.argmax(-1) == yt).sum())

    yield from _epoch_loop(
        model,
        data,
        epochs=epochs,
        batches=batches,
        settings=settings,
        patience=patience,
        cancel=cancel,
        sched=sched,
        batch_indices=batch_indices,
        train_step=train_step,
        evaluate_split=lambda split: evaluate_pieces(model, data.x[split], data.y[split], stats=split_stats[split]),
        last_without_val=True,
        train_acc_label="train acc (windows)" if votes else "train acc",
    )


def train_piece_on_folder(
    root: str | Path,
    *,
    config: Any = None,
    out: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cancel: Any = None,
    model_params: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """:func:`train_on_folder` for ``midi-piece``: read whole pieces, train on windows, save."""
    arch = "midi-piece"
    params = dict(model_params or {})
    unknown = set(params) - set(PIECE_KEYS)
    if unknown:
        raise ParameterError(f"unknown midi-piece settings {sorted(unknown)}; allowed: {', '.join(PIECE_KEYS)}")
    from musiclens.core.models.inputs import PieceSpec

    spec = PieceSpec()
    cfg = _settings(config)
    ds = scan_midi_folder(root)
    split = split_by_track(ds, fractions=fractions, seed=cfg["seed"])
    data = None
    for step in read_pieces(ds, split, spec):
        data = step.data or data
        yield step
        if is_cancelled(cancel):
            yield Finished(None, {"arch": arch, "kind": "midi", "cancelled": True}, cancelled=True)
            return
    assert isinstance(data, PieceDataset)
    if len(data.y["train"]) == 0:
        raise MusicLensError(
            f"no usable training pieces in {root}: {len(data.skipped)} file(s) skipped"
            + (f" (e.g. {data.skipped[0][0]}: {data.skipped[0][1]})" if data.skipped else "")
        )
    last = None
    for ev in train_midi_piece(
        data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        seed=cfg["seed"],
        patience=cfg["patience"],
        device=cfg["device"],
        name=Path(out).name if out is not None else "midi_piece",
        cancel=cancel,
        **params,
    ):
        last = ev
        yield ev
    assert last is not None
    model = last.model
    summary: dict[str, Any] = {
        "arch": arch,
        "kind": "midi",
        "classes": list(model.labels),
        "multilabel": False,
        "split": {s: len(split.tracks[s]) for s in SPLITS},
        "examples": {s: int(len(data.y[s])) for s in SPLITS},
        "chance": 1.0 / len(model.labels),
    }
    for s in SPLITS:
        r = evaluate_pieces(model, data.x[s], data.y[s]) if len(data.y[s]) else None
        summary[f"{s}_accuracy"] = r["accuracy"] if r else None
        if s == "test":
            summary["test_metrics"] = r
    summary.update(epochs_run=len(last.history), best_epoch=last.best_epoch, stopped=last.stopped)
    summary["skipped"] = [{"file": str(p), "reason": r} for p, r in data.skipped]
    from musiclens.core.models.midi_piece import training_statistics

    model.provenance = dict(
        model.provenance,
        task="labels",
        data={
            "root": str(Path(root).resolve()),
            "kind": "midi",
            "seed": cfg["seed"],
            "fractions": list(split.fractions),
            "tracks": split.ids(),
        },
        training_statistics=training_statistics(data.x["train"]),
    )
    if out is not None and (last.kind == "done" or last.best_epoch >= 1):
        model.net.cpu()
        from musiclens.core.models import registry

        registry.save(model, out)
        summary["out"] = str(out)
    if model.provenance.get("note"):
        summary["note"] = model.provenance["note"]
    yield Finished(model, summary, cancelled=last.kind == "cancelled")
