"""Sanity check of an attribution by model-weight randomisation (Adebayo et al. 2018).

Cascading randomisation: starting from the top (output) layer, re-initialise one layer
after the other down to the input, recompute the attribution after each step and compare it
with the attribution of the trained model. An attribution method that *depends on what the
model learned* changes quickly (rank correlation and SSIM fall towards 0); one that keeps
looking the same (an edge detector of the input) fails the check.

The user's model is never touched: the check works on a deep copy.

Comparison (per step, on the attribution reduced to one (F, T) map by summing channels):

``spearman``        Spearman rank correlation of the absolute values (Adebayo's main figure);
``spearman_signed`` the same on signed values;
``ssim``            structural similarity (Wang et al. 2004, Gaussian window σ = 1.5) of the
                    absolute maps, each scaled to [0, 1].

Layers are re-initialised with their own ``reset_parameters()`` (Kaiming-uniform for convs
and linears, as at construction); batch norms get the identity (γ = 1, β = 0, mean 0,
variance 1) unless ``include_batchnorm=False``.

Cost: the step-0 map's ranks and SSIM moments are computed once (:class:`Reference`); the
front of a split network (MusiCNN, :mod:`musiclens.core.interpret.integrated_gradients_split`)
is kept across the cascade and recomputed only when a layer it reads was randomised; several
methods (:func:`sanity_check`) run in one cascade on one copy of the network, so they share
that front (MusiCNN, 30 s, gradient + IG: 24 fronts instead of 36).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.interpret import methods as _methods
from musiclens.core.interpret._common import Target, check_input
from musiclens.core.interpret.integrated_gradients_split import FrontCache
from musiclens.core.models.registry import LoadedModel
from musiclens.core.progress import Progress, is_cancelled

Attribution = Callable[[LoadedModel, torch.Tensor], torch.Tensor]
#: the methods the check runs by name: the method table's audio methods (old spellings accepted)
METHODS = tuple(_methods.names(kind="audio"))


@dataclass
class SanityStep:
    """One step of the cascade.

    step : 0 = the trained model, k = the top k layers randomised.
    layer : the layer randomised at this step (readable name or module path; "" at step 0).
    spearman, spearman_signed, ssim : similarity with the step-0 attribution.
    attribution : the attribution (as returned by the method) when ``keep_maps``.
    """

    step: int
    layer: str
    spearman: float
    spearman_signed: float
    ssim: float
    attribution: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "layer": self.layer,
            "spearman": self.spearman,
            "spearman_signed": self.spearman_signed,
            "ssim": self.ssim,
        }


def attribution_method(name: str, *, target: Target, layer: str | None = None, **kwargs: Any) -> Attribution:
    """A named attribution (a name or alias from the method table) as ``(model, x) -> map``."""
    method = _methods.get(name, among=METHODS)
    if method.needs_layer and layer is None:
        raise ParameterError(f"{method.name} needs a layer")
    return lambda mm, x: method(mm, x, target=target, layer=layer, **kwargs)


def _as_map(a: torch.Tensor) -> np.ndarray:
    """Any attribution of one item -> (F, T) float64 (channels summed)."""
    t = a.detach().cpu().double()
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3:
        t = t.sum(0)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ParameterError(f"cannot compare attributions of shape {tuple(a.shape)}; give one item")
    return t.numpy()


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks of ``a`` (flattened), centred."""
    from scipy.stats import rankdata

    r: np.ndarray = rankdata(np.ravel(a))
    centred: np.ndarray = r - r.mean()
    return centred


def _rank_correlation(ra: np.ndarray, rb: np.ndarray) -> float:
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two arrays (ties get average ranks). NaN if constant."""
    return _rank_correlation(_ranks(a), _ranks(b))


def _filt(z: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    smooth: np.ndarray = gaussian_filter(z, sigma=sigma, truncate=3.5, mode="reflect")
    return smooth


def _moments(a: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, local mean, local variance) of a 2-D map (float64)."""
    mu = _filt(a, sigma)
    return a, mu, _filt(a * a, sigma) - mu**2


def _ssim(ma: tuple[np.ndarray, ...], mb: tuple[np.ndarray, ...], sigma: float, data_range: float) -> float:
    (a, mu_a, va), (b, mu_b, vb) = ma, mb
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cov = _filt(a * b, sigma) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    return float((num / den).mean())


def ssim(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D maps with a Gaussian window (Wang et al. 2004;
    K1 = 0.01, K2 = 0.03, as in scikit-image with ``gaussian_weights=True``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"ssim needs maps of the same shape, got {a.shape} and {b.shape}")
    return _ssim(_moments(a, sigma), _moments(b, sigma), sigma, data_range)


def _unit(z: np.ndarray) -> np.ndarray:
    lo, hi = z.min(), z.max()
    return (z - lo) / (hi - lo) if hi > lo else np.zeros_like(z)


class Reference:
    """A step-0 attribution's ranks and SSIM moments, computed once for every comparison of
    the cascade (a 30 s map is 96 × 1875 values: the ranks and filters cost ~0.1 s each)."""

    def __init__(self, reference: torch.Tensor, sigma: float = 1.5) -> None:
        r = _as_map(reference)
        self.shape, self.sigma = r.shape, sigma
        self.ranks_abs, self.ranks = _ranks(np.abs(r)), _ranks(r)
        self.moments = _moments(_unit(np.abs(r)), sigma)

    def compare(self, other: torch.Tensor) -> tuple[float, float, float]:
        """(spearman of |·|, spearman signed, SSIM of |·| scaled to [0, 1]) against ``other``."""
        o = _as_map(other)
        if o.shape != self.shape:
            raise ParameterError(f"attributions differ in shape: {self.shape} vs {o.shape}")
        return (
            _rank_correlation(self.ranks_abs, _ranks(np.abs(o))),
            _rank_correlation(self.ranks, _ranks(o)),
            _ssim(self.moments, _moments(_unit(np.abs(o)), self.sigma), self.sigma, 1.0),
        )


def compare(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float, float]:
    """(spearman of |·|, spearman signed, SSIM of |·| scaled to [0, 1])."""
    return Reference(reference).compare(other)


def cascade_layers(m: LoadedModel, *, include_batchnorm: bool = True) -> list[str]:
    """Module paths with their own parameters, from the output down to the input."""
    out = []
    for path, mod in m.net.named_modules():
        if not path or not any(True for _ in mod.parameters(recurse=False)):
            continue
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and not include_batchnorm:
            continue
        out.append(path)
    return out[::-1]


def _randomise(mod: nn.Module) -> None:
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        mod.reset_parameters()  # γ = 1, β = 0, running mean 0, variance 1
        return
    reset = getattr(mod, "reset_parameters", None)  # conv, linear, …
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for p in mod.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 0.1
            p.normal_(0.0, std if std > 0 else 0.1)


def _readable(m: LoadedModel, path: str) -> str:
    for name, info in m.layers.items():
        if info.module == path:
            return name
    return path


def _as_attribution(method: str | Attribution, target: Target | None, layer: str | None, **kwargs: Any) -> Attribution:
    if isinstance(method, str):
        if target is None:
            raise ParameterError(f"method {method!r} needs a target")
        return attribution_method(method, target=target, layer=layer, **kwargs)
    if callable(method):
        return method
    raise ParameterError(f"method must be a name or a callable, got {method!r}")


def _cascade(
    m: LoadedModel,
    x: torch.Tensor,
    fns: Mapping[str, Attribution],
    *,
    layers: Sequence[str] | None,
    include_batchnorm: bool,
    seed: int,
    keep_maps: bool,
    cancel: threading.Event | Callable[[], bool] | None,
) -> Iterator[tuple[str, SanityStep, float]]:
    """One cascade for every method of ``fns`` ({name: (model, x) -> map}) on one copy of the
    network: each layer is randomised once, then every method's map is computed. Yields
    ``(name, step, seconds)`` for each method at each step (the step's randomisation counted in
    its first method's seconds); checks ``cancel`` before each randomisation and each further
    map, and stops when it is set.

    Each layer's new weights depend on the seed and the order only (the randomisation draws
    from its own copy of torch's generator, which the methods' draws do not advance), so every
    method sees the same weights as in a cascade of its own; methods of a split network share
    the front's results (:class:`FrontCache`): the front is computed once per step for all."""
    t0 = time.perf_counter()
    x = check_input(m, x)
    if x.shape[0] != 1:
        raise ParameterError(f"the sanity check takes one input (1, C, F, T), got {tuple(x.shape)}")
    order = list(layers) if layers is not None else cascade_layers(m, include_batchnorm=include_batchnorm)
    paths = [m.layers[n].module if n in m.layers else n for n in order]
    work = dataclasses.replace(m, net=copy.deepcopy(m.net))
    for p in paths:
        work.module(p)  # clear error for unknown names, before any work
    # the front of a split network (IG, gradient) is recomputed only when a layer it reads
    # was randomised: the cache checks the version counters of the tensors it reads
    cache = FrontCache(size=2)
    refs: dict[str, Reference] = {}
    for name, fn in fns.items():
        with cache.active():
            reference = fn(work, x).detach()
        refs[name] = ref = Reference(reference)
        yield (
            name,
            SanityStep(0, "", *ref.compare(reference), reference if keep_maps else None),
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        draws = torch.random.get_rng_state()
        for k, path in enumerate(paths, start=1):
            if is_cancelled(cancel):
                return
            t0 = time.perf_counter()
            torch.random.set_rng_state(draws)
            _randomise(work.module(path))
            draws = torch.random.get_rng_state()
            for i, (name, fn) in enumerate(fns.items()):
                if i and is_cancelled(cancel):
                    return
                with cache.active():
                    attr = fn(work, x).detach()
                step = SanityStep(k, _readable(m, path), *refs[name].compare(attr), attr if keep_maps else None)
                yield name, step, time.perf_counter() - t0
                t0 = time.perf_counter()


def iter_cascading_randomisation(
    m: LoadedModel,
    x: torch.Tensor,
    *,
    method: str | Attribution = "gradient",
    target: Target | None = None,
    layer: str | None = None,
    layers: Sequence[str] | None = None,
    include_batchnorm: bool = True,
    seed: int = 0,
    keep_maps: bool = False,
    cancel: threading.Event | Callable[[], bool] | None = None,
    **method_kwargs: Any,
) -> Iterator[SanityStep]:
    """Generator form of :func:`cascading_randomisation` (one :class:`SanityStep` per step;
    stops early when ``cancel`` is set)."""
    fn = _as_attribution(method, target, layer, **method_kwargs)
    run = _cascade(
        m,
        x,
        {"": fn},
        layers=layers,
        include_batchnorm=include_batchnorm,
        seed=seed,
        keep_maps=keep_maps,
        cancel=cancel,
    )
    for _, step, _ in run:
        yield step


def cascading_randomisation(m: LoadedModel, x: torch.Tensor, **kwargs: Any) -> list[SanityStep]:
    """Cascading model-weight randomisation from the top layer down.

    Parameters
    ----------
    x : (1, C, F, T) one input.
    method : a name from :data:`METHODS` (the method table's audio methods, e.g.
        ``"gradient"``, ``"integrated-gradients"``, ``"grad-cam"`` with ``layer``; old
        spellings such as ``"grad_cam"`` work), or a callable ``(model, x) -> attribution``.
        target : the class/tag (for named methods).
    layers : the order of randomisation (default :func:`cascade_layers`, top to bottom).
    seed : seed of the re-initialisation (the global RNG state is left untouched).
    Other keyword arguments go to the attribution method.

    Returns
    -------
    list of :class:`SanityStep`: step 0 (the trained model, similarity 1) and one step per
    randomised layer.
    """
    return list(iter_cascading_randomisation(m, x, **kwargs))


def _eta(seconds: float) -> str:
    """'about 1 min 20 s left' for the progress line."""
    s = max(0, round(seconds))
    return f"about {s // 60} min {s % 60:02d} s left" if s >= 60 else f"about {s} s left"


def sanity_check(
    m: LoadedModel,
    x: torch.Tensor,
    methods: Mapping[str, str | Attribution],
    *,
    target: Target | None = None,
    layer: str | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
) -> Generator[Progress, None, dict[str, list[SanityStep]]]:
    """:func:`cascading_randomisation` for several methods, as a job: yields
    :class:`~musiclens.core.progress.Progress` (``payload`` the :class:`SanityStep` just
    computed) and returns ``{name: steps}``.

    methods : ``{shown name: method name or callable}``. options : ``{shown name: keyword
    arguments of that method}``. x : (1, C, F, T).

    One cascade for all the methods (each layer randomised once, on one copy of the network,
    then every method's map; the figures are those of each method's own cascade). Every
    method's trained-model map (step 0) is computed first and timed; ``fraction`` is the time
    spent over the time spent plus the steps left, each costing the mean of its method's
    randomised steps so far (its first map's time before that): a gradient step is much
    cheaper than an Integrated Gradients one. Stops early when ``cancel`` is set (the steps
    so far are returned)."""
    if not methods:
        raise ParameterError("the sanity check needs at least one method")
    n_steps = 1 + (len(layers) if layers is not None else len(cascade_layers(m)))
    fns = {
        name: _as_attribution(method, target, layer, **dict((options or {}).get(name, {})))
        for name, method in methods.items()
    }
    run = _cascade(m, x, fns, layers=layers, include_batchnorm=True, seed=seed, keep_maps=False, cancel=cancel)
    out: dict[str, list[SanityStep]] = {name: [] for name in methods}
    cost: dict[str, float] = {}
    for i, name in enumerate(methods):
        # the estimate so far: the first maps' times, for every step of their own method and,
        # for the methods not started, their mean for every step
        left = (
            sum(cost.values()) * (n_steps - 1) + (len(methods) - i) * sum(cost.values()) / i * n_steps if cost else None
        )
        yield Progress(
            fraction=0.0,
            message=f"{name}: the trained model's map ({i + 1}/{len(methods)})" + (f"; {_eta(left)}" if left else ""),
        )
        _, step, seconds = next(run)
        out[name].append(step)
        cost[name] = max(seconds, 1e-9)
    spent = dict(cost)  # seconds spent per method so far
    shown = 0.0
    for name, step, seconds in run:
        out[name].append(step)
        spent[name] += seconds
        # a randomised step costs the mean of this method's randomised steps so far (the
        # first map also paid the warm-up); methods not started yet: their first map's time
        per_step = {n: (spent[n] - cost[n]) / (len(out[n]) - 1) if len(out[n]) > 1 else cost[n] for n in out}
        left = sum(per_step[n] * (n_steps - len(out[n])) for n in out)
        done = sum(spent.values())
        shown = max(shown, min(done / (done + left), 1.0))
        yield Progress(
            fraction=shown,
            message=f"{name}: {step.step}/{n_steps - 1} layers randomised ({step.layer}); {_eta(left)}",
            payload=step,
        )
    return out
