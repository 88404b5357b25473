"""Small building blocks shared by the study models (vanilla/masked/GAP/Choi/STFT CNNs)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Standardise(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics stored as buffers (so they are
    saved in ``weights.safetensors`` with the model).

    The training loop fits them on the training patches before the first epoch
    (:meth:`fit`); an unfitted module is the identity (mean 0, std 1).
    x: (B, C, F, T) -> (B, C, F, T).
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    @torch.no_grad()
    def fit(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the statistics: ``mean``, ``std`` of shape (C,); std is floored at 1e-6."""
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-6))


class SignedLog(nn.Module):
    """``sign(x) · log1p(|x|)``: an odd, monotonic, invertible compression for signed inputs
    such as the real and imaginary parts of an STFT (applied inside the net, so the input
    stays the linear STFT that can be turned back into audio). Same shape in and out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x) * torch.log1p(x.abs())


def flat_size(fn: Callable[[torch.Tensor], torch.Tensor], in_shape: tuple[int, int, int]) -> int:
    """Number of values per item that ``fn`` (a module or a bound method of one) outputs for
    a (C, F, T) input, computed with a zero input in no-grad mode."""
    with torch.no_grad():
        out = fn(torch.zeros((1,) + tuple(int(v) for v in in_shape)))
    return int(out[0].numel())
