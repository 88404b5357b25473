"""``choi-cnn``: the instrument study's 4-layer CNN (after Choi et al.'s compact convnet).

Input ``x: (B, 1, 80 mel bands, ~431 frames)`` (log-mel in dB, 10 s at 22.05 kHz / hop 512);
output logits ``(B, n_labels)``. The registry's ``LoadedModel.probabilities`` turns them
into sigmoid probabilities for multi-label instrument tagging (drums, bass, vocals, other)
or a softmax for single-label tasks (e.g. the 4 mood quadrants): the network is the same,
``multilabel`` in ``model.json`` decides.

Network (module paths; readable names "conv 1".."conv 4", "dense 1", "dense 2", "output")::

    [norm]
    4 × [block{i}.conv] 3×3 same -> [block{i}.bn] batch norm -> [block{i}.act] leaky ReLU
        -> [block{i}.pool] max-pool, filters 32/64/64/128, pools (2,4) (3,4) (2,5) (2,2)
        (frequency, time): 80 × 431 -> 40 × 107 -> 13 × 26 -> 6 × 5 -> 3 × 2
    [dense1] linear -> 128, leaky ReLU, dropout 0.2
    [dense2] linear -> 65,  leaky ReLU, dropout 0.2
    [out]    linear -> n_labels

``net.regularisation()`` is the L2 penalty ``l2 · Σ ||W||²`` over the three dense weight
matrices; the training loop adds it to the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.models.blocks import Standardise, flat_size
from musiclens.core.models.registry import LayerInfo, register_family

FILTERS = (32, 64, 64, 128)
POOLS = ((2, 4), (3, 4), (2, 5), (2, 2))


class ConvBlock(nn.Module):
    """3×3 conv (same) -> batch norm -> leaky ReLU -> max-pool. (B, Cin, F, T) -> (B, Cout, F/pf, T/pt)."""

    def __init__(self, c_in: int, c_out: int, pool: Sequence[int], leak: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.LeakyReLU(leak)
        self.pool = nn.MaxPool2d(tuple(pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.act(self.bn(self.conv(x))))
        return out


class ChoiCNN(nn.Module):
    def __init__(
        self,
        *,
        n_labels: int,
        in_channels: int = 1,
        n_bins: int = 80,
        n_frames: int = 431,
        filters: Sequence[int] = FILTERS,
        pools: Sequence[Sequence[int]] = POOLS,
        dense: tuple[int, int] = (128, 65),
        dropout: float = 0.2,
        leak: float = 0.3,
        l2: float = 1e-4,
    ) -> None:
        super().__init__()
        pools = [tuple(int(v) for v in p) for p in pools]
        need_f = need_t = 1
        for pf, pt in pools:
            need_f *= pf
            need_t *= pt
        if n_bins < need_f or n_frames < need_t:
            raise ParameterError(
                f"choi-cnn's poolings need at least {need_f} bins × {need_t} frames, got "
                f"{n_bins} × {n_frames} (use longer patches or a smaller hop)"
            )
        self.l2 = float(l2)
        self.norm = Standardise(in_channels)
        chans = [in_channels] + [int(f) for f in filters]
        for i, pool in enumerate(pools):
            setattr(self, f"block{i + 1}", ConvBlock(chans[i], chans[i + 1], pool, leak))
        self.n_blocks = len(pools)
        n_flat = flat_size(self.features, (in_channels, n_bins, n_frames))
        self.dense1 = nn.Linear(n_flat, int(dense[0]))
        self.act1 = nn.LeakyReLU(leak)
        self.drop1 = nn.Dropout(float(dropout))
        self.dense2 = nn.Linear(int(dense[0]), int(dense[1]))
        self.act2 = nn.LeakyReLU(leak)
        self.drop2 = nn.Dropout(float(dropout))
        self.out = nn.Linear(int(dense[1]), int(n_labels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i + 1}")(h)
        out: torch.Tensor = h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(1)
        h = self.drop1(self.act1(self.dense1(h)))
        h = self.drop2(self.act2(self.dense2(h)))
        out: torch.Tensor = self.out(h)
        return out

    def regularisation(self) -> torch.Tensor:
        """L2 penalty on the dense weights (Keras-style ``kernel_regularizer=l2(l2)``)."""
        penalty = self.dense1.weight.pow(2).sum() + self.dense2.weight.pow(2).sum() + self.out.weight.pow(2).sum()
        return self.l2 * penalty


@register_family("choi-cnn")
def build_choi_cnn(**params: Any) -> tuple[nn.Module, list[LayerInfo]]:
    """``ChoiCNN(**params)``: n_labels, in_channels, n_bins, n_frames, filters, pools, dense, dropout, leak, l2."""
    for key in ("filters", "dense"):
        if key in params:
            params = dict(params, **{key: tuple(params[key])})
    net = ChoiCNN(**params)
    layers = [LayerInfo("input norm", "norm", "input", "block", "per-channel standardisation")]
    for i in range(net.n_blocks):
        blk = getattr(net, f"block{i + 1}")
        layers.append(
            LayerInfo(
                f"conv {i + 1}",
                f"block{i + 1}.conv",
                "conv",
                "conv",
                f"3×3 conv, {blk.conv.out_channels} filters (before BN)",
            )
        )
        layers.append(
            LayerInfo(
                f"conv {i + 1} (pooled)",
                f"block{i + 1}",
                "conv",
                "block",
                f"BN, leaky ReLU, max-pool {tuple(blk.pool.kernel_size)}",
            )
        )
    layers += [
        LayerInfo("dense 1", "dense1", "dense", "dense", "linear -> 128 (before activation)"),
        LayerInfo("dense 2", "dense2", "dense", "dense", "linear -> 65 (before activation)"),
        LayerInfo("output", "out", "dense", "output", "logits (sigmoid or softmax)"),
    ]
    return net, layers
