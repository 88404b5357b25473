"""Helpers shared by the interpretation methods (targets, scores, input checks, baselines).

Private: the public verbs live in the method modules (``cam``, ``saliency``, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeAlias, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.models.registry import LoadedModel

#: A class or tag: its index in ``LoadedModel.labels`` or its name; or a *set* of tags
#: attributed at once (the sum of their scores, for multi-label models): a ``set`` /
#: ``frozenset`` of indices or names, or one string joining names with ``+``
#: (``"guitar+piano"``). A list or tuple is never a set: it gives one target per batch item
#: (each of which may be a set).
Target: TypeAlias = int | str | AbstractSet[int | str]


def check_input(m: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """Validate a front-end output ``x`` (B, C, F, T) against the model; return it as float,
    on the model's device (every method's tensors follow ``m.device``)."""
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"x must be a torch.Tensor (B, C, F, T), got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ParameterError(f"x must be a front-end output (B, C, F, T), got shape {tuple(x.shape)}")
    fe = m.front_end
    if x.shape[1] != fe.channels or x.shape[2] != fe.n_bins:
        raise ParameterError(
            f"x has shape {tuple(x.shape)}, but model {m.name!r} takes "
            f"(B, {fe.channels}, {fe.n_bins}, T) from its {fe.kind!r} front end"
        )
    if not x.is_floating_point():
        x = x.float()
    return x.to(m.device)


def target_index(m: LoadedModel, target: Target) -> int:
    """A label index from an index or a label name; raises :class:`ParameterError` if unknown."""
    n = len(m.labels)
    if isinstance(target, str):
        if target in m.labels:
            return m.labels.index(target)
        lower = [label.lower() for label in m.labels]
        if target.lower() in lower:
            return lower.index(target.lower())
        raise ParameterError(f"model {m.name!r} has no label {target!r}; labels: {', '.join(m.labels)}")
    if isinstance(target, AbstractSet):
        raise ParameterError(f"one label is needed here, got the set {sorted(map(str, target))}")
    try:
        idx = int(target)
    except (TypeError, ValueError):
        raise ParameterError(f"target must be a label index or name, got {target!r}") from None
    if not -n <= idx < n:
        raise ParameterError(f"target index {idx} is out of range; model {m.name!r} has {n} labels")
    return idx % n


def target_set(m: LoadedModel, target: Target) -> list[int]:
    """The label indices of one item's target: one index, or several for a set of labels
    (a ``set``/``frozenset``, or names joined by ``+`` that are not themselves a label)."""
    if isinstance(target, AbstractSet):
        if not target:
            raise ParameterError("a set of target labels must not be empty")
        return sorted({target_index(m, t) for t in target})
    if isinstance(target, str) and "+" in target.strip("+"):
        labels = getattr(m, "labels", [])
        if target not in labels and target.lower() not in (lab.lower() for lab in labels):
            return target_set(m, frozenset(t.strip() for t in target.split("+")))
    return [target_index(m, target)]


def target_weights(m: LoadedModel, target: Target | Sequence[Target], batch: int) -> torch.Tensor:
    """(B, L) float: row b selects item b's target labels (1 for each label of the target,
    0 elsewhere), so that ``(outputs · weights).sum(1)`` is each item's target score, the sum
    over a set of labels. ``target``: one target for every item, or a list/tuple (or a (B,)
    tensor) of one per item."""
    n = len(m.labels)
    per_item: list[Target]
    if isinstance(target, (list, tuple)) or (isinstance(target, torch.Tensor) and target.dim() == 1):
        per_item = [int(t) if isinstance(t, torch.Tensor) else t for t in target]
        if len(per_item) != batch:
            raise ParameterError(
                f"got {len(per_item)} targets for a batch of {batch} "
                "(a list or tuple gives one target per item; for a set of labels use {'a', 'b'} or 'a+b')"
            )
    else:
        one = int(target) if isinstance(target, torch.Tensor) else target
        per_item = [cast(Target, one)] * batch
    w = torch.zeros(batch, n)
    for b, t in enumerate(per_item):
        w[b, target_set(m, t)] = 1.0
    return w.to(m.device)


def class_scores(m: LoadedModel, logits: torch.Tensor, targets: torch.Tensor, output: str = "logit") -> torch.Tensor:
    """(B, L) logits -> (B,) score of each item's target: the logit or the probability.

    ``targets``: (B,) label indices, or (B, L) weights (:func:`target_weights`: the sum over a
    set of labels)."""
    if output == "logit":
        out = logits
    elif output == "probability":
        out = m.probabilities(logits)
    else:
        raise ParameterError(f"output must be 'logit' or 'probability', got {output!r}")
    if targets.dim() == 2:
        return (out * targets.to(out)).sum(1)
    return out.gather(1, targets.to(out.device).view(-1, 1)).squeeze(1)


@torch.no_grad()
def silence_value(m: LoadedModel, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The front end's output for digital silence, one value per channel: (C,), on ``device``
    (default: the model's).

    0 for STFT kinds and ``log10(1 + g·0)``; ``10·log10(amin/ref)`` for dB (e.g. -100 dB).
    """
    fe = m.front_end
    zeros = torch.zeros(1, fe.n_fft, device=m.device if device is None else device)
    return fe(zeros)[0, :, 0, 0].clone()


def as_float_list(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().cpu().reshape(-1)]


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put ``net`` in eval mode (batch norm uses running statistics, no dropout) for the
    block and restore each submodule's own training flag afterwards."""
    flags = [(mod, mod.training) for mod in net.modules()]
    try:
        net.eval()
        yield net
    finally:
        for mod, flag in flags:
            mod.training = flag


def to_fe_rate(
    audio: torch.Tensor | npt.ArrayLike,
    sample_rate: int | None,
    fe: FrontEnd,
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, int, int]:
    """Any (samples,) / (B, samples) array -> float32 torch (B, samples) at fe's rate, on
    ``device`` (default cpu; pass the model's ``m.device``)."""
    from musiclens.core.audio import resample

    arr = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    arr = np.atleast_2d(np.asarray(arr, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[-1] == 0:
        raise ParameterError(f"audio must be (samples,) or (batch, samples), got {arr.shape}")
    sr = int(sample_rate or fe.sample_rate)
    n = arr.shape[-1]
    if sr != fe.sample_rate:
        arr = resample(arr, orig_sr=sr, target_sr=fe.sample_rate)
    out = torch.from_numpy(np.ascontiguousarray(arr))
    return (out if device is None else out.to(device)), sr, n


def from_fe_rate(y: torch.Tensor, sr: int, n: int, fe: FrontEnd) -> np.ndarray:
    """(B, samples) at fe's rate -> float32 numpy at ``sr``, trimmed/padded to ``n`` samples."""
    from musiclens.core.audio import resample

    out = y.detach().cpu().numpy().astype(np.float32)
    if sr != fe.sample_rate:
        out = resample(out, orig_sr=fe.sample_rate, target_sr=sr)
    if out.shape[-1] >= n:
        return np.ascontiguousarray(out[..., :n])
    return np.pad(out, [(0, 0), (0, n - out.shape[-1])])
