"""MIDI folder datasets (``root/<label>/*.mid``) and LSTM training, as cancellable generators.

Both long jobs yield progress objects; the caller (GUI worker, CLI, tests) stops them by
simply not asking for the next step (or ``gen.close()``)::

    data = None
    for p in load_folder(root, spec, seed=0):        # LoadProgress per file
        data = p.dataset or data                     # set on the last step
    for step in train_midi_lstm(data, epochs=30):    # EpochStep per epoch
        print(step.line()); model = step.model       # best-on-validation model so far

Splits are **by file** and stratified per label: each label's files are shuffled with the
seed and cut 80/10/10 (train/val/test), so no piece is in two splits.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.midi import MIDI_EXTENSIONS
from musiclens.core.models.midi_lstm import (
    LoadedMidiModel,
    NoteFeatureSpec,
    build_midi_lstm,
    save_midi_model,
)

__all__ = ["scan_folder", "split_by_file", "load_folder", "fit_normalisation", "train_midi_lstm",
           "evaluate", "save_midi_model", "MidiDataset"]

SPLITS = ("train", "val", "test")


def scan_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """``root/<label>/*.mid[i]`` -> (``[(path, label_index)]`` sorted, labels sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise MusicLensError(f"dataset folder not found: {root}")
    labels = sorted(d.name for d in root.iterdir()
                    if d.is_dir() and any(f.suffix.lower() in MIDI_EXTENSIONS for f in d.iterdir()))
    if len(labels) < 2:
        raise MusicLensError(f"{root} needs at least two sub-folders <label>/ with .mid files; found "
                             f"{labels or 'none'}")
    items = [(f, k) for k, lab in enumerate(labels) for f in sorted((root / lab).iterdir())
             if f.is_file() and f.suffix.lower() in MIDI_EXTENSIONS]
    return items, labels


def split_by_file(items: Sequence[tuple[Path, int]], *, seed: int = 0,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[tuple[Path, int]]]:
    """Seeded, per-label 80/10/10 split of files. Labels with >= 3 files get >= 1 val and test file."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ParameterError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for label in sorted({k for _, k in items}):
        files = sorted((p for p, k in items if k == label), key=str)
        order = rng.permutation(len(files))
        n = len(files)
        n_val = int(round(fractions[1] * n))
        n_test = int(round(fractions[2] * n))
        if n >= 3:
            n_val = max(n_val, 1) if fractions[1] > 0 else 0
            n_test = max(n_test, 1) if fractions[2] > 0 else 0
        n_train = n - n_val - n_test
        for i, j in enumerate(order):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            out[split].append((files[j], label))
    return out


@dataclass
class MidiDataset:
    """Note windows per split: ``x[split]`` (M, N, 3) float32, ``mask`` (M, N) bool, ``y`` (M,) int64."""

    labels: list[str]
    spec: NoteFeatureSpec
    x: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    files: dict[str, list[Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    root: Path | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per split and label."""
        return {s: {lab: int((self.y[s] == k).sum()) for k, lab in enumerate(self.labels)} for s in SPLITS}

    def summary(self) -> str:
        parts = [f"{s}: " + ", ".join(f"{lab} {n}" for lab, n in c.items()) for s, c in self.counts().items()]
        return "; ".join(parts) + f"; skipped {len(self.skipped)} file(s)"


@dataclass
class LoadProgress:
    done: int
    total: int
    path: Path | None = None
    error: str | None = None
    dataset: MidiDataset | None = None  # set on the last step


def load_folder(root: str | Path, spec: NoteFeatureSpec, *, seed: int = 0,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Iterator[LoadProgress]:
    """Read every file of ``root/<label>/`` with ``spec``; yield one step per file.

    Unreadable files and pieces too short for ``spec`` are skipped (listed in
    ``dataset.skipped`` with the reason). The split is made on files first, so skipping
    never moves a piece between splits. The last step carries ``dataset``.
    """
    items, labels = scan_folder(root)
    splits = split_by_file(items, seed=seed, fractions=fractions)
    per: dict[str, dict[str, list]] = {s: {"x": [], "m": [], "y": [], "f": []} for s in SPLITS}
    skipped: list[tuple[Path, str]] = []
    total = len(items)
    done = 0
    for split in SPLITS:
        for path, label in splits[split]:
            error = None
            try:
                feats, mask = spec.window(spec.read(path))
                per[split]["x"].append(feats)
                per[split]["m"].append(mask)
                per[split]["y"].append(label)
                per[split]["f"].append(path)
            except MusicLensError as exc:
                error = str(exc)
                skipped.append((path, error))
            done += 1
            if done < total:
                yield LoadProgress(done, total, path, error)
    n = spec.n_notes

    def stack(split: str, key: str, shape, dtype):
        vals = per[split][key]
        return np.stack(vals).astype(dtype) if vals else np.zeros(shape, dtype=dtype)

    data = MidiDataset(
        labels=labels, spec=spec,
        x={s: stack(s, "x", (0, n, 3), np.float32) for s in SPLITS},
        mask={s: stack(s, "m", (0, n), bool) for s in SPLITS},
        y={s: np.asarray(per[s]["y"], dtype=np.int64) for s in SPLITS},
        files={s: per[s]["f"] for s in SPLITS}, skipped=skipped, root=Path(root))
    if len(data.y["train"]) == 0:
        raise MusicLensError(f"no usable training pieces in {root} (skipped {len(skipped)})")
    yield LoadProgress(total, total, None, None, data)


def fit_normalisation(spec: NoteFeatureSpec, x: np.ndarray, mask: np.ndarray) -> NoteFeatureSpec:
    """``spec`` with ``mean``/``std`` fitted on the real notes of ``x`` (after the time transform)."""
    t = spec.replace(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    z = t.transform(torch.as_tensor(x[mask], dtype=torch.float64)).numpy()
    if len(z) == 0:
        raise MusicLensError("cannot fit the normalisation: no notes")
    std = np.maximum(z.std(axis=0), 1e-3)
    return spec.replace(mean=tuple(float(v) for v in z.mean(axis=0)), std=tuple(float(v) for v in std))


@torch.no_grad()
def evaluate(model: LoadedMidiModel, x: np.ndarray, mask: np.ndarray, y: np.ndarray,
             *, batch_size: int = 256) -> dict:
    """Accuracy and confusion matrix (rows = true, columns = predicted)."""
    model.net.eval()
    k = len(model.labels)
    conf = np.zeros((k, k), dtype=np.int64)
    for i in range(0, len(y), batch_size):
        xb, mb = model.tensors(x[i:i + batch_size], mask[i:i + batch_size])
        pred = model.net(xb, mb).argmax(-1).cpu().numpy()
        for t, p in zip(y[i:i + batch_size], pred):
            conf[t, p] += 1
    n = int(conf.sum())
    return {"accuracy": float(np.trace(conf) / n) if n else float("nan"), "n": n,
            "confusion": conf.tolist()}


@dataclass
class EpochStep:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    best_val_accuracy: float
    seconds: float
    model: LoadedMidiModel  # best on validation so far (final metrics in provenance at the end)
    done: bool = False

    def line(self) -> str:
        return (f"epoch {self.epoch}/{self.epochs}: loss {self.train_loss:.4f}, train acc "
                f"{self.train_accuracy:.3f}, val acc {self.val_accuracy:.3f} (best "
                f"{self.best_val_accuracy:.3f}), {self.seconds:.1f} s")


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
    device: str | torch.device = "cpu",
    name: str = "midi_lstm",
) -> Iterator[EpochStep]:
    """Train an LSTM on ``data``; yield an :class:`EpochStep` per epoch.

    The normalisation is fitted on the training split. The model kept is the one with
    the best validation accuracy (ties: lower training loss). After the last epoch the
    test split is evaluated and the final step (``done=True``) carries a model whose
    ``provenance["metrics"]`` holds validation and test accuracy, confusion matrices and
    the class counts per split.

    ``label_smoothing`` (default 0.1) keeps the model from saturating (probabilities of
    exactly 1.00), which would make its input gradients vanish and leave saliency and the
    classification flip nothing to work with.
    """
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ParameterError("epochs, batch_size and lr must be positive")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    spec = fit_normalisation(data.spec, data.x["train"], data.mask["train"])
    params = {"n_labels": len(data.labels), "hidden": int(hidden), "layers": int(layers),
              "dropout": float(dropout)}
    net, layer_list = build_midi_lstm(**params, note_features=spec.to_dict())
    net.to(device)
    model = LoadedMidiModel(name=name, net=net, spec=spec, labels=list(data.labels),
                            layers={x.name: x for x in layer_list},
                            architecture={"family": "midi_lstm", "params": params})
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
    xt, mt = model.tensors(data.x["train"], data.mask["train"])
    yt = torch.as_tensor(data.y["train"], device=xt.device)
    has_val = len(data.y["val"]) > 0
    best = (-1.0, float("inf"))
    best_state = copy.deepcopy(net.state_dict())
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        net.train()
        order = torch.randperm(len(yt), generator=gen).to(xt.device)
        total = correct = 0
        loss_sum = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            logits = net(xt[idx], mt[idx])
            loss = loss_fn(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == yt[idx]).sum())
            total += len(idx)
        sched.step()
        train_loss, train_acc = loss_sum / total, correct / total
        val_acc = evaluate(model, data.x["val"], data.mask["val"], data.y["val"])["accuracy"] if has_val else train_acc
        if (val_acc, -train_loss) > (best[0], -best[1]):
            best = (val_acc, train_loss)
            best_state = copy.deepcopy(net.state_dict())
        if epoch < epochs:
            snapshot = copy.deepcopy(model)
            snapshot.net.load_state_dict(best_state)
            snapshot.net.eval()
            yield EpochStep(epoch, epochs, train_loss, train_acc, val_acc, best[0], time.time() - t0, snapshot)
    net.load_state_dict(best_state)
    net.eval()
    metrics: dict = {"selected_by": "best validation accuracy", "epochs": epochs,
                     "counts": data.counts(), "skipped_files": len(data.skipped)}
    for split in ("val", "test"):
        if len(data.y[split]):
            r = evaluate(model, data.x[split], data.mask[split], data.y[split])
            metrics[f"{split}_accuracy"] = r["accuracy"]
            metrics[f"{split}_confusion"] = r["confusion"]
    model.provenance = {"metrics": metrics,
                        "training": {"hidden": hidden, "layers": layers, "dropout": dropout, "epochs": epochs,
                                     "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                                     "seed": seed, "label_smoothing": label_smoothing, "split": "by file, per label, seeded 80/10/10"}}
    yield EpochStep(epochs, epochs, train_loss, train_acc, val_acc, best[0], time.time() - t0, model, done=True)
