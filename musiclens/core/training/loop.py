"""One training loop for every audio study model, written as a generator of
:class:`~musiclens.core.training.events.Progress` events.

The GUI worker, the CLI and the tests drive the same code::

    data = prepare_all(ds, split, model.front_end, model.patch_frames, cache=FeatureCache())
    for ev in train(model, data, TrainConfig(epochs=30), cancel=stop_event):
        print(ev.line())                      # "batch", "epoch", then "done" / "cancelled"
    model = ev.model                          # best-on-validation weights, eval mode

The whole run from a folder (scan, split, prepare, train, evaluate, save) is
:func:`musiclens.core.training.train`; :func:`summary_of`, :func:`prepare_run` and
:func:`finish_run` here are its steps shared with the probe (:mod:`.probe`).

* **cancel**: a ``threading.Event`` (or any callable returning True) checked before every
  batch, so at most the batch in flight finishes after it is set; the last event is then
  ``"cancelled"`` with the model at its best epoch so far (as it was if no epoch ended),
  its provenance noting ``"cancelled at epoch k, best val epoch j"``;
  the whole run saves that model to ``out`` as it saves a finished one.
* **resume**: with ``config.checkpoint_dir`` a checkpoint is written after every epoch
  (``model.safetensors``, ``best.safetensors``, ``optimizer.safetensors`` + ``state.json``;
  nothing pickled). ``train(..., resume=dir)`` continues after the last completed epoch and
  gives the same weights as an uninterrupted run (shuffling and dropout are re-seeded per
  epoch from ``config.seed``).
* **early stopping** on the validation score (accuracy, or mean ROC-AUC for multi-label;
  at an equal score, a validation loss lower by more than 0.01 % counts as better) after
  ``patience`` epochs without improvement; the best weights are restored at the end.
* **metrics** (:func:`evaluate`): accuracy, per-class accuracy, confusion matrix and
  per-track accuracy (mean probability over a track's patches) for single-label models;
  ROC-AUC and PR-AUC (average precision) per class and their means for multi-label ones.
* runs on the GPU when one is present (``device="auto"``).
* **several processes** (``world``, a :class:`~musiclens.core.training.distributed.World`
  under torchrun): DDP, each global batch sharded over the processes, metrics gathered;
  only rank 0 writes checkpoints (see :mod:`musiclens.core.training.distributed`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from musiclens.core.device import resolve_device
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models.registry import LoadedModel
from musiclens.core.training.data.patches import PatchSet, PreparedData, PrepareProgress
from musiclens.core.training.events import Finished, Progress, is_cancelled

if TYPE_CHECKING:
    from musiclens.core.training.distributed import World

__all__ = [
    "TrainConfig",
    "train",
    "evaluate",
    "predict_set",
    "metrics_from",
    "roc_auc",
    "average_precision",
    "fit_input_norm",
    "summary_of",
    "prepare_run",
    "finish_run",
    "CHECKPOINT_STATE",
]

CHECKPOINT_STATE = "state.json"
CHECKPOINT_FORMAT = "musiclens-checkpoint/1"


@dataclass
class TrainConfig:
    """Settings of a training run (saved in checkpoints and in the model's provenance).

    filter_loss : weight of Zhang et al.'s filter loss (masked-cnn only; 0 = off).
    patience : epochs without a better validation score before stopping (None = never).
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    patience: int | None = 5
    device: str = "auto"
    filter_loss: float = 0.0
    checkpoint_dir: str | None = None

    def check(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ParameterError(f"learning rate must be > 0, got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ParameterError(f"patience must be >= 1 (or None), got {self.patience}")
        if self.filter_loss < 0:
            raise ParameterError(f"filter-loss weight must be >= 0, got {self.filter_loss}")


# ============================================================================ metrics
def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count 1/2); NaN if one class is absent."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as ``Σ (R_k − R_{k−1}) P_k`` over the distinct
    score thresholds (scikit-learn's ``average_precision_score``); NaN without positives."""
    y = np.asarray(y_true).astype(np.float64)
    s = np.asarray(score, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)


@torch.no_grad()
def predict_set(
    model: LoadedModel, ps: PatchSet, *, batch_size: int = 64, device: torch.device | str | None = None
) -> tuple[np.ndarray, float]:
    """(N, L) probabilities of every patch and the mean loss."""
    probs, total = _predict_rows(model, ps, np.arange(len(ps)), batch_size=batch_size, device=device)
    n = len(ps)
    return probs, total / n if n else float("nan")


@torch.no_grad()
def _predict_rows(
    model: LoadedModel, ps: PatchSet, rows: np.ndarray, *, batch_size: int, device: torch.device | str | None
) -> tuple[np.ndarray, float]:
    """(len(rows), L) probabilities of the patches ``rows`` and their summed loss."""
    device = device or next(model.net.parameters()).device
    was = model.net.training
    model.net.eval()
    probs, total = [], 0.0
    try:
        for i in range(0, len(rows), batch_size):
            idx = rows[i : i + batch_size]
            logits = model.net(ps.inputs(idx, device))
            total += float(_loss(logits, ps.targets(idx, device), ps.multilabel)) * len(idx)
            probs.append(model.probabilities(logits).cpu().numpy())
    finally:
        model.net.train(was)
    return np.concatenate(probs) if probs else np.zeros((0, len(model.labels)), np.float32), total


def _predict_world(
    model: LoadedModel, ps: PatchSet, device: torch.device | str | None, world: World | None
) -> tuple[np.ndarray, float]:
    """:func:`predict_set`, on this process's shard of ``ps`` gathered on every process
    when ``world`` is given (rank 0's buffers first, so every process sees the same model)."""
    if world is None:
        return predict_set(model, ps, device=device)
    world.broadcast_buffers(model.net)
    n = len(ps)
    probs, total = _predict_rows(model, ps, world.shard(np.arange(n)), batch_size=64, device=device)
    probs = world.gather_rows(probs.astype(np.float32), n)
    (total,) = world.sum([total])
    return probs, total / n if n else float("nan")


def _evaluate_world(
    model: LoadedModel, ps: PatchSet, device: torch.device | str | None, world: World | None
) -> dict[str, Any]:
    """:func:`evaluate`, sharded over the processes of ``world`` (the same dict on each)."""
    if world is None:
        return evaluate(model, ps, device=device)
    probs, loss = _predict_world(model, ps, device, world)
    return metrics_from(probs, ps, model.labels, loss)


def metrics_from(probs: np.ndarray, ps: PatchSet, labels: list[str], loss: float | None = None) -> dict[str, Any]:
    """Metrics of probabilities ``probs`` (N, L) against ``ps``'s targets (see :func:`evaluate`)."""
    n = len(ps)
    out: dict[str, Any] = {
        "n_patches": n,
        "n_tracks": len(ps.track_ids),
        "loss": float("nan") if loss is None else float(loss),
    }
    if ps.multilabel:
        roc = {lab: roc_auc(ps.y[:, k], probs[:, k]) if n else float("nan") for k, lab in enumerate(labels)}
        pr = {lab: average_precision(ps.y[:, k], probs[:, k]) if n else float("nan") for k, lab in enumerate(labels)}
        out["roc_auc"] = roc
        out["pr_auc"] = pr
        for key, per_class in (("roc_auc_mean", roc), ("pr_auc_mean", pr)):
            values = list(per_class.values())
            out[key] = float(np.nanmean(values)) if any(not math.isnan(v) for v in values) else float("nan")
        return out
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    if n:
        np.add.at(conf, (ps.y, probs.argmax(axis=1)), 1)
    per_class = {
        lab: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else float("nan") for i, lab in enumerate(labels)
    }
    out["accuracy"] = float(np.trace(conf) / n) if n else float("nan")
    out["per_class_accuracy"] = per_class
    out["confusion"] = conf.tolist()
    # whole-track decision: mean probability over the track's patches
    if n:
        n_tr = len(ps.track_ids)
        sums = np.zeros((n_tr, k))
        np.add.at(sums, ps.track, probs)
        truth = np.zeros(n_tr, dtype=np.int64)
        truth[ps.track] = ps.y
        out["track_accuracy"] = float((sums.argmax(axis=1) == truth).mean())
    else:
        out["track_accuracy"] = float("nan")
    return out


def evaluate(
    model: LoadedModel, ps: PatchSet, *, batch_size: int = 64, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Metrics of ``model`` on a patch set.

    Single-label: ``accuracy`` (per patch), ``per_class_accuracy`` {label: acc},
    ``confusion`` (rows = true label, columns = predicted, label order), ``track_accuracy``.
    Multi-label: ``roc_auc`` / ``pr_auc`` {label: value} and ``roc_auc_mean`` /
    ``pr_auc_mean`` (NaN for a class without positives or negatives). Both: ``loss``,
    ``n_patches``, ``n_tracks``.
    """
    probs, loss = predict_set(model, ps, batch_size=batch_size, device=device)
    return metrics_from(probs, ps, model.labels, loss)


def _score(m: dict[str, Any]) -> float:
    v = m.get("roc_auc_mean", m.get("accuracy", float("nan")))
    return float("-inf") if v is None or math.isnan(v) else float(v)


# ============================================================================ input norm
@torch.no_grad()
def fit_input_norm(
    model: LoadedModel, ps: PatchSet, *, max_patches: int = 2048, seed: int = 0, device: torch.device | str = "cpu"
) -> None:
    """Fit the net's ``norm`` (:class:`~musiclens.core.models.blocks.Standardise`) to the
    per-channel mean and std of (up to ``max_patches``) training patches."""
    norm = getattr(model.net, "norm", None)
    if norm is None or not hasattr(norm, "fit") or len(ps) == 0:
        return
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(ps))[:max_patches])
    s = s2 = None
    count = 0
    for i in range(0, len(idx), 64):
        x = ps.inputs(idx[i : i + 64], device).double()
        xs = x.transpose(0, 1).reshape(x.shape[1], -1)
        s = xs.sum(1) if s is None else s + xs.sum(1)
        s2 = (xs * xs).sum(1) if s2 is None else s2 + (xs * xs).sum(1)
        count += xs.shape[1]
    assert s is not None and s2 is not None  # len(ps) > 0: at least one batch ran
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt()
    norm.fit(mean.float(), std.float())


# ============================================================================ checkpoints
def _save_checkpoint(
    folder: Path,
    model: LoadedModel,
    opt: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}, str(folder / "model.safetensors")
    )
    save_file({k: v.detach().cpu().contiguous() for k, v in best_state.items()}, str(folder / "best.safetensors"))
    osd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in osd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = val
    save_file(tensors, str(folder / "optimizer.safetensors"))
    meta = dict(
        state,
        format=CHECKPOINT_FORMAT,
        architecture=model.architecture,
        labels=model.labels,
        optimizer={"param_groups": osd["param_groups"], "scalars": scalars},
    )
    tmp = folder / (CHECKPOINT_STATE + ".tmp")
    tmp.write_text(json.dumps(_nan_to_none(meta), indent=1) + "\n")
    tmp.replace(folder / CHECKPOINT_STATE)


def _load_checkpoint(
    folder: Path, model: LoadedModel, opt: torch.optim.Optimizer, device: torch.device
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from musiclens.core.models.registry import load_weights

    path = folder / CHECKPOINT_STATE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise MusicLensError(f"{folder} is not a training checkpoint: {CHECKPOINT_STATE} is missing") from None
    except json.JSONDecodeError as exc:
        raise MusicLensError(f"{path} is damaged: {exc}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise MusicLensError(f"{path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if meta.get("architecture") != json.loads(json.dumps(model.architecture)) or meta.get("labels") != model.labels:
        raise MusicLensError(
            f"the checkpoint in {folder} is for a different model ({meta.get('architecture', {}).get('family')}, "
            f"labels {meta.get('labels')}); start a new run or resume with the same architecture and data"
        )
    load_weights(model.net, folder / "model.safetensors")
    model.net.to(device)
    best = {k: v.to(device) for k, v in load_file(str(folder / "best.safetensors")).items()}
    flat = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, val in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val.to(device) if name != "step" else val
    for key, val in meta["optimizer"]["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    groups = meta["optimizer"]["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    return meta, best


# ============================================================================ the loop
def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2**31)


def train(
    model: LoadedModel,
    data: PreparedData,
    config: TrainConfig | None = None,
    *,
    cancel: Any = None,
    resume: str | Path | None = None,
    world: World | None = None,
) -> Iterator[Progress]:
    """Train ``model`` on ``data`` (train split; early stopping on val). See the module doc.

    Parameters
    ----------
    model : an untrained (or partly trained) model, e.g. from :func:`musiclens.core.models.study.create`;
        trained in place.
    data : patches from :func:`musiclens.core.training.data.prepare`; its labels must be the model's.
    cancel : ``threading.Event`` or callable; checked before every batch.
    resume : a checkpoint folder written by an earlier run (``config.checkpoint_dir``).
    world : this process's place in a torchrun job
        (:func:`musiclens.core.training.distributed.init_from_env`): the net is trained with
        DDP on this process's share of every global batch of ``config.batch_size`` patches.

    Yields :class:`Progress` events; the last one is ``"done"`` or ``"cancelled"``.
    """
    cfg = config or TrainConfig()
    cfg.check()
    if list(data.labels) != list(model.labels):
        raise MusicLensError(f"the data's labels {data.labels} are not the model's {model.labels}")
    if data.multilabel != model.multilabel:
        raise MusicLensError(
            "the data is multi-label but the model is not (or the reverse); use --task instruments for stem data"
        )
    train_set, val_set = data.sets["train"], data.sets["val"]
    shape = tuple(train_set.inputs([0]).shape[1:]) if len(train_set) else None
    expected = (model.front_end.channels, model.front_end.n_bins, model.patch_frames)
    if shape != expected:
        raise MusicLensError(f"the patches have shape {shape}, the model takes {expected}")
    device = world.device if world is not None else resolve_device(cfg.device)
    net = model.net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_filter_loss = cfg.filter_loss > 0
    # the architectures' own extra terms (VanillaCNN.filter_loss, ChoiCNN/MusicnnProbe.regularisation)
    filter_loss: Callable[[], torch.Tensor] | None = getattr(net, "filter_loss", None)
    if use_filter_loss and not (filter_loss is not None and getattr(net, "masked", False)):
        raise ParameterError(f"the filter loss needs masked-cnn, not {model.architecture.get('family')}")
    regularisation: Callable[[], torch.Tensor] | None = getattr(net, "regularisation", None)

    history: list[dict[str, Any]] = []
    best_score, best_loss, best_epoch = float("-inf"), float("inf"), 0
    start_epoch = 1
    if resume is not None:
        meta, best_state = _load_checkpoint(Path(resume), model, opt, device)
        history = meta["history"]
        best_epoch = int(meta["best_epoch"])
        best_score = float("-inf") if meta["best_score"] is None else float(meta["best_score"])
        best_loss = float("inf") if meta["best_loss"] is None else float(meta["best_loss"])
        start_epoch = int(meta["epoch"]) + 1
    else:
        torch.manual_seed(_epoch_seed(cfg.seed, 0))
        fit_input_norm(model, train_set, seed=cfg.seed, device=device)
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # several processes: DDP averages the gradients (and starts every process from rank 0's state)
    step_net = world.wrap(net) if world is not None else net
    writes = world is None or world.is_main

    n = len(train_set)
    batches = math.ceil(n / cfg.batch_size)
    stopped = "epochs"
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        torch.manual_seed(_epoch_seed(cfg.seed, epoch))
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        net.train()
        t0 = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        for b in range(batches):
            stop = is_cancelled(cancel)
            if world is not None and cancel is not None:
                stop = world.any(stop)  # every process stops at the same batch
            if stop:
                if world is not None:
                    world.unwrap()
                if best_epoch >= 1:  # keep the best weights so far, as a finished run does
                    net.load_state_dict(best_state)
                net.eval()
                note = (
                    f"cancelled at epoch {epoch}, best val epoch {best_epoch}"
                    if best_epoch >= 1
                    else f"cancelled at epoch {epoch}, before any epoch ended"
                )
                yield Progress(
                    "cancelled",
                    epoch,
                    cfg.epochs,
                    b,
                    batches,
                    history=history,
                    best_epoch=best_epoch,
                    best_score=_finite(best_score),
                    stopped="cancelled",
                    model=_finish(model, history, cfg, "cancelled", best_epoch, note=note),
                )
                return
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            weight, n_real = 1.0, len(idx)
            if world is not None:  # this process's share, weighted so that DDP's mean is the batch's
                mine = world.shard(idx)
                n_real = len(mine)
                weight = n_real * world.world_size / len(idx)
                idx = mine if n_real else idx[:1]  # no patch left for it: one at weight 0
            x = train_set.inputs(idx, device)
            y = train_set.targets(idx, device)
            logits = step_net(x)
            data_loss = _loss(logits, y, model.multilabel)
            loss = data_loss if world is None else data_loss * weight
            if use_filter_loss and filter_loss is not None:
                loss = loss + cfg.filter_loss * filter_loss()
            if regularisation is not None:
                loss = loss + regularisation()
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward unannotated
            opt.step()
            if world is None:
                loss_value = float(loss.detach())
            else:  # this share's mean loss plus the regularisation terms
                loss_value = float(data_loss.detach()) + float((loss - data_loss * weight).detach())
            total_loss += loss_value * n_real
            seen += n_real
            if not model.multilabel and n_real:
                correct += int((logits.argmax(1) == y).sum())
            yield Progress(
                "batch",
                epoch,
                cfg.epochs,
                b + 1,
                batches,
                loss=loss_value,
                best_epoch=best_epoch,
                best_score=_finite(best_score),
            )
        seconds = time.perf_counter() - t0
        if world is not None:  # the whole batch's numbers, the same on every process
            total_loss, correct_f, seen_f = world.sum([total_loss, float(correct), float(seen)])
            correct, seen = int(round(correct_f)), int(round(seen_f))
        train_metrics: dict[str, Any] = {"loss": total_loss / max(seen, 1)}
        if model.multilabel:
            probs, _ = _predict_world(model, train_set, device, world)
            m = metrics_from(probs, train_set, model.labels)
            train_metrics.update(roc_auc_mean=m["roc_auc_mean"], pr_auc_mean=m["pr_auc_mean"])
        else:
            train_metrics["accuracy"] = correct / max(seen, 1)
        if world is not None:  # BN running statistics: rank 0's (see .distributed)
            world.broadcast_buffers(net)
        val_metrics = _evaluate_world(model, val_set, device, world) if len(val_set) else {}
        if val_metrics:
            score, vloss = _score(val_metrics), float(val_metrics["loss"])
        else:  # no validation tracks: follow the training loss
            score, vloss = -train_metrics["loss"], train_metrics["loss"]
        if score > best_score or (score == best_score and vloss < best_loss - 1e-4 * abs(best_loss)):
            best_score, best_loss, best_epoch = score, vloss, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        pps = seen / seconds if seconds > 0 else None
        record = {
            "epoch": epoch,
            "train": _nan_to_none(train_metrics),
            "val": _nan_to_none(_brief(val_metrics)),
            "seconds": seconds,
            "patches_per_second": pps,
        }
        history.append(record)
        if cfg.checkpoint_dir and writes:
            _save_checkpoint(
                Path(cfg.checkpoint_dir),
                model,
                opt,
                best_state,
                {
                    "epoch": epoch,
                    "best_epoch": best_epoch,
                    "best_score": _finite(best_score),
                    "best_loss": _finite(best_loss),
                    "history": history,
                    "config": asdict(cfg),
                },
            )
        yield Progress(
            "epoch",
            epoch,
            cfg.epochs,
            batches,
            batches,
            loss=train_metrics["loss"],
            metrics={"train": train_metrics, "val": val_metrics},
            best_epoch=best_epoch,
            best_score=_finite(best_score),
            patches_per_second=pps,
            history=history,
        )
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience and epoch < cfg.epochs:
            stopped = "early stopping"
            break
    if world is not None:
        world.unwrap()
    net.load_state_dict(best_state)
    net.eval()
    if world is not None:
        model.provenance = dict(model.provenance, distributed=world.describe())
    yield Progress(
        "done",
        epoch,
        cfg.epochs,
        batches,
        batches,
        history=history,
        best_epoch=best_epoch,
        best_score=_finite(best_score),
        stopped=stopped,
        model=_finish(model, history, cfg, stopped, best_epoch),
    )


def _finite(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k in ("loss", "accuracy", "track_accuracy", "roc_auc_mean", "pr_auc_mean")}


def _finish(
    model: LoadedModel,
    history: list[dict[str, Any]],
    cfg: TrainConfig,
    stopped: str,
    best_epoch: int,
    note: str | None = None,
) -> LoadedModel:
    model.provenance = dict(
        model.provenance,
        trained=bool(history),
        epochs_run=len(history),
        best_epoch=best_epoch,
        stopped=stopped,
        training={k: v for k, v in asdict(cfg).items() if k != "checkpoint_dir"},
    )
    model.provenance.pop("note", None)
    if note:
        model.provenance["note"] = note
    return model


# ============================================================================ whole runs
def summary_of(
    model: LoadedModel,
    data: PreparedData,
    arch: str,
    last: Progress | None,
    *,
    device: torch.device | str = "cpu",
    predictions: dict[str, np.ndarray] | None = None,
    world: World | None = None,
) -> dict[str, Any]:
    """The CLI's JSON: arch, classes, track counts per split, accuracies (or AUCs) per split.

    ``predictions`` ({split: (N, L) probabilities}) are used instead of running the model
    where given (the MusiCNN probe computes them from its cached features); ``world``: the
    evaluation is sharded over the processes of a torchrun job (every one must call this)."""
    out: dict[str, Any] = {
        "arch": arch,
        "kind": "audio",
        "classes": list(model.labels),
        "multilabel": model.multilabel,
        "split": {s: len(data.split.tracks[s]) for s in ("train", "val", "test")},
        "patches": {s: len(data.sets[s]) for s in ("train", "val", "test")},
    }
    if not model.multilabel:
        out["chance"] = 1.0 / len(model.labels)
    details: dict[str, Any] = {}
    for s in ("train", "val", "test"):
        if not len(data.sets[s]):
            m = None
        elif predictions is not None and s in predictions:
            m = metrics_from(predictions[s], data.sets[s], model.labels)
        else:
            m = _evaluate_world(model, data.sets[s], device, world)
        if model.multilabel:
            out[f"{s}_roc_auc"] = None if m is None else m["roc_auc_mean"]
            out[f"{s}_pr_auc"] = None if m is None else m["pr_auc_mean"]
        else:
            out[f"{s}_accuracy"] = None if m is None else m["accuracy"]
            out[f"{s}_track_accuracy"] = None if m is None else m["track_accuracy"]
        if m is not None:
            details[s] = m
    out["epochs_run"] = len(last.history) if last is not None else 0
    out["best_epoch"] = last.best_epoch if last is not None else 0
    out["stopped"] = last.stopped if last is not None else None
    out["test_metrics"] = details.get("test")
    out["skipped"] = [{"file": p, "reason": r} for p, r in data.skipped]
    clean: dict[str, Any] = _nan_to_none(out)
    return clean


def prepare_run(
    model: LoadedModel, ds: Any, split: Any, *, arch: str, cache: Any, mode: str, cancel: Any
) -> Generator[PrepareProgress | Finished, None, PreparedData | None]:
    """Yield the dataset preparation steps for ``model`` (``yield from`` it); its value is
    the :class:`PreparedData`, or None after yielding a cancelled :class:`Finished`."""
    from musiclens.core.training.data import FeatureCache, prepare

    if cache == "default":
        cache = FeatureCache()
    prepared = None
    for step in prepare(
        ds,
        split,
        model.front_end,
        model.patch_frames,
        cache=cache if mode == "features" else None,
        mode=mode,  # type: ignore[arg-type]  # "features" | "audio", checked by the callers
    ):
        prepared = step.data or prepared
        yield step
        if is_cancelled(cancel):
            yield Finished(model, {"arch": arch, "cancelled": True}, cancelled=True)
            return None
    return prepared


def finish_run(
    model: LoadedModel,
    summary: dict[str, Any],
    last: Progress | None,
    *,
    root: str | Path,
    task: str,
    ds: Any,
    split: Any,
    cfg: TrainConfig,
    out: str | Path | None,
) -> Finished:
    """Record where the model came from and how it scored, save it to ``out`` when the run
    completed or was cancelled after at least one epoch (its best epoch so far), and return
    the :class:`Finished` event (shared by every architecture)."""
    from musiclens.core.models import registry

    model.provenance = dict(
        model.provenance,
        task=task,
        data={
            "root": str(Path(root).resolve()),
            "kind": ds.kind,
            "seed": cfg.seed,
            "fractions": list(split.fractions),
            "tracks": split.ids(),
        },
        metrics={k: v for k, v in summary.items() if k.endswith(("accuracy", "auc")) or k == "chance"},
    )
    # a cancelled run keeps its best epoch so far (its weights are already restored)
    keep = last is not None and (last.kind == "done" or (last.kind == "cancelled" and last.best_epoch >= 1))
    if out is not None and keep:
        registry.save(model, out)
        summary["out"] = str(out)
    if last is not None and model.provenance.get("note"):
        summary["note"] = model.provenance["note"]
    return Finished(model, summary, cancelled=last is not None and last.kind == "cancelled")
