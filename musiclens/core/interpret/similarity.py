"""Layer-wise similarity of feature maps for pairs of stimuli (e.g. a mix and one of its stems).

For every layer, the two stimuli's activations ``A`` and ``B`` (same shape) are compared:

``pearson``  correlation of all values of the layer (flattened), in [-1, 1].
``cosine``   ``<A, B> / (‖A‖ ‖B‖)``, in [-1, 1].
``nmse``     normalised mean squared error ``‖A − B‖² / ‖A‖²``: the error relative to the
             energy of the first (reference) stimulus, as in the instrument-recognition
             analyses that compare a mix's maps with a stem's; 0 for identical maps.
``cka``      linear CKA (Kornblith et al. 2019) between the two maps read as
             *positions × channels* matrices ``X, Y ∈ R^{n×K}`` (n = F_l·T_l positions,
             columns centred over positions): ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``, in [0, 1].
             It is invariant to rotations and isotropic scaling of the channels.
``cka_baseline`` the mean CKA after randomly permuting the positions of ``Y``
             (``n_permutations`` times): what CKA gives when the positions do not
             correspond; a similarity is only meaningful well above it.
``mse_max``  mean squared error of the two maps after dividing *both* by the pair's
             largest absolute value ``s = max(max|A|, max|B|)``:
             ``mean((A/s − B/s)²)``, in [0, 4] (0 for identical maps, 4 only for ``A = −B``
             at ±s everywhere; for non-negative maps such as post-ReLU ones, in [0, 1]).
             This is the "MSE normalised per pair to its maximum" of the instrument study;
             unlike ``nmse`` it is symmetric in A and B. 0 when both maps are all zeros.
``cka_debiased`` linear CKA with the *unbiased* HSIC estimator (Song et al. 2012, as used
             by Kornblith et al. 2019 and Nguyen et al. 2021), which removes the upward bias
             of plain CKA when the number of positions is not much larger than the number of
             channels. With ``K = XXᵀ``, ``L = YYᵀ`` (features centred over positions) and
             ``K̃, L̃`` those with their diagonals set to 0, n positions::

                 HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))
                 cka_debiased = HSIC₁(K, L) / √(HSIC₁(K, K) · HSIC₁(L, L))

             computed in feature space (never forming the n×n Gram matrices). Same
             invariances as ``cka``; can be slightly negative for unrelated maps; needs
             n ≥ 4 positions. ``cka_debiased_baseline`` is its permutation baseline (close
             to 0 when positions do not correspond).

:func:`layer_similarity` runs both stimuli once, captures every layer and returns a curve
per metric over the layers (``values[metric]`` is (B, L) for B pairs and L layers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import check_input, eval_mode
from musiclens.core.interpret.hooks import capture
from musiclens.core.models.registry import LoadedModel

#: Every metric :func:`layer_similarity` knows.
METRICS = ("pearson", "cosine", "nmse", "mse_max", "cka", "cka_debiased")
#: What :func:`layer_similarity` computes when not told (unchanged from the first version).
DEFAULT_METRICS = ("pearson", "cosine", "nmse", "cka")


def _flat(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[0], -1).double()


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of (B, ...) maps, per item -> (B,). NaN when a map is constant."""
    x, y = _flat(a), _flat(b)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = x.norm(dim=1) * y.norm(dim=1)
    return torch.where(den > 0, (x * y).sum(1) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of (B, ...) maps -> (B,). NaN when a map is all zeros."""
    x, y = _flat(a), _flat(b)
    den = x.norm(dim=1) * y.norm(dim=1)
    return torch.where(den > 0, (x * y).sum(1) / den.clamp_min(1e-300), torch.full_like(den, float("nan")))


def nmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a − b‖² / ‖a‖²`` per item -> (B,) (``a`` is the reference). NaN when ``a`` is 0."""
    x, y = _flat(a), _flat(b)
    ref = x.pow(2).sum(1)
    err = (x - y).pow(2).sum(1)
    undefined = torch.where(err > 0, torch.full_like(err, float("nan")), torch.zeros_like(err))
    return torch.where(ref > 0, err / ref.clamp_min(1e-300), undefined)


def mse_max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE of the two maps each divided by the pair's maximum absolute value -> (B,), in
    [0, 4] (see the module doc). 0 when both maps are all zeros."""
    x, y = _flat(a), _flat(b)
    if x.shape != y.shape:
        raise ParameterError(f"mse_max needs maps of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    scale = torch.maximum(x.abs().amax(1), y.abs().amax(1))  # (B,)
    err = (x - y).pow(2).mean(1)
    return torch.where(scale > 0, err / scale.clamp_min(1e-300).pow(2), torch.zeros_like(err))


def _positions(a: torch.Tensor) -> torch.Tensor:
    """(B, K, F, T) / (B, K, T) -> (B, n positions, K) float64, centred over positions."""
    if a.dim() < 3:
        raise ParameterError(f"CKA needs maps with positions, (B, K, T) or (B, K, F, T); got {tuple(a.shape)}")
    x = a.reshape(a.shape[0], a.shape[1], -1).transpose(1, 2).double()
    return x - x.mean(1, keepdim=True)


def _cka_centred(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (B, n, K), y (B, n, K') centred -> (B,) linear CKA."""
    cross = torch.linalg.matrix_norm(y.transpose(1, 2) @ x).pow(2)
    den = torch.linalg.matrix_norm(x.transpose(1, 2) @ x) * torch.linalg.matrix_norm(y.transpose(1, 2) @ y)
    return torch.where(den > 0, cross / den.clamp_min(1e-300), torch.full_like(den, float("nan")))


def _hsic_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of linear kernels ``K = x xᵀ``, ``L = y yᵀ`` in feature space.

    x (B, n, K), y (B, n, K') -> (B,). Needs n >= 4.
    """
    n = x.shape[1]
    if n < 4:
        raise ParameterError(f"debiased CKA needs at least 4 positions, got {n}")
    tr_kl = torch.linalg.matrix_norm(y.transpose(1, 2) @ x).pow(2)  # tr(KL)
    dk, dl = x.pow(2).sum(2), y.pow(2).sum(2)  # diag(K), diag(L): (B, n)
    sx, sy = x.sum(1), y.sum(1)  # Xᵀ1, Yᵀ1
    k1 = (x @ sx.unsqueeze(2)).squeeze(2) - dk  # K̃1: (B, n)
    l1 = (y @ sy.unsqueeze(2)).squeeze(2) - dl  # L̃1
    sum_k = sx.pow(2).sum(1) - dk.sum(1)  # 1ᵀK̃1
    sum_l = sy.pow(2).sum(1) - dl.sum(1)  # 1ᵀL̃1
    tr_tilde = tr_kl - (dk * dl).sum(1)  # tr(K̃L̃)
    hsic: torch.Tensor = (tr_tilde + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum(1)) / (
        n * (n - 3)
    )
    return hsic


def _cka_debiased_centred(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (B, n, K), y (B, n, K') centred -> (B,) debiased linear CKA."""
    den = _hsic_unbiased(x, x) * _hsic_unbiased(y, y)
    return torch.where(den > 0, _hsic_unbiased(x, y) / den.clamp_min(1e-300).sqrt(), torch.full_like(den, float("nan")))


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two maps (positions × channels), per item: (B, K, ...) -> (B,)."""
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ParameterError(f"CKA needs the same batch and positions, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _cka_centred(_positions(a), _positions(b))


def debiased_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Debiased linear CKA (unbiased HSIC, see the module doc), per item: (B, K, ...) -> (B,).
    NaN when a map has no variance over positions."""
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ParameterError(f"CKA needs the same batch and positions, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _cka_debiased_centred(_positions(a), _positions(b))


def cka_permutation_baseline(
    a: torch.Tensor, b: torch.Tensor, *, n_permutations: int = 10, seed: int | None = 0, debiased: bool = False
) -> torch.Tensor:
    """Mean linear CKA (``debiased=True``: debiased CKA) after shuffling the positions of
    ``b`` -> (B,)."""
    if n_permutations < 1:
        raise ParameterError(f"n_permutations must be at least 1, got {n_permutations}")
    x, y = _positions(a), _positions(b)
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for _ in range(n_permutations):
        perm = torch.randperm(y.shape[1], generator=gen).to(y.device)  # same permutations on every device
        total += (_cka_debiased_centred if debiased else _cka_centred)(x, y[:, perm])
    return total / n_permutations


@dataclass
class SimilarityCurve:
    """layers : the L compared layers, in network order.
    values : metric -> (B, L) float64 array (``cka_baseline`` included when CKA is).
    shapes : layer -> activation shape of one item.
    """

    layers: list[str]
    values: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def curve(self, metric: str, item: int = 0) -> np.ndarray:
        """(L,) values of ``metric`` over the layers for pair ``item``."""
        if metric not in self.values:
            raise ParameterError(f"metric {metric!r} was not computed; have {', '.join(self.values)}")
        out: np.ndarray = self.values[metric][item]
        return out

    def to_dict(self, item: int = 0) -> dict[str, Any]:
        """JSON-friendly: {"layers": [...], "<metric>": [...], ...} (NaN -> None)."""
        out: dict[str, Any] = {"layers": list(self.layers)}
        for k, v in self.values.items():
            out[k] = [None if not np.isfinite(x) else float(x) for x in v[item]]
        return out


def default_layers(m: LoadedModel) -> list[str]:
    """Every inspectable layer of the model except the output logits."""
    return [name for name, info in m.layers.items() if info.kind != "output"]


def _check_metrics(metrics: Iterable[str]) -> list[str]:
    metrics = list(metrics)
    unknown = [k for k in metrics if k not in METRICS]
    if unknown or not metrics:
        raise ParameterError(f"unknown metrics {unknown}; allowed: {', '.join(METRICS)}")
    return metrics


def _value_keys(metrics: list[str], n_permutations: int) -> list[str]:
    keys = list(metrics)
    if n_permutations > 0:
        keys += [f"{k}_baseline" for k in ("cka", "cka_debiased") if k in metrics]
    return keys


def _pair_values(
    a: torch.Tensor, b: torch.Tensor, metrics: list[str], n_permutations: int, seed: int | None
) -> dict[str, np.ndarray]:
    """One layer's activations of B pairs -> metric -> (B,) (absent keys: not applicable)."""
    fns = {"pearson": pearson, "cosine": cosine, "nmse": nmse, "mse_max": mse_max}
    out: dict[str, np.ndarray] = {}
    for k in metrics:
        if k in fns:
            out[k] = fns[k](a, b).cpu().numpy()
        elif a.dim() >= 3 and int(np.prod(a.shape[2:])) >= (4 if k == "cka_debiased" else 1):
            debiased = k == "cka_debiased"
            out[k] = (debiased_cka if debiased else linear_cka)(a, b).cpu().numpy()
            if n_permutations > 0:
                out[f"{k}_baseline"] = (
                    cka_permutation_baseline(a, b, n_permutations=n_permutations, seed=seed, debiased=debiased)
                    .cpu()
                    .numpy()
                )
    return out


def layer_similarity(
    m: LoadedModel,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    n_permutations: int = 10,
    seed: int | None = 0,
) -> SimilarityCurve:
    """Compare the feature maps of two stimuli at every layer.

    Parameters
    ----------
    x_a, x_b : (B, C, F, T) front-end outputs of B pairs (``x_a`` is the reference for
        nMSE, e.g. the mix). If their T differ, both are cut to the shorter one.
    layers : default: every layer in ``m.layers`` but the output.
    metrics : any of :data:`METRICS` (default :data:`DEFAULT_METRICS`).
    n_permutations : permutations for the CKA baselines (0 = no baseline).

    Returns
    -------
    :class:`SimilarityCurve`. Layers without positions (dense) get NaN for CKA.
    """
    metrics = _check_metrics(metrics)
    x_a, x_b = check_input(m, x_a), check_input(m, x_b)
    if x_a.shape[0] != x_b.shape[0]:
        raise ParameterError(f"x_a and x_b need the same batch size, got {x_a.shape[0]} and {x_b.shape[0]}")
    t = min(x_a.shape[-1], x_b.shape[-1])
    x_a, x_b = x_a[..., :t], x_b[..., :t]
    names = list(layers) if layers is not None else default_layers(m)
    if not names:
        raise ParameterError(f"model {m.name!r} lists no layers to compare")
    with torch.no_grad(), eval_mode(m.net):
        with capture(m, names) as acts_a:
            m.net(x_a)
        with capture(m, names) as acts_b:
            m.net(x_b)
    ran = [n for n in names if n in acts_a and n in acts_b]
    values = {k: np.full((x_a.shape[0], len(ran)), np.nan) for k in _value_keys(metrics, n_permutations)}
    shapes = {}
    for j, name in enumerate(ran):
        a, b = acts_a[name], acts_b[name]
        shapes[name] = tuple(a.shape[1:])
        for k, v in _pair_values(a, b, metrics, n_permutations, seed).items():
            values[k][:, j] = v
    return SimilarityCurve(ran, values, shapes)


def all_pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered pair (i, j), i < j, of n items."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def class_pairs(labels: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """label -> every pair (i, j), i < j, of stimuli with that label (classes with fewer
    than two stimuli get no entry): the instrument study's within-class comparison."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return {
        label: [(a, b) for k, a in enumerate(idx) for b in idx[k + 1 :]]
        for label, idx in groups.items()
        if len(idx) >= 2
    }


def pairwise_similarity(
    m: LoadedModel,
    xs: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    layers: Sequence[str] | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    n_permutations: int = 10,
    seed: int | None = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SimilarityCurve:
    """Layer-wise similarity of many pairs among N stimuli, each run through the net once.

    Parameters
    ----------
    xs : N front-end outputs (1, C, F, T) (or (C, F, T)); all are cut to the shortest T.
    pairs : index pairs (i, j) into ``xs`` (``i`` is the reference for nMSE); default
        :func:`all_pairs`.
    progress : called as ``progress(done, total)`` after every comparison of one pair at
        one layer (total = pairs × layers), e.g. to show progress on long runs.
    Other parameters as :func:`layer_similarity`.

    Returns
    -------
    :class:`SimilarityCurve` with ``values[metric]`` of shape (P, L), one row per pair in
    the order of ``pairs`` (take ``np.nanmean(values[k], 0)`` for the mean curve).
    """
    metrics = _check_metrics(metrics)
    xs = [check_input(m, x) for x in xs]
    if any(x.shape[0] != 1 for x in xs):
        raise ParameterError("pairwise_similarity takes one item (1, C, F, T) per stimulus")
    pairs = all_pairs(len(xs)) if pairs is None else [(int(i), int(j)) for i, j in pairs]
    if not pairs:
        raise ParameterError(f"no pairs to compare among {len(xs)} stimuli")
    if any(not (0 <= i < len(xs) and 0 <= j < len(xs)) for i, j in pairs):
        raise ParameterError(f"pair indices must be in 0..{len(xs) - 1}, got {pairs}")
    t = min(x.shape[-1] for x in xs)
    names = list(layers) if layers is not None else default_layers(m)
    if not names:
        raise ParameterError(f"model {m.name!r} lists no layers to compare")
    used = sorted({i for p in pairs for i in p})
    acts: dict[int, dict[str, torch.Tensor]] = {}
    with torch.no_grad(), eval_mode(m.net):
        for i in used:
            with capture(m, names) as a:
                m.net(xs[i][..., :t])
            acts[i] = dict(a)
    ran = [n for n in names if all(n in acts[i] for i in used)]
    values = {k: np.full((len(pairs), len(ran)), np.nan) for k in _value_keys(metrics, n_permutations)}
    shapes = {}
    for j, name in enumerate(ran):
        shapes[name] = tuple(acts[used[0]][name].shape[1:])
        for p, (ia, ib) in enumerate(pairs):
            for k, v in _pair_values(acts[ia][name], acts[ib][name], metrics, n_permutations, seed).items():
                values[k][p, j] = v[0]
            if progress is not None:
                progress(j * len(pairs) + p + 1, len(ran) * len(pairs))
    return SimilarityCurve(ran, values, shapes)
