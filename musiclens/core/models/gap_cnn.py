"""``gap-cnn``: 3 conv + 1 transposed conv + global average pooling + one linear layer.

Built so that class activation maps are exact (Zhou et al. 2016): the only thing between
the last feature maps and the logits is a global average and one linear layer, so

    logit_c = Σ_k w[c, k] · mean_{f,t} A_k(f, t) + b_c = mean_{f,t} CAM_c(f, t) + b_c,
    CAM_c = Σ_k w[c, k] · A_k.

Input ``x: (B, C, F, T)`` (default 128-band log-mel, ~3 s = 130 frames); output logits
``(B, n_labels)``. Module paths for CAM::

    A (the averaged maps)   net.deconv_relu   (readable layer "CAM maps"), (B, K, F/4, T'/4)
    w, b                    net.fc            (readable layer "output"), nn.Linear(K, n_labels)

i.e. ``musiclens.core.interpret.cam.cam(m, x, layer="CAM maps", classifier="fc", target=c)``.
The dropout before ``fc`` is inactive in eval mode, so the identity holds for a loaded model.

Network::

    [norm] -> [conv1] 3×3, C->16 -> [bn1] -> [relu1] -> [pool1] 2×2
           -> [conv2] 3×3, 16->32 -> [bn2] -> [relu2] -> [pool2] 2×2
           -> [conv3] 3×3, 32->64 -> [bn3] -> [relu3] -> [pool3] 2×2       (F/8, T/8)
           -> [deconv] transposed conv 2×2 stride 2, 64->K -> [deconv_relu]   (F/4, T/4)
           -> [gap] global average -> [dropout] -> [fc] linear K -> n_labels
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.blocks import Standardise
from musiclens.core.models.registry import LayerInfo, register_family


class GapCNN(nn.Module):
    def __init__(
        self,
        *,
        n_labels: int,
        in_channels: int = 1,
        n_bins: int = 128,
        n_frames: int = 130,
        filters: tuple[int, int, int] = (16, 32, 64),
        maps: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if n_bins < 8 or n_frames < 8:
            raise ParameterError(f"gap-cnn needs at least 8 bins × 8 frames, got {n_bins} × {n_frames}")
        f1, f2, f3 = (int(v) for v in filters)
        self.norm = Standardise(in_channels)
        self.conv1 = nn.Conv2d(in_channels, f1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(f1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(f1, f2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(f2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(f2, f3, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(f3)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.deconv = nn.ConvTranspose2d(f3, int(maps), kernel_size=2, stride=2)
        self.deconv_relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(int(maps), int(n_labels))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> the CAM maps A (B, K, F/4, T/4) (output of ``deconv_relu``)."""
        h = self.pool1(self.relu1(self.bn1(self.conv1(self.norm(x)))))
        h = self.pool2(self.relu2(self.bn2(self.conv2(h))))
        h = self.pool3(self.relu3(self.bn3(self.conv3(h))))
        out: torch.Tensor = self.deconv_relu(self.deconv(h))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.dropout(self.gap(self.feature_maps(x)).flatten(1)))
        return out


@register_family("gap-cnn")
def build_gap_cnn(**params: Any) -> tuple[nn.Module, list[LayerInfo]]:
    """``GapCNN(**params)``: n_labels, in_channels, n_bins, n_frames, filters, maps, dropout."""
    if "filters" in params:
        params = dict(params, filters=tuple(params["filters"]))
    net = GapCNN(**params)
    layers = [
        LayerInfo("input norm", "norm", "input", "block", "per-channel standardisation"),
        LayerInfo("conv 1", "conv1", "conv", "conv", "3×3 conv (before BN)"),
        LayerInfo("conv 2", "conv2", "conv", "conv", "3×3 conv (before BN)"),
        LayerInfo("conv 3", "conv3", "conv", "conv", "3×3 conv (before BN)"),
        LayerInfo("transposed conv", "deconv", "conv", "conv", "2×2 stride-2 transposed conv (before ReLU)"),
        LayerInfo(
            "CAM maps",
            "deconv_relu",
            "conv",
            "conv",
            "ReLU(transposed conv): the maps that are globally averaged (exact CAM)",
        ),
        LayerInfo("output", "fc", "dense", "output", "linear on the averaged maps: logits"),
    ]
    return net, layers
