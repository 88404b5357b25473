"""``stft-cnn``: a CNN on the complex STFT, for the dreaming study.

The input is the linear-frequency STFT itself, ``x: (B, 2, 513, T)`` (real, imaginary;
n_fft 1024, hop 256 at 22.05 kHz, ~3 s = 259 frames) or ``(B, 1, 513, T)`` (real part
only), so an input optimised by deep dream is an STFT that
:mod:`musiclens.core.inversion` turns back into audio with its phase (no Griffin-Lim).
Everything non-linear happens inside the net: a fitted scale, then an odd log compression
``sign(x)·log1p(|x|)`` (invertible, differentiable everywhere but 0).

Network (module paths; readable names in brackets)::

    [norm] per-channel scale -> [compress] signed log                 ("input norm", "compress")
    [conv1] 5×5 stride (2, 1), C -> 16 -> [bn1] -> [relu1] -> [pool1] (4, 2)    ("conv 1")
    [conv2] 3×3, 16 -> 32 -> [bn2] -> [relu2] -> [pool2] (4, 2)                  ("conv 2")
    [conv3] 3×3, 32 -> 64 -> [bn3] -> [relu3]                                    ("conv 3")
    [pool3] global max -> [dropout] -> [fc] linear 64 -> n_labels                 ("output")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.blocks import SignedLog, Standardise
from musiclens.core.models.registry import LayerInfo, register_family


class StftCNN(nn.Module):
    def __init__(
        self,
        *,
        n_labels: int,
        in_channels: int = 2,
        n_bins: int = 513,
        n_frames: int = 259,
        filters: tuple[int, int, int] = (16, 32, 64),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 2):
            raise ParameterError(f"stft-cnn takes 2 channels (real, imag) or 1 (real), got {in_channels}")
        if n_bins < 32 or n_frames < 4:
            raise ParameterError(f"stft-cnn needs at least 32 bins × 4 frames, got {n_bins} × {n_frames}")
        f1, f2, f3 = (int(v) for v in filters)
        self.norm = Standardise(in_channels)
        self.compress = SignedLog()
        self.conv1 = nn.Conv2d(in_channels, f1, 5, stride=(2, 1), padding=2)
        self.bn1 = nn.BatchNorm2d(f1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d((4, 2), ceil_mode=True)
        self.conv2 = nn.Conv2d(f1, f2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(f2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d((4, 2), ceil_mode=True)
        self.conv3 = nn.Conv2d(f2, f3, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(f3)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(f3, int(n_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.compress(self.norm(x))
        h = self.pool1(self.relu1(self.bn1(self.conv1(h))))
        h = self.pool2(self.relu2(self.bn2(self.conv2(h))))
        h = self.relu3(self.bn3(self.conv3(h)))
        out: torch.Tensor = self.fc(self.dropout(self.pool3(h).flatten(1)))
        return out


@register_family("stft-cnn")
def build_stft_cnn(**params: Any) -> tuple[nn.Module, list[LayerInfo]]:
    """``StftCNN(**params)``: n_labels, in_channels (2 or 1), n_bins, n_frames, filters, dropout."""
    if "filters" in params:
        params = dict(params, filters=tuple(params["filters"]))
    net = StftCNN(**params)
    layers = [
        LayerInfo("input norm", "norm", "input", "block", "per-channel scale"),
        LayerInfo("compress", "compress", "input", "block", "sign(x)·log1p(|x|)"),
        LayerInfo("conv 1", "conv1", "conv", "conv", "5×5 stride (2,1) conv (before BN)"),
        LayerInfo("conv 2", "conv2", "conv", "conv", "3×3 conv (before BN)"),
        LayerInfo("conv 3", "conv3", "conv", "conv", "3×3 conv (before BN)"),
        LayerInfo("output", "fc", "dense", "output", "logits on the global max of conv 3"),
    ]
    return net, layers
