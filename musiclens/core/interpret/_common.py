"""Helpers shared by the interpretation methods (targets, scores, input checks, baselines).

Private: the public verbs live in the method modules (``cam``, ``saliency``, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TypeAlias, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.models.registry import LoadedModel

#: A class or tag: its index in ``LoadedModel.labels`` or its name.
Target: TypeAlias = int | str


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
    try:
        idx = int(target)
    except (TypeError, ValueError):
        raise ParameterError(f"target must be a label index or name, got {target!r}") from None
    if not -n <= idx < n:
        raise ParameterError(f"target index {idx} is out of range; model {m.name!r} has {n} labels")
    return idx % n


def target_indices(m: LoadedModel, target: Target | Sequence[Target], batch: int) -> torch.Tensor:
    """One target per batch item: (B,) long tensor from a single target or a sequence of B."""
    if isinstance(target, (list, tuple)) or (isinstance(target, torch.Tensor) and target.dim() == 1):
        idx = [target_index(m, t if not isinstance(t, torch.Tensor) else int(t)) for t in target]
        if len(idx) != batch:
            raise ParameterError(f"got {len(idx)} targets for a batch of {batch}")
        return torch.tensor(idx, dtype=torch.long, device=m.device)
    if isinstance(target, torch.Tensor):
        target = int(target)
    # a sequence other than a list or a tuple is passed on as is: target_index rejects it
    return torch.full((batch,), target_index(m, cast(Target, target)), dtype=torch.long, device=m.device)


def class_scores(m: LoadedModel, logits: torch.Tensor, targets: torch.Tensor, output: str = "logit") -> torch.Tensor:
    """(B, L) logits -> (B,) score of each item's target: the logit or the probability."""
    if output == "logit":
        out = logits
    elif output == "probability":
        out = m.probabilities(logits)
    else:
        raise ParameterError(f"output must be 'logit' or 'probability', got {output!r}")
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
