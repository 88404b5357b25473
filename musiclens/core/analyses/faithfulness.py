"""Faithfulness: how well each attribution method's map picks the evidence the model uses.

For each method of the method table, on every patch of a span of a recording: the method's
map (:meth:`Method.input_map`, a layer map upsampled to the input), its deletion and insertion
curves over time-frequency cells against a random order of the cells scored in the same run
(:mod:`musiclens.core.interpret.faithfulness` says exactly how), optionally Captum's infidelity
and sensitivity, and the weight-randomisation sanity check
(:mod:`musiclens.core.interpret.sanity`) on the first patch. Deletion AUC: lower is better;
insertion AUC: higher is better. Results are plain Python and numpy (no torch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Progress

#: the one sentence every front end shows beside the scores
BETTER = "deletion AUC: lower is better; insertion AUC: higher is better (each against a random order of the cells)"


@dataclass
class SanityVerdict:
    """The weight-randomisation check of one method (first patch).

    passed : the map changed once the layers were randomised (final Spearman and SSIM both
        below ``threshold``; NaN, a map that became constant, counts as changed).
    final_spearman, final_ssim : similarity with the trained model's map after the last step.
    randomised_layers : how many layers were re-initialised (from the output down).
    """

    passed: bool
    final_spearman: float | None
    final_ssim: float | None
    randomised_layers: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "final_spearman": self.final_spearman,
            "final_ssim": self.final_ssim,
            "randomised_layers": self.randomised_layers,
            "threshold": self.threshold,
        }


@dataclass
class MethodScore:
    """The scores of one method (AUCs: the mean over the patches).

    deletion_curve, insertion_curve : (S + 1,) the mean curves, on ``Faithfulness.fractions``.
    seconds : time to compute the method's maps (all patches), s; None for a given map.
    scoring_seconds : time of its curves and metrics, s (sanity included).
    infidelity, sensitivity : Captum's metrics on the first patch (None when not computed).
    error : why the method could not run on this model ("" when it ran).
    """

    method: str
    label: str
    layer: str | None
    deletion_auc: float = math.nan
    insertion_auc: float = math.nan
    random_deletion_auc: float = math.nan
    random_insertion_auc: float = math.nan
    deletion_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    insertion_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: float | None = None
    scoring_seconds: float = 0.0
    sanity: SanityVerdict | None = None
    infidelity: float | None = None
    sensitivity: float | None = None
    error: str = ""

    @property
    def beats_random(self) -> tuple[bool, bool]:
        """(deletion AUC below random's, insertion AUC above random's)."""
        return self.deletion_auc < self.random_deletion_auc, self.insertion_auc > self.random_insertion_auc

    def to_dict(self) -> dict[str, Any]:
        """The ``faithfulness`` command's JSON for one method (NaN -> None)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        out: dict[str, Any] = {
            "deletion_auc": num(self.deletion_auc),
            "insertion_auc": num(self.insertion_auc),
            "random_deletion_auc": num(self.random_deletion_auc),
            "random_insertion_auc": num(self.random_insertion_auc),
            "sanity": None if self.sanity is None else self.sanity.to_dict(),
            "seconds": num(self.seconds),
            "scoring_seconds": num(self.scoring_seconds),
            "layer": self.layer,
            "deletion_curve": [num(v) for v in self.deletion_curve],
            "insertion_curve": [num(v) for v in self.insertion_curve],
        }
        if self.infidelity is not None:
            out["infidelity"] = num(self.infidelity)
        if self.sensitivity is not None:
            out["sensitivity"] = num(self.sensitivity)
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Faithfulness:
    """The scores of several methods for one target on one span of a recording.

    fractions : (S + 1,) share of cells changed at each curve point.
    random_deletion, random_insertion : (S + 1,) the random baseline's mean curves.
    cells : (bins, frames) of one cell. patches : the patches scored (from ``start_s``).
    score : the target's mean probability at the full input (what the curves are divided by).
    """

    model: str
    target: str
    start_s: float
    end_s: float
    patches: int
    cells: tuple[int, int]
    steps: int
    baseline: str
    seeds: int
    fractions: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    score: float
    methods: list[MethodScore]
    better: str = BETTER

    @property
    def random_deletion_auc(self) -> float:
        from musiclens.core.interpret.faithfulness import auc

        return auc(self.fractions, self.random_deletion)

    @property
    def random_insertion_auc(self) -> float:
        from musiclens.core.interpret.faithfulness import auc

        return auc(self.fractions, self.random_insertion)

    def to_dict(self) -> dict[str, Any]:
        """The ``faithfulness`` command's JSON."""
        return {
            "model": self.model,
            "target": self.target,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "patches": self.patches,
            "cells": f"{self.cells[0]}x{self.cells[1]}",
            "steps": self.steps,
            "baseline": self.baseline,
            "random_seeds": self.seeds,
            "score": self.score,
            "better": self.better,
            "normalisation": "probability of the target divided by its probability at the full input",
            "fractions": [float(v) for v in self.fractions],
            "methods": {m.method: m.to_dict() for m in self.methods},
        }


def sanity_verdict(
    spearman: float | None, ssim: float | None, randomised_layers: int, threshold: float
) -> SanityVerdict:
    """The sanity check's last step (its final similarities with the trained model's map) ->
    pass (the map changed) or fail (it still looks the same: the final Spearman or SSIM is at
    or above ``threshold``); None or NaN (a map that became constant) counts as changed. The
    one rule of the faithfulness scores and ``musiclens sanity``."""

    def clean(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else float(v)

    sp, ss = clean(spearman), clean(ssim)
    still_same = any(v is not None and v >= threshold for v in (sp, ss))
    return SanityVerdict(not still_same, sp, ss, int(randomised_layers), threshold)


def _check_kind(model: Any) -> None:
    kind = getattr(model, "kind", "audio")
    if kind != "audio":
        raise ParameterError(f"faithfulness scores spectrogram (audio) models; {model.name!r} reads {kind} input")


def default_layer(model: Any) -> str | None:
    """The layer a layer method uses when none is given: the model's first conv layer (2-D maps
    in any CNN, as the window's first example), else None."""
    convs = [name for name, info in model.layers.items() if info.kind == "conv"]
    return convs[0] if convs else None


def _check(cells: tuple[int, int], steps: int, baseline: str, seeds: int, chunk: int) -> None:
    from musiclens.core.interpret.faithfulness import BASELINES

    if steps < 1 or seeds < 1 or chunk < 1:
        raise ParameterError(f"steps, random seeds and chunk must be at least 1, got {steps}, {seeds}, {chunk}")
    if baseline not in BASELINES:
        raise ParameterError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if len(cells) != 2 or min(cells) < 1:
        raise ParameterError(f"cells must be (bins, frames) of at least 1, got {cells}")


def faithfulness(
    model: Any,
    audio: np.ndarray,
    methods: Sequence[str],
    target: int | str,
    *,
    layer: str | None = None,
    start_s: float = 0.0,
    cells: tuple[int, int] = (8, 16),
    steps: int = 16,
    baseline: str = "noisy-linear",
    seeds: int = 3,
    sanity_layers: int | None = None,
    sanity_threshold: float = 0.5,
    captum_metrics: bool = False,
    options: dict[str, dict[str, Any]] | None = None,
    chunk: int | None = None,
) -> Generator[Progress, None, Faithfulness]:
    """Score ``methods`` (names or old spellings of the method table) for ``target`` on every
    patch of ``audio`` ((samples,) at the model's rate, non-overlapping patches, the partial last
    one dropped; ``start_s``: where it starts in the file, for the record).

    layer : for the layer methods (default :func:`default_layer`). cells : (bins, frames).
    steps : curve points besides the start. baseline : "noisy-linear" (ROAD), "mean" or "silence".
    seeds : random orders averaged for the baseline. sanity_layers : layers randomised from the
    output down in the sanity check (None: all of them; 0: no check). captum_metrics : also
    infidelity and sensitivity (first patch). options : per canonical method name, its
    keywords (default: the table's ``quick`` options, what the window runs). chunk : inputs per
    forward pass (default :func:`musiclens.core.tagging.default_batch_size`: 1 on the CPU, where
    one at a time was faster for MusiCNN, 32 on a GPU). Yields :class:`Progress`; returns :class:`Faithfulness`.
    """
    import torch

    from musiclens.core.interpret import faithfulness as fm
    from musiclens.core.interpret import methods as table
    from musiclens.core.interpret._common import target_index
    from musiclens.core.interpret.sanity import cascade_layers, iter_cascading_randomisation
    from musiclens.core.tagging import audio_to_patches, default_batch_size

    chunk = (
        default_batch_size(model) if chunk is None else chunk
    )  # 1 on the CPU (measured faster for MusiCNN), 32 on a GPU
    _check(cells, steps, baseline, seeds, chunk)
    _check_kind(model)
    if not methods:
        raise ParameterError(f"give at least one method; choose from {', '.join(table.names(kind='audio'))}")
    chosen = [table.get(n, among=table.names(kind="audio")) for n in methods]
    t_idx = target_index(model, target)
    label = model.labels[t_idx]
    if any(m.needs_layer for m in chosen):
        layer = layer or default_layer(model)
        if layer is None:
            raise ParameterError(f"model {model.name!r} has no conv layer; give a layer for the layer methods")
        if layer not in model.layers:
            raise ParameterError(f"model {model.name!r} has no layer {layer!r}")
    patches = audio_to_patches(model, audio)  # (P, C, F, L)
    n_p = len(patches)
    all_layers = cascade_layers(model)
    n_sanity = len(all_layers) if sanity_layers is None else max(0, min(int(sanity_layers), len(all_layers)))
    curve_kw: dict[str, Any] = {"cells": cells, "steps": steps, "baseline": baseline, "chunk": chunk}
    units = n_p * (1 + 2 * len(chosen)) + len(chosen) * n_sanity
    done = 0

    def step(message: str) -> Progress:
        return Progress(fraction=min(done / units, 1.0), message=message)

    randoms, scores = [], []
    for i in range(n_p):
        yield step(f"random baseline for {label}: patch {i + 1}/{n_p}")
        randoms.append(fm.random_curves(model, patches[i : i + 1], target=t_idx, seeds=seeds, **curve_kw))
        scores.append(randoms[-1].score)
        done += 1
    rand = fm.mean_curves(randoms)
    results = []
    for meth in chosen:
        where = layer if meth.needs_layer else None
        res = MethodScore(meth.name, meth.label, where)
        res.random_deletion_auc = float(np.mean([r.deletion_auc for r in randoms]))
        res.random_insertion_auc = float(np.mean([r.insertion_auc for r in randoms]))
        opts = (options or {}).get(meth.name, dict(meth.quick))
        opts = meth.supported(opts)
        try:
            spent, scoring, curves = 0.0, 0.0, []
            first_raw = None
            for i in range(n_p):
                yield step(f"{meth.label} for {label}: patch {i + 1}/{n_p}")
                x = patches[i : i + 1]
                t0 = time.perf_counter()
                raw = meth(model, x, target=t_idx, layer=where, **opts).detach()
                amap = meth.input_map(raw, x.shape[-2:])[0]
                spent += time.perf_counter() - t0
                first_raw = first_raw if first_raw is not None else (raw, amap)
                done += 1
                yield step(f"{meth.label}: deletion and insertion, patch {i + 1}/{n_p}")
                t0 = time.perf_counter()
                curves.append(fm.score_map(model, x, amap, target=t_idx, **curve_kw))
                scoring += time.perf_counter() - t0
                done += 1
            mean = fm.mean_curves(curves)
            res.deletion_curve, res.insertion_curve = mean.deletion, mean.insertion
            res.deletion_auc = float(np.mean([c.deletion_auc for c in curves]))
            res.insertion_auc = float(np.mean([c.insertion_auc for c in curves]))
            res.seconds = spent
            x0 = patches[:1]
            t0 = time.perf_counter()
            if captum_metrics and first_raw is not None:
                yield step(f"{meth.label}: infidelity and sensitivity")
                raw, amap = first_raw
                attr = raw if not meth.needs_layer else amap[None, None]
                res.infidelity = fm.infidelity(model, x0, attr, target=t_idx)

                def explain(inp: torch.Tensor, meth: Any = meth, where: str | None = where, opts: Any = opts) -> Any:
                    out = meth(model, inp, target=t_idx, layer=where, **opts)
                    if meth.needs_layer:
                        return meth.input_map(out, inp.shape[-2:])[:, None].expand_as(inp)
                    return out

                res.sensitivity = fm.sensitivity(model, x0, explain)
            if n_sanity:
                last = None
                for k, st in enumerate(
                    iter_cascading_randomisation(
                        model, x0, method=meth.name, target=t_idx, layer=where, layers=all_layers[:n_sanity], **opts
                    )
                ):
                    last = st
                    if k:
                        done += 1
                        yield step(f"{meth.label}: sanity check, {k}/{n_sanity} layers randomised")
                if last is not None:
                    res.sanity = sanity_verdict(last.spearman, last.ssim, last.step, sanity_threshold)
            res.scoring_seconds = scoring + time.perf_counter() - t0
        except MusicLensError as e:  # e.g. CAM on a model without global average pooling
            res.error = str(e)
            done = min(units, done + 2 * n_p + n_sanity)
        results.append(res)
    yield Progress(fraction=1.0, message=f"faithfulness for {label}: done")
    return Faithfulness(
        model=model.name,
        target=label,
        start_s=float(start_s),
        end_s=float(start_s) + n_p * model.patch_seconds,
        patches=n_p,
        cells=(int(cells[0]), int(cells[1])),
        steps=int(steps),
        baseline=baseline,
        seeds=int(seeds),
        fractions=rand.fractions,
        random_deletion=rand.deletion,
        random_insertion=rand.insertion,
        score=float(np.mean(scores)),
        methods=results,
    )


def score_shown_map(
    model: Any,
    audio: np.ndarray,
    values: np.ndarray,
    method: str,
    target: int | str,
    *,
    patch: int = 0,
    layer: str | None = None,
    cells: tuple[int, int] = (8, 16),
    steps: int = 16,
    baseline: str = "noisy-linear",
    seeds: int = 3,
    chunk: int | None = None,
) -> Generator[Progress, None, Faithfulness]:
    """Deletion and insertion AUCs of a map already computed (the window's overlay) on one patch.

    audio : (samples,) the recording at the model's rate. values : (F, P × L) the map over its
    patches as :func:`musiclens.core.analyses.attribution_over_file` joins them. patch : which
    patch to score. ``method``, ``layer``: what the map was made with (for the record). Returns
    a :class:`Faithfulness` with one method, no timing and no sanity check."""
    from musiclens.core.interpret import faithfulness as fm
    from musiclens.core.interpret import methods as table
    from musiclens.core.interpret._common import target_index
    from musiclens.core.tagging import audio_to_patches, default_batch_size

    chunk = (
        default_batch_size(model) if chunk is None else chunk
    )  # 1 on the CPU (measured faster for MusiCNN), 32 on a GPU
    _check(cells, steps, baseline, seeds, chunk)
    _check_kind(model)
    t_idx = target_index(model, target)
    label = model.labels[t_idx]
    patches = audio_to_patches(model, audio)
    if not 0 <= patch < len(patches):
        raise ParameterError(f"patch {patch} is out of range; the recording has {len(patches)} patches")
    x = patches[patch : patch + 1]
    n = x.shape[-1]
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != x.shape[-2] or values.shape[1] < (patch + 1) * n:
        raise ParameterError(
            f"the map is {values.shape}; patch {patch} of {model.name} needs ({x.shape[-2]}, >= {(patch + 1) * n})"
        )
    amap = values[:, patch * n : (patch + 1) * n]
    curve_kw: dict[str, Any] = {"cells": cells, "steps": steps, "baseline": baseline, "chunk": chunk}
    yield Progress(fraction=0.0, message=f"random baseline for {label}")
    rand = fm.random_curves(model, x, target=t_idx, seeds=seeds, **curve_kw)
    yield Progress(fraction=seeds / (seeds + 1), message=f"deletion and insertion of the {table.label(method)} map")
    t0 = time.perf_counter()
    c = fm.score_map(model, x, amap, target=t_idx, **curve_kw)
    res = MethodScore(
        method,
        table.label(method),
        layer,
        deletion_auc=c.deletion_auc,
        insertion_auc=c.insertion_auc,
        random_deletion_auc=rand.deletion_auc,
        random_insertion_auc=rand.insertion_auc,
        deletion_curve=c.deletion,
        insertion_curve=c.insertion,
        scoring_seconds=time.perf_counter() - t0,
    )
    start_s = patch * model.patch_seconds
    return Faithfulness(
        model=model.name,
        target=label,
        start_s=start_s,
        end_s=start_s + model.patch_seconds,
        patches=1,
        cells=(int(cells[0]), int(cells[1])),
        steps=int(steps),
        baseline=baseline,
        seeds=int(seeds),
        fractions=rand.fractions,
        random_deletion=rand.deletion,
        random_insertion=rand.insertion,
        score=c.score,
        methods=[res],
    )
