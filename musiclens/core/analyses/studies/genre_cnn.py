"""Study 1: GTZAN genre CNNs and their interpretation (vanilla, masked (Zhang) and GAP CNNs).

The study reports test accuracies of 68.2 / 69.9 / 68.1 % (vanilla / masked / GAP) on a
**segment-level** split of GTZAN (segments of one clip may be in training and test), then
looks inside the nets: conv-1 filter activations, deconvolution, class activation maps and
auralised filters. Here:

* every track is tested once by **k-fold cross-validation by track** (stratified per genre;
  fold i is the test set, fold i+1 the validation set for early stopping, the rest trains),
  so no segment of a test track is ever trained on. Accuracy is reported per 3-s segment
  (the study's unit) with a 95 % bootstrap interval over test tracks (segments of one track
  are not independent), and per track (mean probability over its segments) with a 95 %
  Wilson interval; paired bootstrap intervals for the differences between the models;
* the same folds drawn over **segments** (the study's protocol, leaky on purpose) on the same
  data, to show how much of the gap comes from the split;
* for one test track per genre of fold 1 (its models are saved under ``models/``): the
  conv-1 activations, the deconvolution of the strongest conv-1 and last-conv filter, the
  CAM of the true genre (exact CAM for the GAP model, Grad-CAM for the other two), and the
  strongest conv-1 filter auralised (mask on the recording's STFT, iSTFT) as WAV.

``data``: a folder with one sub-folder per genre, or several such folders joined by
``os.pathsep`` (``A:B``); a file with the same genre and name in two folders is one track
(the longer copy is used: GTZAN excerpts and the full clips they were cut from).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musiclens.core.analyses.studies.report import StudyReport, claims_table, make_folder, pyplot, write_report
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Progress

if TYPE_CHECKING:
    from musiclens.core.models.registry import LoadedModel
    from musiclens.core.training.data import Dataset, PatchSet, PreparedData, Track

#: the three architectures, in the study's order
ARCHS = ("vanilla-cnn", "masked-cnn", "gap-cnn")
#: the study's test accuracies (%), segment-level split of GTZAN (issue 21, study 1)
STUDY_ACCURACY = {"vanilla-cnn": 68.2, "masked-cnn": 69.9, "gap-cnn": 68.1}
#: per architecture: (the last conv layer, deconvolved; the layer its CAM is read at; CAM method)
INTERPRET = {
    "vanilla-cnn": ("conv 2", "relu2", "Grad-CAM"),
    "masked-cnn": ("conv 2", "conv 2 (masked)", "Grad-CAM"),
    "gap-cnn": ("conv 3", "CAM maps", "CAM"),
}
#: bootstrap resamples of the test tracks
BOOTSTRAP = 2000
#: auralised filters are written at this RMS level (dBFS; the level as computed is in numbers.json)
LISTEN_DBFS = -20.0


@dataclass(frozen=True)
class Settings:
    """folds: k of the cross-validation; run_folds: how many of them are trained and tested;
    by_segment: also run the study's segment-level split (the same folds drawn over segments)."""

    folds: int
    run_folds: int
    epochs: int
    patience: int
    batch_size: int = 32
    lr: float = 1e-3
    by_segment: bool = True


FULL = Settings(folds=5, run_folds=5, epochs=30, patience=5)
#: training is ~80 % of a run: one fold, one protocol and 6 epochs train 18 epochs instead of 48
QUICK = Settings(folds=5, run_folds=1, epochs=6, patience=3, by_segment=False)


# ----------------------------------------------------------------------------- data
def load_genres(data: str | os.PathLike[str] | None) -> tuple[Dataset, list[dict[str, Any]]]:
    """The genre folders of ``data`` as one dataset, and the tracks found in two folders
    (``{"track", "kept", "dropped", "kept_s", "dropped_s", "prefix_identical"}``)."""
    from musiclens.core import audio as audio_io
    from musiclens.core.training.data import Dataset, Track, scan_folder

    if data is None:
        raise ParameterError("genre-cnn needs --data: a folder of recordings in one sub-folder per genre")
    roots = [Path(p) for p in str(data).split(os.pathsep) if p]
    if not roots:
        raise ParameterError("genre-cnn needs --data: a folder of recordings in one sub-folder per genre")
    found: dict[tuple[str, str], tuple[Path, str, float]] = {}
    merged: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for root in roots:
        if not root.is_dir():
            raise ParameterError(f"--data {root} is not a folder; give a folder with one sub-folder per genre")
        try:
            ds = scan_folder(root)
        except MusicLensError as exc:
            raise ParameterError(str(exc)) from None
        skipped += ds.skipped
        for t in ds.tracks:
            label, f = ds.labels[t.labels[0]], t.files[0]
            info = audio_io.info(f)
            seconds = info.frames / info.sample_rate
            key = (label, f.name)
            if key not in found:
                found[key] = (f, t.id, seconds)
                continue
            old, tid, old_s = found[key]
            (kept, kept_s), (dropped, dropped_s) = sorted([(f, seconds), (old, old_s)], key=lambda x: -x[1])
            found[key] = (kept, tid, kept_s)
            merged.append(
                {
                    "track": tid,
                    "kept": str(kept),
                    "dropped": str(dropped),
                    "kept_s": kept_s,
                    "dropped_s": dropped_s,
                    "prefix_identical": _is_prefix(dropped, kept),
                }
            )
    labels = sorted({lab for lab, _ in found})
    if len(labels) < 2:
        raise ParameterError(f"--data has one genre ({labels[0]}); a genre classifier needs two or more sub-folders")
    index = {lab: i for i, lab in enumerate(labels)}
    tracks = [Track(tid, (f,), (index[lab],)) for (lab, _), (f, tid, _) in sorted(found.items())]
    few = {lab: n for lab in labels if (n := sum(1 for k in found if k[0] == lab)) < 3}
    if few:
        raise ParameterError(
            "every genre needs at least 3 tracks (one to test, one to validate, one to train on); "
            + ", ".join(f"{lab} has {n}" for lab, n in few.items())
        )
    return Dataset(roots[0], "folder", labels, False, tracks, skipped), merged


def _is_prefix(short: Path, long: Path) -> bool:
    """Whether the audio of ``short`` is the start of ``long``'s, sample for sample (within
    one 16-bit step), at the file's own rate."""
    import soundfile as sf

    a, sr_a = sf.read(str(short), dtype="float32", always_2d=True)
    b, sr_b = sf.read(str(long), dtype="float32", always_2d=True)
    if sr_a != sr_b or a.shape[1] != b.shape[1] or len(a) > len(b):
        return False
    return bool(np.abs(a - b[: len(a)]).max(initial=0.0) <= 1.0 / 32768)


def track_folds(ds: Dataset, k: int, seed: int = 0) -> list[list[Track]]:
    """``k`` folds of tracks, stratified per genre (each genre's tracks shuffled and dealt in
    turn, continuing where the last genre stopped so the folds stay even)."""
    rng = np.random.default_rng(seed)
    folds: list[list[Track]] = [[] for _ in range(k)]
    turn = 0
    for lab in range(len(ds.labels)):
        ts = sorted((t for t in ds.tracks if t.labels[0] == lab), key=lambda t: t.id)
        for i in rng.permutation(len(ts)):
            folds[turn % k].append(ts[int(i)])
            turn += 1
    return [sorted(f, key=lambda t: t.id) for f in folds]


def segment_folds(ps: PatchSet, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` folds of the segments (patch rows) of ``ps``, stratified per genre, ignoring
    which track a segment comes from (the study's segment-level split)."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for lab in np.unique(ps.y):
        for r in rng.permutation(np.flatnonzero(ps.y == lab)):
            folds[turn % k].append(int(r))
            turn += 1
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]


def row_folds(ps: PatchSet, folds: list[list[Track]]) -> np.ndarray:
    """(N,) int64: the fold (index into ``folds``, from :func:`track_folds`) of every patch row of ``ps``."""
    index = {tid: i for i, tid in enumerate(ps.track_ids)}
    out = np.empty(len(ps), dtype=np.int64)
    for i, fold in enumerate(folds):
        out[np.isin(ps.track, [index[t.id] for t in fold if t.id in index])] = i
    return out


def split_rows(protocol: str, i: int, fold_of_row: np.ndarray, seg_folds: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The patch rows of fold ``i``'s "test", "val" (fold i + 1) and "train" (the others) sets:
    ``"by_track"`` from the track folds (``fold_of_row``, :func:`row_folds`), ``"by_segment"``
    from the segment folds (``seg_folds``, :func:`segment_folds`: a track's segments spread over
    the sets, the study's protocol)."""
    k = len(seg_folds)
    test_i, val_i = i, (i + 1) % k
    if protocol == "by_track":
        return {
            "test": np.flatnonzero(fold_of_row == test_i),
            "val": np.flatnonzero(fold_of_row == val_i),
            "train": np.flatnonzero((fold_of_row != test_i) & (fold_of_row != val_i)),
        }
    return {
        "test": seg_folds[test_i],
        "val": seg_folds[val_i],
        "train": np.sort(np.concatenate([f for j, f in enumerate(seg_folds) if j not in (test_i, val_i)])),
    }


def subset(ps: PatchSet, rows: np.ndarray) -> PatchSet:
    """The patches ``rows`` of ``ps`` (sharing its arrays), tracks renumbered to those present."""
    from musiclens.core.training.data import PatchSet

    uniq, inv = np.unique(ps.track[rows], return_inverse=True)
    return PatchSet(
        ps.kind,
        ps.front_end,
        ps.patch_frames,
        ps.arrays,
        ps.index[rows],
        ps.y[rows],
        inv.astype(np.int64),
        [ps.track_ids[int(u)] for u in uniq],
    )


def _fold_data(
    everything: PreparedData, ds: Dataset, rows: dict[str, np.ndarray], split: Any, *, by_track: bool
) -> PreparedData:
    """One fold's patch sets, cut from ``everything`` (all tracks prepared once) by row."""
    from musiclens.core.training.data import PreparedData

    full = everything.sets["train"]
    sets = {s: subset(full, r) for s, r in rows.items()}
    for a in ("train", "val"):  # checked because a leak would silently inflate the by-track results
        if by_track and set(sets[a].track_ids) & set(sets["test"].track_ids):
            raise AssertionError(f"a test track is also in {a}")
    return PreparedData(sets, list(ds.labels), False, split, everything.skipped, ds)


# ----------------------------------------------------------------------------- statistics
def wilson(correct: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval of ``correct / total`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    if total == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def track_bootstrap(correct: np.ndarray, total: np.ndarray, other: np.ndarray | None = None) -> tuple[float, float]:
    """95 % percentile bootstrap interval over tracks of ``Σ correct / Σ total`` (segment
    accuracy; tracks resampled with their segments), or, with ``other`` (another model's
    correct counts on the same tracks), of the paired difference ``(Σ correct − Σ other) / Σ total``."""
    from scipy.stats import bootstrap

    c = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    if len(c) < 2:
        return (float("nan"), float("nan"))
    if other is None:
        data: tuple[np.ndarray, ...] = (c, n)

        def stat(c: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(c.sum(axis) / n.sum(axis))
    else:
        data = (c, np.asarray(other, dtype=np.float64), n)

        def stat(c: np.ndarray, o: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:  # type: ignore[misc]
            return np.asarray((c.sum(axis) - o.sum(axis)) / n.sum(axis))

    res = bootstrap(
        data,
        stat,
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def per_track(probs: np.ndarray, ps: PatchSet, labels: list[str], fold: int) -> list[dict[str, Any]]:
    """One row per test track: its segments, how many were right, the track's decision
    (mean probability over its segments)."""
    rows = []
    for t, tid in enumerate(ps.track_ids):
        sel = ps.track == t
        truth = int(ps.y[sel][0])
        pred = int(probs[sel].mean(0).argmax())
        rows.append(
            {
                "track": tid,
                "fold": fold,
                "label": labels[truth],
                "segments": int(sel.sum()),
                "segments_correct": int((probs[sel].argmax(1) == truth).sum()),
                "predicted": labels[pred],
                "correct": pred == truth,
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled accuracies of one model over the tested folds, with their intervals."""
    seg_c = sum(r["segments_correct"] for r in rows)
    seg_n = sum(r["segments"] for r in rows)
    tr_c = sum(bool(r["correct"]) for r in rows)
    out: dict[str, Any] = {
        "segments_correct": seg_c,
        "segments": seg_n,
        "segment_accuracy": seg_c / seg_n if seg_n else float("nan"),
        "segment_ci95": list(
            track_bootstrap(np.array([r["segments_correct"] for r in rows]), np.array([r["segments"] for r in rows]))
        ),
        "tracks_correct": tr_c,
        "tracks": len(rows),
        "track_accuracy": tr_c / len(rows) if rows else float("nan"),
        "track_ci95": list(wilson(tr_c, len(rows))),
        "folds": folds,
    }
    if len(folds) > 1:
        for key in ("segment_accuracy", "track_accuracy"):
            v = np.array([f[key] for f in folds])
            out[f"fold_{key}_mean"] = float(v.mean())
            out[f"fold_{key}_std"] = float(v.std())
    return out


# ----------------------------------------------------------------------------- training
def _train_one(
    arch: str, labels: list[str], prepared: PreparedData, cfg: Any, label: str, step: tuple[int, int]
) -> Generator[Progress, None, LoadedModel]:
    import torch

    from musiclens.core.models import study
    from musiclens.core.training.loop import train

    torch.manual_seed(cfg.seed)
    model = study.create(arch, labels)
    last = None
    for ev in train(model, prepared, cfg):
        last = ev
        if ev.kind == "epoch":
            yield Progress(
                fraction=(step[0] + ev.epoch / cfg.epochs) / step[1],
                message=f"{label} {arch}: epoch {ev.epoch}/{cfg.epochs}",
                payload=step,
            )
    assert last is not None and last.model is not None
    trained: LoadedModel = last.model
    return trained


# ----------------------------------------------------------------------------- interpretation
def _patch(m: LoadedModel, path: Path) -> tuple[np.ndarray, float]:
    """The middle whole patch of a recording: (audio (patch_samples,) at the model's rate, start s)."""
    from musiclens.core import audio as audio_io

    fe = m.front_end
    y, _ = audio_io.load(path, sr=fe.sample_rate, mono=True)
    starts = audio_io.patch_starts(fe.n_frames(len(y)), m.patch_frames, m.patch_frames)
    s = starts[len(starts) // 2] * fe.hop
    return np.ascontiguousarray(y[s : s + m.patch_samples], dtype=np.float32), s / fe.sample_rate


def _interpret(m: LoadedModel, arch: str, audio: np.ndarray, target: int) -> dict[str, Any]:
    """On one patch ``audio`` ((patch_samples,) at the model's rate): every conv-1 filter's
    activation and auralised level, the deconvolution of the strongest conv-1 and last-conv
    filter (largest mean square of the positive part), the CAM of ``target``, and the
    conv-1 filter heard loudest, auralised."""
    import torch

    from musiclens.core.analyses.layers import hear_filter
    from musiclens.core.interpret.auralise import filter_levels, layer_output
    from musiclens.core.interpret.cam import cam, grad_cam
    from musiclens.core.interpret.deconv import deconv
    from musiclens.core.interpret.maps import upsample

    last_conv, cam_layer, cam_method = INTERPRET[arch]
    with torch.no_grad():
        x = m.front_end(torch.from_numpy(audio)[None].to(m.device))[..., : m.patch_frames]
        logits = m.net.eval()(x)
        probs = m.probabilities(logits)[0].cpu().numpy()
    levels = filter_levels(m, audio, layer="conv 1")  # maps (16, F, T) before the ReLU, levels (16,)
    k1 = int(np.argmax(levels.energy))
    heard_k = int(np.argmax(levels.level_db))
    a2 = layer_output(m, x, last_conv).clamp_min(0)[0]
    k2 = int(a2.pow(2).mean(dim=(1, 2)).argmax())
    d1 = deconv(m, x, layer="conv 1", filter=k1)[0, 0]
    d2 = deconv(m, x, layer=last_conv, filter=k2)[0, 0]
    out: dict[str, Any] = {}
    if cam_method == "CAM":
        c = cam(m, x, target=target, layer=cam_layer)
        # exactness of CAM on a GAP model: logit = mean CAM + bias
        fc = m.module("fc")
        assert isinstance(fc, torch.nn.Linear)
        bias = float(fc.bias.detach()[target])
        out["cam_identity_error"] = abs(float(logits[0, target]) - (float(c.mean()) + bias))
    else:
        c = grad_cam(m, x, target=target, layer=cam_layer)
    cam_map = upsample(c, x.shape[-2:])[0]
    heard = hear_filter(m, audio, "conv 1", heard_k, normalise_to=LISTEN_DBFS)
    out.update(
        {
            "probabilities": probs,
            "x": x[0, 0].cpu().numpy(),
            "conv1": np.maximum(np.asarray(levels.maps), 0),
            "conv1_energy": np.asarray(levels.energy),
            "conv1_level_db": np.asarray(levels.level_db),
            "conv1_silent": np.asarray(levels.silent),
            "conv1_top": k1,
            "heard_filter": heard_k,
            "last_conv_top": k2,
            "deconv_conv1": d1.cpu().numpy(),
            "deconv_last": d2.cpu().numpy(),
            "cam": cam_map.cpu().numpy(),
            "cam_method": cam_method,
            "heard": heard,
        }
    )
    return out


def _conv1_change(m: LoadedModel, arch: str, labels: list[str]) -> float:
    """How far training moved conv 1: ``‖W − W₀‖ / ‖W₀‖`` (Frobenius), W₀ the weights fold 1
    started from (the same seed as in :func:`_train_one`)."""
    import torch

    from musiclens.core.models import study

    def weight(model: LoadedModel) -> torch.Tensor:
        conv = model.module("conv1")
        assert isinstance(conv, torch.nn.Conv2d)
        return conv.weight.detach().cpu()

    torch.manual_seed(0)
    w0 = weight(study.create(arch, labels))
    return float((weight(m) - w0).norm() / w0.norm())


# ----------------------------------------------------------------------------- figures
def _show(ax: Any, img: np.ndarray, title: str = "", cmap: str = "magma", signed: bool = False) -> None:
    if signed:
        v = float(np.abs(img).max()) or 1.0
        ax.imshow(img, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    else:
        ax.imshow(img, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _figures(
    out: Path, res: dict[str, Any], interp: dict[str, dict[str, dict[str, Any]]], labels: list[str]
) -> list[Path]:
    plt = pyplot()
    files: list[Path] = []

    # 1. accuracy with intervals beside the study's
    fig, ax = plt.subplots(figsize=(12, 4.5))
    series = [("by track: segments", "by_track", "segment"), ("by track: tracks", "by_track", "track")]
    if res.get("by_segment"):
        series.append(("by segment (study's protocol): segments", "by_segment", "segment"))
    width = 0.8 / len(series)
    x = np.arange(len(ARCHS))
    for j, (name, split, unit) in enumerate(series):
        vals = np.array([res[split][a][f"{unit}_accuracy"] for a in ARCHS]) * 100
        ci = np.array([res[split][a][f"{unit}_ci95"] for a in ARCHS]) * 100
        err = np.abs(np.vstack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.bar(x + (j - (len(series) - 1) / 2) * width, vals, width, yerr=np.nan_to_num(err), capsize=3, label=name)
    ax.scatter(x, [STUDY_ACCURACY[a] for a in ARCHS], marker="_", s=900, color="red", zorder=5, label="the study")
    ax.axhline(100 / len(labels), color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x, list(ARCHS))
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Test accuracy with 95 % intervals (segments: bootstrap over tracks; tracks: Wilson)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    files.append(out / "accuracy.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    # 2. confusion matrices (segments, by track, pooled over the tested folds)
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(5 * len(ARCHS), 4.6))
    for ax, a in zip(axes, ARCHS, strict=True):
        conf = np.asarray(res["by_track"][a]["confusion"])
        ax.imshow(conf, cmap="Blues")
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(f"{a} (test segments, by track)", fontsize=9)
    axes[0].set_ylabel("true")
    fig.tight_layout()
    files.append(out / "confusion.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    # 3. per model: conv-1 activations of every filter; input, deconvolutions and CAM
    for a in ARCHS:
        per = interp[a]
        genres = list(per)
        k = per[genres[0]]["conv1"].shape[0]
        fig, axes = plt.subplots(len(genres), k + 1, figsize=(1.1 * (k + 1), 1.0 * len(genres) + 0.6), squeeze=False)
        for r, g in enumerate(genres):
            p = per[g]
            _show(axes[r, 0], p["x"], g if r else f"input\n{g}")
            axes[r, 0].set_ylabel(g, fontsize=7)
            for f in range(k):
                _show(axes[r, f + 1], p["conv1"][f], "" if r else f"filter {f}", cmap="viridis")
                if f == p["conv1_top"]:
                    for s in axes[r, f + 1].spines.values():
                        s.set_color("red")
                        s.set_linewidth(2)
        fig.suptitle(f"{a}: conv-1 activations (ReLU) of one test patch per genre; red = strongest", fontsize=9)
        fig.tight_layout()
        files.append(out / f"conv1_{a}.png")
        fig.savefig(files[-1], dpi=80)
        plt.close(fig)

        last_conv, _, cam_method = INTERPRET[a]
        fig, axes = plt.subplots(len(genres), 4, figsize=(11, 1.25 * len(genres) + 0.6), squeeze=False)
        for r, g in enumerate(genres):
            p = per[g]
            pred = labels[int(np.argmax(p["probabilities"]))]
            _show(axes[r, 0], p["x"], f"{g}: log-mel (predicted {pred})")
            _show(axes[r, 1], p["deconv_conv1"], f"deconv conv 1 filter {p['conv1_top']}", signed=True)
            _show(axes[r, 2], p["deconv_last"], f"deconv {last_conv} filter {p['last_conv_top']}", signed=True)
            _show(axes[r, 3], p["cam"], f"{cam_method} for {g}", signed=True)
        fig.suptitle(f"{a}: deconvolution of the strongest filters and {cam_method} of the true genre", fontsize=9)
        fig.tight_layout()
        files.append(out / f"deconv_cam_{a}.png")
        fig.savefig(files[-1], dpi=80)
        plt.close(fig)
    return files


# ----------------------------------------------------------------------------- report
def _clean(v: Any) -> Any:
    """NaN and infinities as None (strict JSON); numpy scalars as Python numbers."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def _ci(ci: list[float]) -> str:
    return "n/a" if not all(np.isfinite(ci)) else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _ours(s: dict[str, Any]) -> str:
    text = (
        f"by track: {_pct(s['segment_accuracy'])} of {s['segments']} segments {_ci(s['segment_ci95'])}, "
        f"{s['tracks_correct']}/{s['tracks']} tracks = {_pct(s['track_accuracy'])} {_ci(s['track_ci95'])}"
    )
    if "fold_segment_accuracy_mean" in s:
        mean, std = s["fold_segment_accuracy_mean"], s["fold_segment_accuracy_std"]
        text += f"; per fold {_pct(mean)} ± {100 * std:.1f} (segments)"
    return text


def _report(
    res: dict[str, Any], interp_rows: dict[str, Any], meta: dict[str, Any], figs: list[Path], wavs: list[Path]
) -> str:
    st = meta["settings"]
    bt, bs = res["by_track"], res.get("by_segment") or {}
    rows = []
    for a in ARCHS:
        ours = _ours(bt[a])
        if a in bs:
            ours += f"; by segment: {_pct(bs[a]['segment_accuracy'])} {_ci(bs[a]['segment_ci95'])}"
        rows.append(
            (
                f"test accuracy, {a}",
                f"{STUDY_ACCURACY[a]} % (segment-level split)",
                "issue 21, study 1",
                ours,
            )
        )
    for a in ARCHS[1:]:
        d = res["differences"][a]
        rows.append(
            (
                f"{a} − vanilla-cnn (segments)",
                f"{STUDY_ACCURACY[a] - STUDY_ACCURACY['vanilla-cnn']:+.1f} points",
                "issue 21 (difference of the above)",
                f"{100 * d['difference']:+.1f} points {_ci(d['ci95'])} (paired bootstrap over tracks)",
            )
        )
    cam_err = interp_rows.get("gap-cnn", {}).get("cam_identity_error_max")
    rows.append(
        (
            "GAP CNN's CAM is exact (logit = mean CAM + bias)",
            "by construction (Zhou et al. 2016)",
            "DESIGN.md (GAP CNN → CAM)",
            "n/a" if cam_err is None else f"largest error {cam_err:.1e} over the {len(meta['interpreted'])} patches",
        )
    )
    heard = [v for a in ARCHS for v in interp_rows[a]["tracks"].values()]
    silent = sum(v["conv1_silent"] for v in heard)
    filters = sum(v["conv1_filters"] for v in heard)
    rows.append(
        (
            "conv-1 filters, deconvolution, CAMs, auralised filters",
            "figures and audio (qualitative)",
            "issue 21, study 1",
            f"{len(figs) - 2} figures, {len(wavs)} WAVs; {silent} of {filters} conv-1 auralisations silent "
            "(< -40 dBFS, all filters of the 3 models on the patches below); training moved conv 1 by "
            + ", ".join(f"{a} {100 * interp_rows[a]['conv1_weight_change']:.0f} %" for a in ARCHS)
            + " of its initial norm",
        )
    )
    chance = 1 / len(meta["labels"])
    ci0 = bt[ARCHS[0]]["track_ci95"]
    lines = [
        "# GTZAN genre CNNs: accuracy and interpretation (issue 21, study 1)",
        "",
        f"Data: {meta['n_tracks']} tracks in {len(meta['labels'])} genres ({meta['per_genre']}), "
        f"{meta['seconds']:.0f} s of audio in all, {meta['segments']} segments of {meta['patch_s']:.2f} s "
        f"(not overlapping). Chance: {100 * chance:.0f} %."
        + (" **--quick**: " + meta["quick_note"] if meta["quick"] else ""),
        "",
        f"Protocol: {st['folds']}-fold cross-validation **by track** (stratified per genre; fold i tests, fold i+1 "
        f"validates for early stopping, the other {st['folds'] - 2} train), {meta['folds_run']} fold(s) run; Adam, lr "
        f"{st['lr']}, batch {st['batch_size']}, at most {st['epochs']} epochs, patience {st['patience']}, best "
        "validation epoch kept; masked-cnn: the mask only (filter-loss weight 0, the trainer's default). "
        "Intervals are 95 %: segment accuracy by a percentile bootstrap over test tracks "
        f"({BOOTSTRAP} resamples; a track's segments are resampled together), track accuracy by Wilson's "
        "interval. "
        + (
            "The 'by segment' numbers use the same folds drawn over segments, as the study did (segments "
            "of one track in training and test). "
            if bs
            else "The study's segment-level split was not run (--quick). "
        )
        + f"Run time: {meta['seconds_run']:.0f} s.",
        "",
        *claims_table(rows),
        "",
        "## Where the data differ from the study's",
        "",
        f"- The study trained and tested on GTZAN's 1000 clips of 30 s; here {meta['n_tracks']} tracks "
        f"({meta['per_genre']}), most of them 15–20 s excerpts: about "
        f"{meta['segments']} segments instead of ~10,000. With this few the models are far from the study's "
        "and the intervals are wide (a track-level interval over "
        f"{bt[ARCHS[0]]['tracks']} tracks is about ±{50 * (ci0[1] - ci0[0]):.0f} points).",
        "- The study's split is by segment; ours is by track (no segment of a test track was trained on). "
        + (
            "The 'by segment' column repeats the study's protocol on our data to show what the split alone changes."
            if bs
            else "(The full run also repeats the study's protocol on our data; --quick leaves it out.)"
        ),
        "- Segments are the trainer's 3-s log-mel patches (128 mels, 22.05 kHz, hop 512), not necessarily the "
        "study's exact front end; the architectures are MusicLens's vanilla/masked/GAP CNNs.",
    ]
    if meta["merged"]:
        same = sum(bool(m["prefix_identical"]) for m in meta["merged"])
        lines.append(
            f"- {len(meta['merged'])} tracks were found in two folders (the same genre and file name); the longer "
            f"copy was used, once ({same} of them: the shorter is the first seconds of the longer, sample for sample)."
        )
    if meta["quick"]:
        lines.append(f"- --quick: {meta['quick_note']}")
    lines += [
        "",
        "## Per fold (by track)",
        "",
        "| model | fold | test tracks | segment accuracy | track accuracy | epochs run (best) |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for a in ARCHS:
        for f in bt[a]["folds"]:
            lines.append(
                f"| {a} | {f['fold'] + 1} | {f['tracks']} | {_pct(f['segment_accuracy'])} | "
                f"{_pct(f['track_accuracy'])} | {f['epochs_run']} ({f['best_epoch']}) |"
            )
    lines += ["", "## Tracks right per genre (by track)", "", "| genre | " + " | ".join(ARCHS) + " |"]
    lines.append("| --- |" + " --- |" * len(ARCHS))
    for g in meta["labels"]:
        cells = []
        for a in ARCHS:
            tr = [r for r in res["tracks"][a] if r["label"] == g]
            cells.append(f"{sum(bool(r['correct']) for r in tr)}/{len(tr)}")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Interpretation (fold 1's models, one of its test tracks per genre, the middle segment)",
        "",
        "| model | genre | track | predicted | strongest conv-1 filter | conv-1 filters silent | loudest heard "
        "(dBFS as computed) → WAV |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in ARCHS:
        for g, v in interp_rows[a]["tracks"].items():
            lines.append(
                f"| {a} | {g} | `{v['track']}` | {v['predicted']} | {v['conv1_top']} | "
                f"{v['conv1_silent']}/{v['conv1_filters']} | filter {v['heard_filter']}, {v['level_db']:.1f} "
                f"→ `{v['wav']}` |"
            )
    lines += [
        "",
        "The three models of a fold start from the same conv-1 weights (seed = fold), so their conv-1 "
        "differences come from training alone. CAM: exact CAM at gap-cnn's 'CAM maps'; Grad-CAM at the last "
        "conv layer of the other two (they have "
        "dense layers after it, so no exact CAM). Deconvolution: the deconvnet rule, the filter's whole "
        f"activation map; strongest = largest mean square of the positive activation. Auralisation: the "
        "filter's activation as a mask on the recording's STFT, inverted with the original phase; the WAV is the "
        f"conv-1 filter heard loudest on the patch, written at {LISTEN_DBFS:.0f} dBFS RMS (its level as computed "
        "is in the table). The segment itself is `audio/input/<genre>.wav`.",
        "",
        "## Figures",
        "",
        *[f"- ![{f.stem}]({f.name})" for f in figs],
        "",
        "Models (open them in the window): " + ", ".join(f"`{m}`" for m in meta["models"]),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the study
def genre_cnn(
    out: str | os.PathLike[str], *, quick: bool = False, data: str | os.PathLike[str] | None = None
) -> Generator[Progress, None, StudyReport]:
    """Train vanilla, masked and GAP CNNs by track-level cross-validation on ``data`` and
    interpret them; write report.md, figures, WAVs, models and numbers.json to ``out``.

    data : a folder with one sub-folder per genre (or several joined by ``os.pathsep``).
    quick : only the first fold, fewer epochs (:data:`QUICK` instead of :data:`FULL`).
    """
    from musiclens.core import audio as audio_io
    from musiclens.core.models import registry, study
    from musiclens.core.training.data import SPLITS, Split, prepare_all
    from musiclens.core.training.loop import TrainConfig, finish_run, metrics_from, predict_set, summary_of

    t0 = time.perf_counter()
    ds, merged = load_genres(data)
    st = QUICK if quick else FULL
    fewest = min(sum(1 for t in ds.tracks if t.labels[0] == lab) for lab in range(len(ds.labels)))
    k = min(st.folds, fewest)  # every fold holds at least one track of every genre
    st = dataclasses.replace(st, folds=k, run_folds=min(st.run_folds, k))
    protocols = ("by_track", "by_segment") if st.by_segment else ("by_track",)
    folder = make_folder(out)
    n_runs = len(protocols) * st.run_folds * len(ARCHS)
    total = 1 + n_runs + len(ARCHS) + 1
    done = 0
    yield Progress(fraction=0.0, message=f"reading {len(ds.tracks)} tracks", payload=(done, total))
    probe_model = study.create(ARCHS[0], ds.labels)
    everything = prepare_all(
        ds,
        Split({"train": list(ds.tracks), "val": [], "test": []}, 0, (1.0, 0.0, 0.0)),
        probe_model.front_end,
        probe_model.patch_frames,
        cache=None,
    )
    full = everything.sets["train"]
    done += 1
    tracks = track_folds(ds, k)
    fold_of_row = row_folds(full, tracks)
    seg_folds = segment_folds(full, k)

    results: dict[str, Any] = {"by_track": {}, "by_segment": {}, "tracks": {a: [] for a in ARCHS}}
    fold_rows: dict[str, dict[str, list[dict[str, Any]]]] = {
        p: {a: [] for a in ARCHS} for p in ("by_track", "by_segment")
    }
    track_rows: dict[str, dict[str, list[dict[str, Any]]]] = {
        p: {a: [] for a in ARCHS} for p in ("by_track", "by_segment")
    }
    confusion = {p: {a: np.zeros((len(ds.labels),) * 2, dtype=np.int64) for a in ARCHS} for p in fold_rows}
    saved: dict[str, LoadedModel] = {}
    models_rel: list[str] = []
    for protocol in protocols:
        for i in range(st.run_folds):
            test_i, val_i = i, (i + 1) % k
            rows = split_rows(protocol, i, fold_of_row, seg_folds)
            if protocol == "by_track":
                split = Split(
                    {
                        "train": [t for j, f in enumerate(tracks) if j not in (test_i, val_i) for t in f],
                        "val": list(tracks[val_i]),
                        "test": list(tracks[test_i]),
                    },
                    i,
                    (1 - 2 / k, 1 / k, 1 / k),
                )
                prepared = _fold_data(everything, ds, rows, split, by_track=True)
            else:
                split = Split({s: list(ds.tracks) for s in SPLITS}, i, (1 - 2 / k, 1 / k, 1 / k))
                prepared = _fold_data(everything, ds, rows, split, by_track=False)
            for a in ARCHS:
                cfg = TrainConfig(
                    epochs=st.epochs, patience=st.patience, batch_size=st.batch_size, lr=st.lr, seed=i, device="auto"
                )
                label = f"{protocol.replace('_', ' ')} fold {i + 1}/{k}"
                model = yield from _train_one(a, list(ds.labels), prepared, cfg, label, (done, total))
                test = prepared.sets["test"]
                probs, _ = predict_set(model, test)
                m = metrics_from(probs, test, model.labels)
                confusion[protocol][a] += np.asarray(m["confusion"], dtype=np.int64)
                per = per_track(probs, test, list(ds.labels), i)
                track_rows[protocol][a] += per
                fold_rows[protocol][a].append(
                    {
                        "fold": i,
                        "tracks": len(per),
                        "segments": len(test),
                        "segment_accuracy": m["accuracy"],
                        "track_accuracy": m["track_accuracy"],
                        "epochs_run": model.provenance.get("epochs_run"),
                        "best_epoch": model.provenance.get("best_epoch"),
                    }
                )
                if protocol == "by_track" and i == 0:
                    rel = f"models/{a}"
                    summary = summary_of(model, prepared, a, None, device=model.device)
                    finish_run(model, summary, None, root=ds.root, task="genre", ds=ds, split=split, cfg=cfg, out=None)
                    model.provenance["study"] = "genre-cnn (issue 21): fold 1 of the by-track cross-validation"
                    registry.save(model, folder / rel)
                    saved[a] = model
                    models_rel.append(rel)
                done += 1
    for protocol in protocols:
        for a in ARCHS:
            s = summarise(track_rows[protocol][a], fold_rows[protocol][a])
            s["confusion"] = confusion[protocol][a].tolist()
            results[protocol][a] = s
    results["tracks"] = track_rows["by_track"]
    results["tracks_by_segment"] = track_rows["by_segment"]
    c = {a: np.array([r["segments_correct"] for r in track_rows["by_track"][a]]) for a in ARCHS}
    n = np.array([r["segments"] for r in track_rows["by_track"][ARCHS[0]]])
    results["differences"] = {
        a: {
            "versus": ARCHS[0],
            "difference": float((c[a].sum() - c[ARCHS[0]].sum()) / n.sum()),
            "ci95": list(track_bootstrap(c[a], n, other=c[ARCHS[0]])),
        }
        for a in ARCHS[1:]
    }

    # interpretation: one fold-1 test track per genre
    picked: dict[str, Track] = {}
    for t in tracks[0]:
        picked.setdefault(ds.labels[t.labels[0]], t)
    interp: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in ARCHS}
    interp_rows: dict[str, Any] = {}
    wavs: list[Path] = []
    audio_dir = folder / "audio"
    for sub in ("input", *ARCHS):
        (audio_dir / sub).mkdir(parents=True, exist_ok=True)
    for a in ARCHS:
        yield Progress(fraction=done / total, message=f"interpreting {a}", payload=(done, total))
        model = saved[a]
        rows_a: dict[str, Any] = {}
        errors = []
        for g, t in sorted(picked.items()):
            seg, start_s = _patch(model, t.files[0])
            r = _interpret(model, a, seg, t.labels[0])
            interp[a][g] = r
            if a == ARCHS[0]:
                wavs.append(audio_io.save(audio_dir / "input" / f"{g}.wav", seg, model.sample_rate))
            heard = r["heard"]
            wav = audio_io.save(
                audio_dir / a / f"{g}_conv1_filter{r['heard_filter']}.wav", heard.audio, heard.sample_rate
            )
            wavs.append(wav)
            if "cam_identity_error" in r:
                errors.append(r["cam_identity_error"])
            rows_a[g] = {
                "track": t.id,
                "start_s": start_s,
                "seconds": len(seg) / model.sample_rate,
                "predicted": ds.labels[int(np.argmax(r["probabilities"]))],
                "probabilities": {lab: float(p) for lab, p in zip(ds.labels, r["probabilities"], strict=True)},
                "conv1_top": r["conv1_top"],
                "conv1_energy": [float(e) for e in r["conv1_energy"]],
                "conv1_level_db": [float(e) for e in r["conv1_level_db"]],
                "conv1_silent": int(np.sum(r["conv1_silent"])),
                "conv1_filters": len(r["conv1_energy"]),
                "last_conv_top": r["last_conv_top"],
                "cam_method": r["cam_method"],
                "heard_filter": r["heard_filter"],
                "level_db": float(heard.level_db),
                "gain_db": float(heard.gain_db),
                "wav": str(wav.relative_to(folder)),
            }
        interp_rows[a] = {"tracks": rows_a, "conv1_weight_change": _conv1_change(model, a, list(ds.labels))}
        if errors:
            interp_rows[a]["cam_identity_error_max"] = float(max(errors))
        done += 1

    yield Progress(fraction=done / total, message="writing the report", payload=(done, total))
    figs = _figures(folder, results, interp, list(ds.labels))
    per_genre_n = {lab: sum(1 for t in ds.tracks if t.labels[0] == i) for i, lab in enumerate(ds.labels)}
    counts = sorted(set(per_genre_n.values()))
    meta = {
        "labels": list(ds.labels),
        "n_tracks": len(ds.tracks),
        "per_genre": f"{counts[0]}" + (f"–{counts[-1]}" if len(counts) > 1 else "") + " per genre",
        "seconds": float(sum(i.frames / i.sample_rate for i in (audio_io.info(t.files[0]) for t in ds.tracks))),
        "segments": len(full),
        "patch_s": probe_model.patch_samples / probe_model.sample_rate,
        "settings": {
            "folds": st.folds,
            "run_folds": st.run_folds,
            "epochs": st.epochs,
            "patience": st.patience,
            "batch_size": st.batch_size,
            "lr": st.lr,
            "by_segment": st.by_segment,
        },
        "folds_run": st.run_folds,
        "quick": quick,
        "quick_note": (
            f"only fold 1 of {k} is trained and tested (about 1/{k} of the tracks)"
            + ("" if st.by_segment else ", by track only (the study's segment-level split is not run)")
            + f", at most {st.epochs} epochs (patience {st.patience}); the full run tests every track once, by "
            f"track and by segment, at most {FULL.epochs} epochs."
        ),
        "merged": merged,
        "interpreted": {g: t.id for g, t in picked.items()},
        "models": models_rel,
        "seconds_run": time.perf_counter() - t0,
    }
    text = _report(results, interp_rows, meta, figs, wavs)
    numbers = {
        "study": "genre-cnn",
        "quick": quick,
        "data": [str(p) for p in str(data).split(os.pathsep) if p],
        "claims": {
            a: {"test_accuracy_percent": STUDY_ACCURACY[a], "split": "segment-level", "source": "issue 21"}
            for a in ARCHS
        },
        "intervals": {
            "segment_accuracy": f"95 % percentile bootstrap over test tracks ({BOOTSTRAP} resamples)",
            "track_accuracy": "95 % Wilson score interval",
            "differences": "95 % paired percentile bootstrap over test tracks",
        },
        **{k_: v for k_, v in meta.items() if k_ not in ("quick",)},
        "by_track": results["by_track"],
        "by_segment": results["by_segment"],
        "differences": results["differences"],
        "tracks": results["tracks"],
        "interpretation": interp_rows,
        "open_in_window": {
            "models": models_rel,
            "audio": [str(w.relative_to(folder)) for w in wavs],
            "midi": [],
        },
    }
    report = write_report(
        "genre-cnn", folder, text, _clean(numbers), figs, extra=wavs + [folder / m for m in models_rel]
    )
    yield Progress(fraction=1.0, message=f"wrote {folder}", payload=(total, total))
    return report
