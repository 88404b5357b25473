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

:func:`layer_similarity` runs both stimuli once, captures every layer and returns a curve
per metric over the layers (``values[metric]`` is (B, L) for B pairs and L layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from musiclens.core.errors import ParameterError
from musiclens.core.interpret._common import check_input, eval_mode
from musiclens.core.interpret.hooks import capture
from musiclens.core.models.registry import LoadedModel

METRICS = ("pearson", "cosine", "nmse", "cka")


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
    return torch.where(ref > 0, err / ref.clamp_min(1e-300), torch.where(err > 0, torch.full_like(err, float("nan")), torch.zeros_like(err)))


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


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two maps (positions × channels), per item: (B, K, ...) -> (B,)."""
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ParameterError(f"CKA needs the same batch and positions, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _cka_centred(_positions(a), _positions(b))


def cka_permutation_baseline(a: torch.Tensor, b: torch.Tensor, *, n_permutations: int = 10,
                             seed: int | None = 0) -> torch.Tensor:
    """Mean linear CKA after shuffling the positions of ``b`` -> (B,)."""
    if n_permutations < 1:
        raise ParameterError(f"n_permutations must be at least 1, got {n_permutations}")
    x, y = _positions(a), _positions(b)
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(n_permutations):
        perm = torch.randperm(y.shape[1], generator=gen)
        total += _cka_centred(x, y[:, perm])
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
        return self.values[metric][item]

    def to_dict(self, item: int = 0) -> dict:
        """JSON-friendly: {"layers": [...], "<metric>": [...], ...} (NaN -> None)."""
        out: dict = {"layers": list(self.layers)}
        for k, v in self.values.items():
            out[k] = [None if not np.isfinite(x) else float(x) for x in v[item]]
        return out


def default_layers(m: LoadedModel) -> list[str]:
    """Every inspectable layer of the model except the output logits."""
    return [name for name, info in m.layers.items() if info.kind != "output"]


def layer_similarity(
    m: LoadedModel,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    metrics: Iterable[str] = METRICS,
    n_permutations: int = 10,
    seed: int | None = 0,
) -> SimilarityCurve:
    """Compare the feature maps of two stimuli at every layer.

    Parameters
    ----------
    x_a, x_b : (B, C, F, T) front-end outputs of B pairs (``x_a`` is the reference for
        nMSE, e.g. the mix). If their T differ, both are cut to the shorter one.
    layers : default: every layer in ``m.layers`` but the output.
    metrics : any of ``pearson``, ``cosine``, ``nmse``, ``cka``.
    n_permutations : permutations for the CKA baseline (0 = no baseline).

    Returns
    -------
    :class:`SimilarityCurve`. Layers without positions (dense) get NaN for CKA.
    """
    metrics = list(metrics)
    unknown = [k for k in metrics if k not in METRICS]
    if unknown or not metrics:
        raise ParameterError(f"unknown metrics {unknown}; allowed: {', '.join(METRICS)}")
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
    keys = metrics + (["cka_baseline"] if "cka" in metrics and n_permutations > 0 else [])
    values = {k: np.full((x_a.shape[0], len(ran)), np.nan) for k in keys}
    shapes = {}
    fns = {"pearson": pearson, "cosine": cosine, "nmse": nmse}
    for j, name in enumerate(ran):
        a, b = acts_a[name], acts_b[name]
        shapes[name] = tuple(a.shape[1:])
        for k in metrics:
            if k == "cka":
                if a.dim() >= 3:
                    values[k][:, j] = linear_cka(a, b).numpy()
                    if "cka_baseline" in values:
                        values["cka_baseline"][:, j] = cka_permutation_baseline(
                            a, b, n_permutations=n_permutations, seed=seed).numpy()
            else:
                values[k][:, j] = fns[k](a, b).numpy()
    return SimilarityCurve(ran, values, shapes)
