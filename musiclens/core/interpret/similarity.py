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
``cka_baseline`` the mean CKA over every permutation of the positions of ``Y``: what
             CKA gives when the positions do not correspond; a similarity is only
             meaningful well above it. Computed exactly in closed form (for centred
             maps, the mean of ``‖Y_πᵀX‖²_F`` over all n! permutations π is
             ``‖X‖²_F ‖Y‖²_F / (n − 1)``), which is what the earlier sampled mean over a
             few random permutations estimated (:func:`cka_permutation_baseline` still
             draws permutations when given ``n_permutations``).
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
             n ≥ 4 positions. ``cka_debiased_baseline`` is its permutation baseline: the
             unbiased HSIC has mean exactly 0 over all permutations of the positions, so
             the exact baseline is 0 (a sampled one scatters around it).

:func:`layer_similarity` runs both stimuli once, captures every layer and returns a curve
per metric over the layers (``values[metric]`` is (B, L) for B pairs and L layers).
:func:`pairwise_similarity` runs each of N stimuli once and computes, per layer, what every
pair shares only once per stimulus (centred maps, Gram norms, HSIC terms: :class:`MapStats`),
so a pair costs one (K × n) @ (n × K') product at a layer; stimuli are held one connected
group of pairs at a time (the files of one class for within-class pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
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


def _cross_sq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``‖yᵀx‖²_F`` = tr(KL) for x (..., n, K), y (..., n, K') -> (...): the one product per pair."""
    out: torch.Tensor = torch.linalg.matrix_norm(y.transpose(-1, -2) @ x).pow(2)
    return out


def _hsic_terms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (..., n, K) -> (diag(K) (..., n), K̃1 (..., n), 1ᵀK̃1 (...)) for ``K = x xᵀ`` with its
    diagonal set to 0 (K̃): what the unbiased HSIC needs of one map besides tr(KL)."""
    diag = x.pow(2).sum(-1)
    total = x.sum(-2)  # xᵀ1
    row = (x @ total.unsqueeze(-1)).squeeze(-1) - diag
    return diag, row, total.pow(2).sum(-1) - diag.sum(-1)


def _hsic_combine(
    tr_kl: torch.Tensor,
    tx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ty: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    n: int,
) -> torch.Tensor:
    """The unbiased HSIC (module doc) from tr(KL) and both maps' :func:`_hsic_terms`."""
    (dk, k1, sum_k), (dl, l1, sum_l) = tx, ty
    tr_tilde = tr_kl - (dk * dl).sum(-1)  # tr(K̃L̃)
    hsic: torch.Tensor = (tr_tilde + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum(-1)) / (
        n * (n - 3)
    )
    return hsic


def _hsic_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of linear kernels ``K = x xᵀ``, ``L = y yᵀ`` in feature space.

    x (B, n, K), y (B, n, K') -> (B,). Needs n >= 4.
    """
    n = x.shape[-2]
    if n < 4:
        raise ParameterError(f"debiased CKA needs at least 4 positions, got {n}")
    return _hsic_combine(_cross_sq(x, y), _hsic_terms(x), _hsic_terms(y), n)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, NaN where den <= 0 (a map without variance)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(den, float("nan")))


@dataclass(frozen=True)
class MapStats:
    """What one stimulus's map at one layer brings to every pair it is in, computed once.

    centred : (B, D) float64, the map flattened minus its mean. mean, norm2, cnorm2, absmax :
        (B,) its mean, ``‖x‖²``, ``‖x − mean‖²`` and ``max |x|``: with them a pair's Pearson,
        cosine, nMSE and mse_max need one dot product (``‖x‖²`` is ``cnorm2 + D·mean²``, the
        same sum a pair's ``<x, y>`` makes, so identical maps give an nMSE of exactly 0).
    pos : (B, n, K) float64 positions x channels centred over positions, or None for a map
        without positions (dense layers: no CKA).
    gram : (B,) ``‖XᵀX‖_F``. sq : (B,) ``‖X‖²_F``.
    hsic_terms : :func:`_hsic_terms` of ``pos``; hsic : (B,) HSIC₁(K, K); both None when
        n < 4 (no debiased CKA).
    """

    centred: torch.Tensor
    mean: torch.Tensor
    norm2: torch.Tensor
    cnorm2: torch.Tensor
    absmax: torch.Tensor
    pos: torch.Tensor | None
    gram: torch.Tensor | None
    sq: torch.Tensor | None
    hsic_terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    hsic: torch.Tensor | None

    @classmethod
    def of(cls, a: torch.Tensor, *, cka: bool = True, debiased: bool = True) -> MapStats:
        """The statistics of a (B, K, ...) map (``cka`` / ``debiased``: those terms too)."""
        flat = _flat(a)
        mean = flat.mean(1)
        centred = flat - mean[:, None]
        cnorm2 = centred.pow(2).sum(1)
        stats = (centred, mean, cnorm2 + flat.shape[1] * mean * mean, cnorm2, flat.abs().amax(1))
        if (not cka and not debiased) or a.dim() < 3:
            return cls(*stats, None, None, None, None, None)
        pos = _positions(a)
        n = pos.shape[1]
        terms = hsic = None
        if debiased and n >= 4:
            terms = _hsic_terms(pos)
            hsic = _hsic_combine(_cross_sq(pos, pos), terms, terms, n)
        gram = torch.linalg.matrix_norm(pos.transpose(1, 2) @ pos) if cka else None
        return cls(*stats, pos, gram, pos.pow(2).sum((1, 2)), terms, hsic)

    @property
    def positions(self) -> int:
        """n, the number of positions (0 without positions)."""
        return 0 if self.pos is None else int(self.pos.shape[1])


def _cka_of(sa: MapStats, sb: MapStats, metrics: Sequence[str], baseline: bool) -> dict[str, torch.Tensor]:
    """Linear and/or debiased CKA of paired maps from their :class:`MapStats` -> metric ->
    (B,) (``*_baseline``: the exact permutation means when ``baseline``). Absent keys: the
    maps have too few positions."""
    out: dict[str, torch.Tensor] = {}
    if sa.pos is None or sb.pos is None:
        return out
    n = sa.positions
    cross = _cross_sq(sa.pos, sb.pos)
    if "cka" in metrics and sa.gram is not None and sb.gram is not None:
        den = sa.gram * sb.gram
        out["cka"] = _ratio(cross, den)
        if baseline:  # E_π ‖Y_πᵀX‖² = ‖X‖²‖Y‖²/(n − 1) for centred maps (module doc)
            assert sa.sq is not None and sb.sq is not None
            out["cka_baseline"] = _ratio(sa.sq * sb.sq / max(n - 1, 1), den if n > 1 else torch.zeros_like(den))
    if "cka_debiased" in metrics and sa.hsic_terms is not None and sb.hsic_terms is not None:
        assert sa.hsic is not None and sb.hsic is not None
        den = sa.hsic * sb.hsic
        out["cka_debiased"] = _ratio(_hsic_combine(cross, sa.hsic_terms, sb.hsic_terms, n), den.sqrt())
        if baseline:  # the unbiased HSIC averages to exactly 0 over all permutations
            out["cka_debiased_baseline"] = _ratio(torch.zeros_like(den), den)
    return out


def _cka_centred(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (..., n, K), y (..., n, K') centred -> (...) linear CKA."""
    gx = torch.linalg.matrix_norm(x.transpose(-1, -2) @ x)
    gy = torch.linalg.matrix_norm(y.transpose(-1, -2) @ y)
    return _ratio(_cross_sq(x, y), gx * gy)


def _cka_debiased_centred(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x (B, n, K), y (B, n, K') centred -> (B,) debiased linear CKA."""
    den = _hsic_unbiased(x, x) * _hsic_unbiased(y, y)
    return _ratio(_hsic_unbiased(x, y), den.sqrt())


def _check_same_positions(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ParameterError(f"CKA needs the same batch and positions, got {tuple(a.shape)} and {tuple(b.shape)}")


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two maps (positions × channels), per item: (B, K, ...) -> (B,)."""
    _check_same_positions(a, b)
    return _cka_centred(_positions(a), _positions(b))


def debiased_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Debiased linear CKA (unbiased HSIC, see the module doc), per item: (B, K, ...) -> (B,).
    NaN when a map has no variance over positions."""
    _check_same_positions(a, b)
    return _cka_debiased_centred(_positions(a), _positions(b))


def cka_permutation_baseline(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    n_permutations: int | None = None,
    seed: int | None = 0,
    debiased: bool = False,
) -> torch.Tensor:
    """Mean linear CKA (``debiased=True``: debiased CKA) over permutations of the positions
    of ``b`` -> (B,).

    n_permutations : None (default) = the exact mean over all permutations, in closed form
        (module doc); a number = the sample mean over that many random permutations, an
        estimate of the same value (kept to check the closed form).
    """
    _check_same_positions(a, b)
    if n_permutations is None:
        metric = "cka_debiased" if debiased else "cka"
        stats = [MapStats.of(t, cka=not debiased, debiased=debiased) for t in (a, b)]
        out = _cka_of(stats[0], stats[1], (metric,), baseline=True)
        if f"{metric}_baseline" not in out:
            raise ParameterError(f"{metric} needs more positions than {stats[0].positions}")
        return out[f"{metric}_baseline"]
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


def _value_keys(metrics: list[str], baseline: bool) -> list[str]:
    keys = list(metrics)
    if baseline:
        keys += [f"{k}_baseline" for k in ("cka", "cka_debiased") if k in metrics]
    return keys


def _flat_metrics(sa: MapStats, sb: MapStats, metrics: Sequence[str]) -> dict[str, torch.Tensor]:
    """Pearson, cosine, nMSE and mse_max of paired maps from their :class:`MapStats` and one
    dot product -> metric -> (B,); the same values as :func:`pearson`, :func:`cosine`,
    :func:`nmse` and :func:`mse_max` (to rounding)."""
    if sa.centred.shape != sb.centred.shape:
        raise ParameterError(f"maps of different sizes cannot be compared: {sa.centred.shape} and {sb.centred.shape}")
    d = sa.centred.shape[1]
    cdot = (sa.centred * sb.centred).sum(1)
    dot = cdot + d * sa.mean * sb.mean
    err = (sa.norm2 + sb.norm2 - 2 * dot).clamp_min(0)  # ‖a − b‖²
    out = {}
    if "pearson" in metrics:
        out["pearson"] = _ratio(cdot, (sa.cnorm2 * sb.cnorm2).sqrt())
    if "cosine" in metrics:
        out["cosine"] = _ratio(dot, (sa.norm2 * sb.norm2).sqrt())
    if "nmse" in metrics:
        undefined = torch.where(err > 0, torch.full_like(err, float("nan")), torch.zeros_like(err))
        out["nmse"] = torch.where(sa.norm2 > 0, err / sa.norm2.clamp_min(1e-300), undefined)
    if "mse_max" in metrics:
        scale = torch.maximum(sa.absmax, sb.absmax)
        out["mse_max"] = torch.where(scale > 0, err / d / scale.clamp_min(1e-300).pow(2), torch.zeros_like(err))
    return out


def _pair_values(sa: MapStats, sb: MapStats, metrics: list[str], baseline: bool) -> dict[str, np.ndarray]:
    """One layer's statistics of B paired maps -> metric -> (B,) (absent keys: not applicable)."""
    out = _flat_metrics(sa, sb, metrics)
    out.update(_cka_of(sa, sb, metrics, baseline))
    return {k: v.cpu().numpy() for k, v in out.items()}


def _stats(a: torch.Tensor, metrics: list[str]) -> MapStats:
    return MapStats.of(a, cka="cka" in metrics, debiased="cka_debiased" in metrics)


def layer_similarity(
    m: LoadedModel,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    baseline: bool = True,
) -> SimilarityCurve:
    """Compare the feature maps of two stimuli at every layer.

    Parameters
    ----------
    x_a, x_b : (B, C, F, T) front-end outputs of B pairs (``x_a`` is the reference for
        nMSE, e.g. the mix). If their T differ, both are cut to the shorter one.
    layers : default: every layer in ``m.layers`` but the output.
    metrics : any of :data:`METRICS` (default :data:`DEFAULT_METRICS`).
    baseline : add the CKA permutation baselines (``cka_baseline``, ``cka_debiased_baseline``:
        the exact means over all permutations of the positions, see the module doc).

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
    values = {k: np.full((x_a.shape[0], len(ran)), np.nan) for k in _value_keys(metrics, baseline)}
    shapes = {}
    for j, name in enumerate(ran):
        a, b = acts_a[name], acts_b[name]
        shapes[name] = tuple(a.shape[1:])
        for k, v in _pair_values(_stats(a, metrics), _stats(b, metrics), metrics, baseline).items():
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
    baseline: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SimilarityCurve:
    """Layer-wise similarity of many pairs among N stimuli (:func:`pairwise_similarity_steps`,
    with ``progress(done, total)`` called after every comparison of one pair at one layer)."""
    steps = pairwise_similarity_steps(m, xs, pairs, layers=layers, metrics=metrics, baseline=baseline)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            curve: SimilarityCurve = stop.value
            return curve
        if progress is not None:
            progress(done, total)


def pairwise_similarity_steps(
    m: LoadedModel,
    xs: Sequence[torch.Tensor],
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    layers: Sequence[str] | None = None,
    metrics: Iterable[str] = DEFAULT_METRICS,
    baseline: bool = True,
) -> Generator[tuple[int, int], None, SimilarityCurve]:
    """Layer-wise similarity of many pairs among N stimuli, each run through the net once.

    Parameters
    ----------
    xs : N front-end outputs (1, C, F, T) (or (C, F, T)); all are cut to the shortest T.
    pairs : index pairs (i, j) into ``xs`` (``i`` is the reference for nMSE); default
        :func:`all_pairs`.
    Other parameters as :func:`layer_similarity`.

    Yields ``(done, total)`` after every comparison of one pair at one layer (total = pairs ×
    layers) and returns the curve.

    Each stimulus's statistics at a layer (:class:`MapStats`) are computed once and shared
    by its pairs; the activations of one connected group of pairs (e.g. one class) are held
    at a time, so memory grows with the largest group, not with N.

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
    values = {k: np.full((len(pairs), len(names)), np.nan) for k in _value_keys(metrics, baseline)}
    shapes: dict[str, tuple[int, ...]] = {}
    ran: set[str] = set()
    done = 0
    for group in connected_groups(pairs):
        files = sorted({i for p in group for i in pairs[p]})
        acts: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad(), eval_mode(m.net):
            for i in files:
                with capture(m, names) as a:
                    m.net(xs[i][..., :t])
                acts[i] = dict(a)
        for j, name in enumerate(names):
            if not all(name in acts[i] for i in files):  # a layer that did not run: its pairs count as done
                done += len(group)
                yield done, len(names) * len(pairs)
                continue
            ran.add(name)
            shapes[name] = tuple(acts[files[0]][name].shape[1:])
            stats = {i: _stats(acts[i][name], metrics) for i in files}
            for p in group:
                ia, ib = pairs[p]
                for k, v in _pair_values(stats[ia], stats[ib], metrics, baseline).items():
                    values[k][p, j] = v[0]
                done += 1
                yield done, len(names) * len(pairs)
            del stats
        del acts
    keep = [j for j, name in enumerate(names) if name in ran]
    return SimilarityCurve([names[j] for j in keep], {k: v[:, keep] for k, v in values.items()}, shapes)


def connected_groups(pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The pairs split into groups that share no stimulus (connected components of the
    graph whose edges are the pairs) -> lists of indices into ``pairs``, each in order."""
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for p, (a, _) in enumerate(pairs):
        groups.setdefault(root(a), []).append(p)
    return list(groups.values())
