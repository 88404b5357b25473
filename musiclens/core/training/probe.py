"""Training a MusiCNN probe: cached frozen features, grouped cross-validation, a fitted head.

The probe (:mod:`musiclens.core.models.musicnn_probe`) is one network, but only its head
learns (unless ``finetune`` unfreezes the base's top blocks), so training does not run the
base on every step:

1. **features**: every patch of every split goes through the frozen base once; the
   representations (pooled 1506 + penultimate 200 + tag logits 50 per patch) are stored in
   the :class:`~musiclens.core.training.data.FeatureCache`, keyed by the SHA-256 of the patch source
   (the front-end output or audio array), the base's weights digest and the patch grid. A
   second run, or a probe on another representation of the same base, reads them back.
2. **cross-validation** on the *training tracks only*: folds are whole tracks (grouped,
   stratified by label for single-label data), the head is fitted for every L2 strength of
   the grid on k−1 folds (standardised with those folds' statistics) and scored on the
   held-out fold by its log-loss (mean cross-entropy; patch accuracy and track accuracy are
   reported too). The strength with the lowest mean held-out log-loss wins (ties: the
   stronger penalty). Validation and test tracks are never seen (asserted).
3. **fit**: the head is standardised on all training features and fitted with the chosen
   strength by full-batch L-BFGS on ``mean loss + l2/2 · Σ W²`` (biases unpenalised);
   the MLP head starts from a seeded initialisation.
4. **fine-tuning** (optional, ``finetune > 0`` at creation): the fitted probe is then
   trained end to end by :func:`musiclens.core.training.loop.train` (Adam, early stopping on
   validation, checkpoints, resume) with the same penalty on the head; only the unfrozen
   blocks and the head change. This runs the base on every batch (slow on a CPU).

Patch probabilities are averaged per track for the track-level accuracy (as for every
model, :func:`musiclens.core.training.loop.metrics_from`).

:func:`train_probe` is a generator of :class:`~musiclens.core.training.events.Progress`
(with ``text``, ``cv`` and ``predictions`` set), so the CLI, the GUI worker and the tests drive
it like :func:`~musiclens.core.training.loop.train`; :func:`train_on_folder` is the whole run
(scan, split by track, prepare, train, evaluate, save) that
:func:`musiclens.core.training.train` hands ``arch="musicnn-probe"`` to. This module imports
the loop; the loop never imports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models.registry import LoadedModel
from musiclens.core.training import loop as train_mod
from musiclens.core.training.data.cache import FeatureCache
from musiclens.core.training.data.patches import PatchSet, PreparedData
from musiclens.core.training.events import Progress, is_cancelled
from musiclens.core.training.loop import TrainConfig, metrics_from

if TYPE_CHECKING:
    from musiclens.core.models.musicnn_probe import MusicnnProbe, ProbeHead

_Y = TypeVar("_Y")
_R = TypeVar("_R")

__all__ = [
    "ProbeSettings",
    "DEFAULT_L2_GRID",
    "extract",
    "representations",
    "group_folds",
    "fit_head",
    "cross_validate",
    "train_probe",
    "train_on_folder",
]

#: L2 strengths tried by cross-validation (penalty ``l2/2 · Σ W²`` on the mean loss).
DEFAULT_L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
FEATURE_ORDER = ("pooled", "penultimate", "tags")
CACHE_WHAT = "musicnn-probe-features/1"


@dataclass
class ProbeSettings:
    """How the head is fitted.

    l2_grid : L2 strengths tried by cross-validation (one value: no CV, that strength).
    folds : cross-validation folds (whole tracks; fewer if there are fewer training tracks).
    max_iter : L-BFGS iterations per fit.
    batch_size : patches per forward pass of the base when computing features.
    """

    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    folds: int = 5
    max_iter: int = 300
    batch_size: int = 16

    def check(self) -> None:
        grid = tuple(float(v) for v in self.l2_grid)
        if not grid or any(not (v >= 0 and math.isfinite(v)) for v in grid):
            raise ParameterError(f"the L2 grid needs one or more finite values >= 0, got {self.l2_grid}")
        self.l2_grid = grid
        if self.folds < 2:
            raise ParameterError(f"cross-validation needs at least 2 folds, got {self.folds}")
        if self.max_iter < 1 or self.batch_size < 1:
            raise ParameterError("max_iter and batch_size must be >= 1")


# ============================================================================ features
def _probe_net(model: LoadedModel) -> MusicnnProbe:
    from musiclens.core.models.musicnn_probe import MusicnnProbe

    if not isinstance(model.net, MusicnnProbe):
        raise ParameterError(f"{model.name} is not a MusiCNN probe (family {model.architecture.get('family')!r})")
    return model.net


def _array_digest(a: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype}:{a.shape}".encode())
    h.update(a.data.cast("B"))  # a.data: the array's memoryview
    return h.hexdigest()


def extract(
    model: LoadedModel, ps: PatchSet, *, cache: FeatureCache | None = None, batch_size: int = 16, cancel: Any = None
) -> Generator[tuple[int, int], None, dict[str, np.ndarray] | None]:
    """Frozen representations of every patch of ``ps``: a generator of ``(done, total)``
    arrays (source recordings) whose return value (``yield from``) is a dict
    ``{"pooled": (N, 1506), "penultimate": (N, 200), "tags": (N, 50)}`` float32 in the
    order of ``ps.index``, or None when cancelled.

    With ``cache``, each source array's rows are stored under a key made of the array's
    SHA-256, the front end, the patch grid and the base weights' digest."""
    net = _probe_net(model)
    digest = net.base_digest()
    device = next(net.parameters()).device
    dims = [net.dims[k] for k in FEATURE_ORDER]
    out = np.zeros((len(ps), sum(dims)), dtype=np.float32)
    arrays = ps.index[:, 0] if len(ps) else np.zeros(0, np.int64)
    sources = np.unique(arrays)
    was = net.training
    net.eval()
    try:
        for done, a in enumerate(sources, start=1):
            if is_cancelled(cancel):
                return None
            rows = np.flatnonzero(arrays == a)
            starts = ps.index[rows, 1].tolist()

            def compute(rows: np.ndarray = rows) -> np.ndarray:
                parts: list[np.ndarray] = []
                for i in range(0, len(rows), batch_size):
                    x = ps.inputs(rows[i : i + batch_size], device)
                    reps = net.all_representations(x)
                    parts.append(torch.cat([reps[k] for k in FEATURE_ORDER], 1).cpu().numpy())
                return np.concatenate(parts).astype(np.float32)

            if cache is not None:
                spec = {
                    "base": digest,
                    "front_end": ps.front_end.to_dict(),
                    "kind": ps.kind,
                    "patch_frames": ps.patch_frames,
                    "starts": starts,
                }
                key = cache.key([_array_digest(ps.arrays[int(a)])], spec, CACHE_WHAT)
                feats = np.asarray(cache.get_or_compute(key, compute))
            else:
                feats = compute()
            out[rows] = feats
            yield done, len(sources)
    finally:
        net.train(was)
    splits = np.cumsum([0] + dims)
    return {k: out[:, splits[i] : splits[i + 1]] for i, k in enumerate(FEATURE_ORDER)}


def representations(
    model: LoadedModel, ps: PatchSet, *, cache: FeatureCache | None = None, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """:func:`extract` run to the end."""
    gen = extract(model, ps, cache=cache, batch_size=batch_size)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            value: dict[str, np.ndarray] = stop.value  # not cancelled: never None
            return value


# ============================================================================ folds and fits
def group_folds(groups: Sequence[str] | np.ndarray, y: np.ndarray | None, k: int, *, seed: int = 0) -> np.ndarray:
    """A fold number (0..k−1) for every row, the same for all rows of a group (track).

    Groups are shuffled (seeded) and dealt round-robin into the folds; with single-label
    ``y`` (N,) this is done label by label (each group's label is its first row's), with
    a running offset so the folds stay balanced. ``k`` is capped at the number of groups.
    """
    group_of = np.asarray(groups)
    uniq = list(dict.fromkeys(group_of.tolist()))
    k = max(1, min(int(k), len(uniq)))
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    if y is not None and np.asarray(y).ndim == 1:
        y = np.asarray(y)
        first = {g: int(y[np.flatnonzero(group_of == g)[0]]) for g in uniq}
        offset = 0
        for lab in sorted(set(first.values())):
            members = sorted(g for g in uniq if first[g] == lab)
            for i, j in enumerate(rng.permutation(len(members))):
                fold_of[members[j]] = (offset + i) % k
            offset += len(members)
    else:
        members = sorted(uniq)
        for i, j in enumerate(rng.permutation(len(members))):
            fold_of[members[j]] = i % k
    return np.array([fold_of[g] for g in group_of.tolist()], dtype=np.int64)


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)


def _targets(y: np.ndarray, multilabel: bool) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y, dtype=np.float32 if multilabel else np.int64))


def fit_head(
    head: ProbeHead, X: np.ndarray, y: np.ndarray, *, l2: float, multilabel: bool, seed: int = 0, max_iter: int = 300
) -> float:
    """Fit a :class:`~musiclens.core.models.musicnn_probe.ProbeHead` on features ``X`` (N, D):
    standardise on X, reset (seeded), then full-batch L-BFGS on ``mean loss + l2/2 · Σ W²``.
    Returns the final objective."""
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))
    t = _targets(y, multilabel)
    head.scale.fit(x)
    head.reset(seed)
    head.train()
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=int(max_iter),
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
    )

    def objective() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss: torch.Tensor = _loss(head(x), t, multilabel) + 0.5 * float(l2) * sum(
            w.pow(2).sum() for w in head.weights()
        )
        loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward unannotated
        return loss

    with torch.enable_grad():
        opt.step(objective)  # type: ignore[no-untyped-call]  # torch declares LBFGS.step unannotated
        final = float(objective().detach())
    head.eval()
    return final


@torch.no_grad()
def _probabilities(head: ProbeHead, X: np.ndarray, multilabel: bool) -> np.ndarray:
    logits = head(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    probs: np.ndarray = (torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)).numpy()
    return probs


def _scores(probs: np.ndarray, y: np.ndarray, groups: np.ndarray, multilabel: bool) -> dict[str, float]:
    eps = 1e-7
    p = np.clip(probs, eps, 1 - eps)
    if multilabel:
        ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return {"log_loss": ll, "accuracy": float(np.mean((probs >= 0.5) == (y >= 0.5)))}
    ll = float(-np.mean(np.log(p[np.arange(len(y)), y])))
    acc = float(np.mean(probs.argmax(1) == y))
    tracks = list(dict.fromkeys(groups.tolist()))
    hits = [int(probs[groups == g].mean(0).argmax() == y[groups == g][0]) for g in tracks]
    return {"log_loss": ll, "accuracy": acc, "track_accuracy": float(np.mean(hits))}


def cross_validate(
    head_factory: Callable[[], ProbeHead],
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    *,
    multilabel: bool,
    grid: Sequence[float],
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 300,
    cancel: Any = None,
) -> Generator[tuple[int, int], None, dict[str, Any] | None]:
    """Grouped k-fold cross-validation of the L2 strength: a generator of ``(fits done,
    fits)`` whose return value is the CV report (None when cancelled)::

        {"l2": chosen, "grid": [...], "folds": k, "grouped_by": "track", "scoring": "log-loss",
         "log_loss_mean": [...], "log_loss_std": [...], "accuracy_mean": [...], ...,
         "fold_tracks": [[track ids of fold 0], ...]}

    ``head_factory()`` makes a fresh head; ``groups`` (N,) are the rows' track ids.
    """
    group_of = np.asarray(groups)
    fold = group_folds(group_of, None if multilabel else y, folds, seed=seed)
    k = int(fold.max()) + 1 if len(fold) else 0
    grid = [float(v) for v in grid]
    if k < 2:
        return {
            "l2": grid[0] if len(grid) == 1 else None,
            "grid": grid,
            "folds": k,
            "skipped": "fewer than two training tracks: no cross-validation",
        }
    per: dict[str, list[list[float]]] = {}
    total, done = len(grid) * k, 0
    for lam in grid:
        runs: dict[str, list[float]] = {}
        for f in range(k):
            if is_cancelled(cancel):
                return None
            tr, te = fold != f, fold == f
            head = head_factory()
            fit_head(head, X[tr], y[tr], l2=lam, multilabel=multilabel, seed=seed + f, max_iter=max_iter)
            for key, v in _scores(_probabilities(head, X[te], multilabel), y[te], group_of[te], multilabel).items():
                runs.setdefault(key, []).append(v)
            done += 1
            yield done, total
        for key, vs in runs.items():
            per.setdefault(key, []).append(vs)
    report: dict[str, Any] = {"grid": grid, "folds": k, "grouped_by": "track", "scoring": "log-loss", "seed": int(seed)}
    for key, rows in per.items():
        report[f"{key}_mean"] = [float(np.mean(r)) for r in rows]
        report[f"{key}_std"] = [float(np.std(r)) for r in rows]
    means = np.asarray(report["log_loss_mean"])
    best = min(range(len(grid)), key=lambda i: (round(float(means[i]), 12), -grid[i]))
    report["l2"] = grid[best]
    report["fold_tracks"] = [sorted(set(group_of[fold == f].tolist())) for f in range(k)]
    return report


# ============================================================================ training
def _run(gen: Generator[_Y, None, _R]) -> tuple[list[_Y], _R]:
    """Drive a generator-with-return to its end, collecting what it yields."""
    items: list[_Y] = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def train_probe(
    model: LoadedModel,
    data: PreparedData,
    config: TrainConfig | None = None,
    *,
    settings: ProbeSettings | None = None,
    cache: FeatureCache | None = None,
    cancel: Any = None,
    resume: str | Path | None = None,
) -> Iterator[Progress]:
    """Fit ``model``'s head on ``data`` (see the module doc); fine-tune if the model says so.

    Yields ``"batch"`` events while features are computed and while CV fits run (so the GUI
    shows progress), ``"features"``, one ``"cv"`` per L2 strength, an ``"epoch"`` event
    for the fitted head (train and validation metrics), then — with fine-tuning — the
    events of :func:`musiclens.core.training.loop.train`, and finally ``"done"`` (or
    ``"cancelled"``). The model is changed in place; its provenance records the CV.
    """
    cfg = config or TrainConfig()
    cfg.check()
    st = settings or ProbeSettings()
    st.check()
    net = _probe_net(model)
    if list(data.labels) != list(model.labels):
        raise MusicLensError(f"the data's labels {data.labels} are not the model's {model.labels}")
    if data.multilabel != model.multilabel:
        raise MusicLensError("the data is multi-label but the model is not (or the reverse)")
    if resume is not None and net.finetune == 0:
        raise ParameterError("resume applies to fine-tuning runs only (a frozen probe's head fits in seconds)")
    ids = data.split.ids()
    held_out = set(ids["val"]) | set(ids["test"])
    base_before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("head.")}

    def cancelled(epoch: int = 1) -> Progress:
        net.eval()
        return Progress(
            "cancelled",
            epoch,
            1,
            stopped="cancelled",
            model=train_mod._finish(model, [], cfg, "cancelled", 0),
            text="cancelled",
        )

    # ---------------------------------------------------------------- 1. features
    t0 = time.perf_counter()
    hits0, misses0 = (cache.hits, cache.misses) if cache is not None else (0, 0)
    feats: dict[str, np.ndarray] = {}
    total = sum(len(np.unique(data.sets[s].index[:, 0])) for s in data.sets)
    done = 0
    for s, ps in data.sets.items():
        gen = extract(model, ps, cache=cache, batch_size=st.batch_size, cancel=cancel)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                value = stop.value
                break
            done += 1
            yield Progress("batch", 1, 1, done, total, text=f"MusiCNN features: {done}/{total} recordings")
        if value is None:
            yield cancelled()
            return
        feats[s] = value[net.features]
    seconds = time.perf_counter() - t0
    hits = (cache.hits - hits0) if cache is not None else 0
    misses = (cache.misses - misses0) if cache is not None else total
    yield Progress(
        "features",
        1,
        1,
        text=(
            f"features: {net.features} ({feats['train'].shape[1]} values per patch) of "
            f"{sum(len(f) for f in feats.values())} patches in {seconds:.1f} s "
            f"(cache: {hits} read, {misses} computed)"
        ),
    )

    # ---------------------------------------------------------------- 2. cross-validation
    train_set = data.sets["train"]
    groups = np.asarray(train_set.track_ids, dtype=object)[train_set.track].astype(str)
    leak = set(groups.tolist()) & held_out
    assert not leak, f"cross-validation would see validation/test tracks: {sorted(leak)[:3]}"
    X, y = feats["train"], train_set.y
    d, n_labels = X.shape[1], len(model.labels)
    kind, hidden = net.head.kind, getattr(net.head, "hidden", None)
    hidden_units = hidden.out_features if hidden is not None else 0

    def head_factory() -> ProbeHead:
        from musiclens.core.models.musicnn_probe import ProbeHead

        return ProbeHead(d, n_labels, kind, hidden_units or 1)

    if len(st.l2_grid) == 1:
        report: dict[str, Any] = {
            "l2": st.l2_grid[0],
            "grid": list(st.l2_grid),
            "skipped": "a single L2 strength was given",
        }
    else:
        cv_gen = cross_validate(
            head_factory,
            X,
            y,
            groups,
            multilabel=model.multilabel,
            grid=st.l2_grid,
            folds=st.folds,
            seed=cfg.seed,
            max_iter=st.max_iter,
            cancel=cancel,
        )
        while True:
            try:
                fits_done, fits = next(cv_gen)
            except StopIteration as stop:
                cv_report: dict[str, Any] | None = stop.value
                break
            yield Progress("batch", 1, 1, fits_done, fits, text=f"cross-validation: fit {fits_done}/{fits}")
        if cv_report is None:
            yield cancelled()
            return
        report = cv_report
        if report.get("l2") is None:  # too few tracks for CV and several strengths
            report["l2"] = 1e-2 if 1e-2 in st.l2_grid else st.l2_grid[len(st.l2_grid) // 2]
        for i, lam in enumerate(report.get("grid", []) if "log_loss_mean" in report else []):
            acc_key = "track_accuracy_mean" if "track_accuracy_mean" in report else "accuracy_mean"
            yield Progress(
                "cv",
                1,
                1,
                cv=report,
                text=(
                    f"cv l2={lam:g}: held-out log-loss {report['log_loss_mean'][i]:.4f} ± "
                    f"{report['log_loss_std'][i]:.4f}, {acc_key.replace('_mean', '').replace('_', ' ')} "
                    f"{report[acc_key][i]:.3f}" + ("  <- chosen" if lam == report["l2"] else "")
                ),
            )
    l2 = float(report["l2"])

    # ---------------------------------------------------------------- 3. the head
    t1 = time.perf_counter()
    fit_head(net.head, X, y, l2=l2, multilabel=model.multilabel, seed=cfg.seed, max_iter=st.max_iter)
    net.l2 = l2
    fit_seconds = time.perf_counter() - t1
    preds = {s: _probabilities(net.head, feats[s], model.multilabel) for s in data.sets}
    m_train = metrics_from(
        preds["train"], train_set, model.labels, _mean_loss(preds["train"], train_set.y, model.multilabel)
    )
    val_set = data.sets["val"]
    m_val = (
        metrics_from(preds["val"], val_set, model.labels, _mean_loss(preds["val"], val_set.y, model.multilabel))
        if len(val_set)
        else {}
    )
    train_metrics = {"loss": m_train["loss"]}
    for key in ("accuracy", "roc_auc_mean", "pr_auc_mean"):
        if key in m_train:
            train_metrics[key] = m_train[key]
    record = {
        "epoch": 1,
        "train": train_mod._nan_to_none(train_metrics),
        "val": train_mod._nan_to_none(train_mod._brief(m_val)),
        "seconds": fit_seconds,
        "patches_per_second": len(train_set) / fit_seconds if fit_seconds > 0 else None,
        "fit": "head (L-BFGS on cached features)",
        "l2": l2,
    }
    history = [record]
    score = train_mod._score(m_val) if m_val else -m_train["loss"]
    yield Progress(
        "epoch",
        1,
        1,
        1,
        1,
        loss=m_train["loss"],
        metrics={"train": train_metrics, "val": m_val},
        best_epoch=1,
        best_score=train_mod._finite(score),
        history=history,
        text=(
            f"head fitted (l2={l2:g}) in {fit_seconds:.2f} s: train loss {m_train['loss']:.4f}, "
            + ", ".join(f"{s} {_headline(m)}" for s, m in (("train", m_train), ("val", m_val)) if m)
        ),
    )
    model.provenance = dict(
        model.provenance,
        probe=dict(
            model.provenance.get("probe", {}),
            l2=l2,
            cv=report,
            settings=asdict(st),
            cv_tracks=sorted(set(groups.tolist())),
            feature_cache={"read": hits, "computed": misses, "seconds": round(seconds, 3)},
        ),
    )

    # ---------------------------------------------------------------- 4. fine-tuning
    if net.finetune > 0:
        last = None
        for ev in train_mod.train(model, data, cfg, cancel=cancel, resume=resume):
            last = ev
            if ev.kind in ("done", "cancelled"):
                break
            yield ev
        assert last is not None
        last.history = history + [dict(h, epoch=h["epoch"] + 1) for h in last.history]
        model.provenance = dict(model.provenance, probe=dict(model.provenance["probe"], finetuned=True))
        yield last
        return
    _check_frozen(net, base_before)
    net.eval()
    model = train_mod._finish(model, history, cfg, "fitted", 1)
    yield Progress(
        "done",
        1,
        1,
        1,
        1,
        history=history,
        best_epoch=1,
        best_score=train_mod._finite(score),
        stopped="fitted",
        model=model,
        predictions=preds,
        cv=report,
        text=f"done: head fitted on {len(train_set)} patches of {len(set(groups.tolist()))} training tracks, l2={l2:g}",
    )


def _headline(m: dict[str, Any]) -> str:
    if "roc_auc_mean" in m:
        return f"ROC-AUC {m['roc_auc_mean']:.3f}"
    return f"acc {m['accuracy']:.3f} (tracks {m['track_accuracy']:.3f})"


def _mean_loss(probs: np.ndarray, y: np.ndarray, multilabel: bool) -> float:
    if not len(y):
        return float("nan")
    p = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)
    if multilabel:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def _check_frozen(net: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = net.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:  # a bug, not a user error
        raise AssertionError(f"the frozen base changed while fitting the head: {changed[:3]}")


# ============================================================================ whole runs
PROBE_MODEL_KEYS = ("base", "features", "head", "hidden", "finetune")
PROBE_SETTING_KEYS = ("l2_grid", "folds", "max_iter", "batch_size")


def train_on_folder(
    root: str | Path,
    *,
    task: str = "genre",
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cache: Any = "default",
    mode: str = "features",
    patch_seconds: float | None = None,
    resume: str | Path | None = None,
    cancel: Any = None,
    model_params: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """The whole run for ``arch="musicnn-probe"`` (:func:`musiclens.core.training.train` hands it here).

    ``model_params``: ``base`` (``MSD_musicnn`` / ``MTT_musicnn`` / a MusiCNN folder),
    ``features``, ``head``, ``hidden``, ``finetune`` (see
    :func:`~musiclens.core.models.musicnn_probe.create_probe`) and the :class:`ProbeSettings`
    ``l2_grid``, ``folds``, ``max_iter``, ``batch_size``. The frozen features go to the same
    cache as the front end (``cache``; None: computed in memory).
    """
    from musiclens.core.device import resolve_device
    from musiclens.core.models import study
    from musiclens.core.training import data as data_mod
    from musiclens.core.training.loop import finish_run, prepare_run, summary_of

    cfg = config or TrainConfig()
    cfg.check()
    params = dict(model_params or {})
    unknown = set(params) - set(PROBE_MODEL_KEYS) - set(PROBE_SETTING_KEYS)
    if unknown:
        raise ParameterError(
            f"unknown probe settings {sorted(unknown)}; allowed: {', '.join(PROBE_MODEL_KEYS + PROBE_SETTING_KEYS)}"
        )
    settings = ProbeSettings(**{k: params.pop(k) for k in PROBE_SETTING_KEYS if k in params})
    settings.check()
    ds = data_mod.load_dataset(root, task=task)
    split = data_mod.split_by_track(ds, fractions=fractions, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = study.create("musicnn-probe", ds.labels, multilabel=ds.multilabel, patch_seconds=patch_seconds, **params)
    model.net.to(resolve_device(cfg.device))
    if cache == "default":
        cache = data_mod.FeatureCache()  # used again below for the frozen features
    prepared = yield from prepare_run(model, ds, split, arch="musicnn-probe", cache=cache, mode=mode, cancel=cancel)
    if prepared is None:
        return
    last = None
    for ev in train_probe(
        model,
        prepared,
        cfg,
        settings=settings,
        cache=cache if mode == "features" else None,
        cancel=cancel,
        resume=resume,
    ):
        last = ev
        yield ev
    device = resolve_device(cfg.device)
    preds = getattr(last, "predictions", None)
    summary = summary_of(model, prepared, "musicnn-probe", last, device=device, predictions=preds)
    pr = model.provenance.get("probe", {})
    summary["probe"] = {
        "base": model.provenance["base"]["name"],
        "features": pr.get("features"),
        "head": pr.get("head"),
        "hidden": pr.get("hidden"),
        "finetune": pr.get("finetune"),
        "l2": pr.get("l2"),
        "cv": pr.get("cv"),
    }
    yield finish_run(model, summary, last, root=root, task=task, ds=ds, split=split, cfg=cfg, out=out)
