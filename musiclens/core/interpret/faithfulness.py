"""Faithfulness of an attribution map: deletion and insertion curves over time-frequency cells,
a random-order baseline, and Captum's infidelity and sensitivity.

The spectrogram (F bins x T frames) is cut into cells of ``cells = (bins, frames)``; the last
row/column of cells may be smaller. A map (F, T) (what :meth:`Method.input_map` gives: a layer
map upsampled to the input) ranks the cells by the *mean* of the map inside each cell, highest
first (signed: evidence *for* the target first; ties keep the cells' raster order).

* **deletion**: start from the input and replace the cells, most important first, by the
  baseline; the target's score should fall fast: a *lower* area under the curve is better.
* **insertion**: start from the baseline and put the input's cells back, most important first;
  the score should rise fast: a *higher* area is better.

Curves have ``steps + 1`` points; at step s the first ``round(s * n / steps)`` cells of the order
are changed (n = number of cells), and the x axis is that fraction of cells (0..1). The score is
the target's **probability** (the model's sigmoid or softmax) and each curve is **divided by the
probability at the full input**: deletion starts at 1, insertion ends at 1, and the area is the
trapezoid rule over the fraction axis. A model that ignores its input gives flat curves at 1.

Baselines (what a removed cell becomes):

``"noisy-linear"``  ROAD's noisy linear imputation (Rong et al. 2022), the default: each removed
                    value is the weighted mean of its 8 neighbours (1/6 sides, 1/12 corners),
                    solved as one sparse linear system with the kept values fixed, plus Gaussian
                    noise (σ = 1 % of the patch's value range). A removed cell looks like its
                    surroundings, so the model reacts to the evidence taken away rather than to
                    the hole's edges (hard replacements leak the mask's shape, ROAD's argument);
``"mean"``          the patch's mean value per channel (a constant spectrogram of the patch's
                    average level);
``"silence"``       the front end's value for digital silence (Integrated Gradients' baseline).

On MusiCNN and the demo clip the choice matters: with the hard replacements Integrated
Gradients does not beat the random order on deletion, with noisy-linear it does clearly.

A random order of the cells (mean of ``seeds`` random permutations) scored the same way is the
reference every map should beat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import Target, check_input, eval_mode, silence_value, target_index
from musiclens.core.models.registry import LoadedModel

BASELINES = ("noisy-linear", "mean", "silence")


@dataclass
class Curves:
    """Deletion and insertion curves of one ranking of the cells (one patch).

    fractions : (S + 1,) share of cells changed, 0..1.
    deletion, insertion : (S + 1,) probability of the target divided by ``score``.
    score : the target's probability at the full input. baseline_score : at the all-baseline input.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    score: float
    baseline_score: float

    @property
    def deletion_auc(self) -> float:
        """Area under the deletion curve (lower is better)."""
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        """Area under the insertion curve (higher is better)."""
        return auc(self.fractions, self.insertion)


def auc(fractions: np.ndarray | Sequence[float], values: np.ndarray | Sequence[float]) -> float:
    """Trapezoid-rule area under ``values`` over ``fractions`` (both (S + 1,))."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ParameterError(f"a curve needs two 1-D arrays of the same length >= 2, got {x.shape} and {y.shape}")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def parse_cells(text: str) -> tuple[int, int]:
    """``"8x16"`` -> (8 bins, 16 frames)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        bins, frames = (int(p) for p in parts)
    except ValueError:
        raise ParameterError(f"cells must be BINSxFRAMES such as 8x16, got {text!r}") from None
    if bins < 1 or frames < 1:
        raise ParameterError(f"cells must be at least 1x1, got {text!r}")
    return bins, frames


def cell_ids(shape: tuple[int, int], cells: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """(F, T) -> each value's cell index (F, T) long (raster order), and the grid (n_f, n_t)."""
    f, t = int(shape[0]), int(shape[1])
    cf, ct = int(cells[0]), int(cells[1])
    if cf < 1 or ct < 1:
        raise ParameterError(f"cells must be at least 1x1, got {cells}")
    n_f, n_t = math.ceil(f / cf), math.ceil(t / ct)
    rows = torch.arange(f) // cf
    cols = torch.arange(t) // ct
    return rows[:, None] * n_t + cols[None, :], n_f, n_t


def cell_means(amap: torch.Tensor | np.ndarray, cells: tuple[int, int]) -> torch.Tensor:
    """A map (F, T) -> (n_f, n_t) mean of the map in each cell (edge cells: over what they hold)."""
    m = torch.as_tensor(np.asarray(amap) if isinstance(amap, np.ndarray) else amap).detach().double().cpu()
    if m.dim() != 2:
        raise ParameterError(f"an attribution map for scoring must be (F, T), got {tuple(m.shape)}")
    ids, n_f, n_t = cell_ids((m.shape[0], m.shape[1]), cells)
    total = torch.zeros(n_f * n_t, dtype=torch.float64).index_add_(0, ids.reshape(-1), m.reshape(-1))
    count = torch.bincount(ids.reshape(-1), minlength=n_f * n_t).double()
    return (total / count).reshape(n_f, n_t)


def cell_order(amap: torch.Tensor | np.ndarray, cells: tuple[int, int]) -> torch.Tensor:
    """The cells, most important first: (n,) long indices (stable on ties)."""
    means = torch.nan_to_num(cell_means(amap, cells).reshape(-1), nan=-math.inf)
    return torch.argsort(means, descending=True, stable=True)


def random_order(n: int, seed: int) -> torch.Tensor:
    """A random permutation of ``n`` cells from ``seed`` (the global RNG is not touched)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


def baseline_input(m: LoadedModel, x: torch.Tensor, kind: str) -> torch.Tensor:
    """What a removed cell becomes, broadcastable to ``x`` (1, C, F, T): ``"mean"`` (per channel)
    or ``"silence"`` (see the module docstring; ``"noisy-linear"`` depends on the cells removed)."""
    if kind == "mean":
        return x.mean(dim=(-2, -1), keepdim=True)
    if kind == "silence":
        return silence_value(m, device=x.device).to(x.dtype).view(1, -1, 1, 1)
    raise ParameterError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def noisy_linear_impute(x: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """ROAD's noisy linear imputation of one input.

    x : (C, F, T). removed : (F, T) bool, True where a value is replaced.
    Each removed value becomes the weighted mean of its in-range neighbours (weights 1/6 for
    the 4 sides, 1/12 for the 4 corners, renormalised at the edges), the kept values fixed;
    this sparse linear system is solved exactly (scipy), then Gaussian noise of σ =
    ``noise`` x (max − min of ``x``) is added to the removed values (everything removed: the
    channel's mean plus that noise). Returns (C, F, T).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    rem = removed.detach().cpu().numpy().astype(bool)
    out = x.detach().cpu().double().numpy().copy()
    if not rem.any():
        return x.clone()
    f, t = rem.shape
    idx = -np.ones((f, t), dtype=np.int64)
    rr, cc = np.nonzero(rem)
    idx[rr, cc] = np.arange(len(rr))
    offsets = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6)]
    offsets += [(-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    rows, cols, vals = [np.arange(len(rr))], [np.arange(len(rr))], [np.ones(len(rr))]  # the diagonal
    weight_sum = np.zeros(len(rr))
    known = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))]  # (unknown, flat pos, w)
    for dr, dc, w in offsets:
        r2, c2 = rr + dr, cc + dc
        ok = (r2 >= 0) & (r2 < f) & (c2 >= 0) & (c2 < t)
        weight_sum[ok] += w
        nb_unknown = ok.copy()
        nb_unknown[ok] = rem[r2[ok], c2[ok]]
        nb_known = ok & ~nb_unknown
        rows.append(np.nonzero(nb_unknown)[0])
        cols.append(idx[r2[nb_unknown], c2[nb_unknown]])
        vals.append(np.full(int(nb_unknown.sum()), -w))
        known.append((np.nonzero(nb_known)[0], r2[nb_known] * t + c2[nb_known], np.full(int(nb_known.sum()), w)))
    # row i: v_i - Σ_j (w_ij / W_i) v_j = Σ_known (w_ik / W_i) x_k
    scale = 1.0 / weight_sum
    r_all, c_all = np.concatenate(rows), np.concatenate(cols)
    v_all = np.concatenate(vals) * scale[r_all]
    v_all[: len(rr)] = 1.0  # the diagonal (the first entries)
    a = coo_matrix((v_all, (r_all, c_all)), shape=(len(rr), len(rr))).tocsr()
    k_rows = np.concatenate([k[0] for k in known])
    k_pos = np.concatenate([k[1] for k in known])
    k_w = np.concatenate([k[2] for k in known])
    rng = np.random.default_rng(seed)
    sigma = noise * float(out.max() - out.min())
    for ch in range(out.shape[0]):
        plane = out[ch]
        b = np.zeros(len(rr))
        np.add.at(b, k_rows, k_w * scale[k_rows] * plane.reshape(-1)[k_pos])
        sol = spsolve(a, b) if len(k_rows) else np.full(len(rr), plane.mean())  # nothing kept: the mean
        plane[rr, cc] = np.asarray(sol) + sigma * rng.standard_normal(len(rr))
    return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)


def _scores(m: LoadedModel, batch: torch.Tensor, target: int, chunk: int) -> torch.Tensor:
    """(N, C, F, T) -> (N,) probability of ``target``, ``chunk`` inputs per forward pass."""
    out = []
    with torch.no_grad(), eval_mode(m.net):
        for i in range(0, batch.shape[0], chunk):
            out.append(m.probabilities(m.net(batch[i : i + chunk]))[:, target].double().cpu())
    return torch.cat(out)


def perturbation_curves(
    m: LoadedModel,
    x: torch.Tensor,
    order: torch.Tensor,
    *,
    target: Target,
    cells: tuple[int, int],
    steps: int = 16,
    baseline: str = "noisy-linear",
    chunk: int = 16,
) -> Curves:
    """Deletion and insertion curves of one input for one cell order.

    x : (1, C, F, T) front-end output. order : (n,) the cells, most important first (see
    :func:`cell_order`). steps : points on each curve besides the start. chunk : perturbed
    inputs per forward pass (both curves' 2 (steps + 1) inputs go through in chunks).
    """
    x = check_input(m, x)
    if x.shape[0] != 1:
        raise ParameterError(f"faithfulness curves take one input (1, C, F, T), got {tuple(x.shape)}")
    if steps < 1 or chunk < 1:
        raise ParameterError(f"steps and chunk must be at least 1, got {steps} and {chunk}")
    t_idx = target_index(m, target)
    ids, n_f, n_t = cell_ids((x.shape[-2], x.shape[-1]), cells)
    n = n_f * n_t
    if sorted(order.tolist()) != list(range(n)):
        raise ParameterError(f"the cell order must be a permutation of the {n} cells")
    rank = torch.empty(n, dtype=torch.long)
    rank[order.cpu()] = torch.arange(n)
    pixel_rank = rank[ids].to(x.device)  # (F, T): when each value is changed
    counts = [round(s * n / steps) for s in range(steps + 1)]
    changed = pixel_rank[None] < torch.tensor(counts, device=x.device)[:, None, None]  # (S + 1, F, T)
    changed = changed[:, None]  # (S + 1, 1, F, T)
    if baseline == "noisy-linear":
        deleted = torch.stack(
            [noisy_linear_impute(x[0], c[0], seed=s) for s, c in enumerate(changed)]
        )  # (S + 1, C, F, T)
        inserted = torch.stack([noisy_linear_impute(x[0], ~c[0], seed=1000 + s) for s, c in enumerate(changed)])
        full_base = noisy_linear_impute(x[0], torch.ones_like(changed[0, 0]), seed=2000)[None]
    else:
        base = baseline_input(m, x, baseline).expand_as(x)
        deleted = torch.where(changed, base, x)
        inserted = torch.where(changed, x, base)
        full_base = base
    scores = _scores(m, torch.cat([x, full_base, deleted, inserted]), t_idx, chunk).numpy()
    score, base_score = float(scores[0]), float(scores[1])
    k = steps + 1
    norm = score if score > 0 else float("nan")
    return Curves(
        fractions=np.asarray(counts, dtype=np.float64) / n,
        deletion=scores[2 : 2 + k] / norm,
        insertion=scores[2 + k : 2 + 2 * k] / norm,
        score=score,
        baseline_score=base_score,
    )


def mean_curves(curves: Sequence[Curves]) -> Curves:
    """The point-wise mean of curves on the same fractions (random seeds, patches)."""
    if not curves:
        raise ParameterError("no curves to average")
    return Curves(
        fractions=curves[0].fractions,
        deletion=np.mean([c.deletion for c in curves], axis=0),
        insertion=np.mean([c.insertion for c in curves], axis=0),
        score=float(np.mean([c.score for c in curves])),
        baseline_score=float(np.mean([c.baseline_score for c in curves])),
    )


def random_curves(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    target: Target,
    cells: tuple[int, int],
    seeds: int = 3,
    **kwargs: Any,
) -> Curves:
    """The mean curves of ``seeds`` random cell orders (seeds 0..seeds-1): the random baseline."""
    if seeds < 1:
        raise ParameterError(f"the random baseline needs at least one seed, got {seeds}")
    _, n_f, n_t = cell_ids((x.shape[-2], x.shape[-1]), cells)
    return mean_curves(
        [
            perturbation_curves(m, x, random_order(n_f * n_t, s), target=target, cells=cells, **kwargs)
            for s in range(seeds)
        ]
    )


def score_map(
    m: LoadedModel,
    x: torch.Tensor,
    amap: torch.Tensor | np.ndarray,
    *,
    target: Target,
    cells: tuple[int, int],
    **kwargs: Any,
) -> Curves:
    """Deletion and insertion curves of a map (F, T) on the input ``x`` (1, C, F, T)."""
    if tuple(np.shape(amap)) != tuple(x.shape[-2:]):
        raise ParameterError(f"the map is {tuple(np.shape(amap))} but the input is {tuple(x.shape[-2:])}")
    return perturbation_curves(m, x, cell_order(amap, cells), target=target, cells=cells, **kwargs)


def _logits_fn(m: LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(inp: torch.Tensor) -> torch.Tensor:
        with eval_mode(m.net):
            out: torch.Tensor = m.net(inp)
        return out

    return forward


def infidelity(
    m: LoadedModel,
    x: torch.Tensor,
    attribution: torch.Tensor,
    *,
    target: Target,
    n_samples: int = 8,
    noise: float = 0.1,
    seed: int = 0,
) -> float:
    """Captum's infidelity (Yeh et al. 2019) of ``attribution`` (the shape of ``x``, (1, C, F, T))
    for the target's logit: E[(Iᵀ·attr − (f(x) − f(x − I)))²] over Gaussian perturbations I of
    σ = ``noise`` x the input's standard deviation, with the attribution's best scale
    (``normalize=True``, so maps in any unit compare). Lower is better."""
    from captum.metrics import infidelity as _infidelity

    x = check_input(m, x)
    sigma = noise * float(x.std())
    gen = torch.Generator(device=x.device).manual_seed(int(seed))

    def perturb(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randn(inp.shape, generator=gen, device=inp.device, dtype=inp.dtype) * sigma
        return i, inp - i

    with torch.no_grad():
        value = _infidelity(
            _logits_fn(m),
            perturb,
            x,
            attribution.detach().to(x.device, x.dtype).expand_as(x),
            target=target_index(m, target),
            n_perturb_samples=n_samples,
            normalize=True,
        )
    return float(value.reshape(-1)[0])


def sensitivity(
    m: LoadedModel,
    x: torch.Tensor,
    explain: Callable[[torch.Tensor], torch.Tensor],
    *,
    n_samples: int = 4,
    radius: float = 0.02,
    seed: int = 0,
) -> float:
    """Captum's max-sensitivity (Yeh et al. 2019): the largest ‖explain(x + δ) − explain(x)‖ /
    ‖explain(x)‖ over ``n_samples`` uniform perturbations |δ| ≤ ``radius`` x the input's value
    range. ``explain`` : (N, C, F, T) -> attributions of the same shape. Lower is steadier."""
    from captum.metrics import sensitivity_max

    x = check_input(m, x)
    r = radius * float(x.max() - x.min())
    gen = torch.Generator(device=x.device).manual_seed(int(seed))

    def one(inp: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        return inp[0] if isinstance(inp, tuple) else inp  # captum passes tuples of inputs

    def perturb(inp: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        t = one(inp)
        u = torch.rand(t.shape, generator=gen, device=t.device, dtype=t.dtype)
        return t + (2 * u - 1) * r

    def explanation(inp: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.enable_grad():  # captum calls this under no_grad; gradient methods need it
            return explain(one(inp)).detach()

    value = sensitivity_max(explanation, x, perturb_func=perturb, n_perturb_samples=n_samples)
    return float(value.reshape(-1)[0])
