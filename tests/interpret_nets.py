"""Tiny models for the interpretation tests, wrapped in ``LoadedModel`` like real ones.

* :func:`logmel_cnn`  conv -> ReLU -> max pool -> conv -> BN -> ReLU -> global max -> linear
  on a 16-band log-mel (8 kHz, n_fft 256, hop 64).
* :func:`gap_cnn`     conv -> ReLU -> conv -> ReLU -> global average pool -> linear (CAM model).
* :func:`stft_cnn`    2-channel (real, imag) STFT input (8 kHz, n_fft 128, hop 32, 65 bins).

All run in a few milliseconds on one CPU core.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from musiclens.core.features import FrontEnd, logmel_frontend, stft_frontend
from musiclens.core.models.registry import LayerInfo, LoadedModel

SR = 8000

# Tiny tensors: one thread is faster, and the machine's two cores are shared.
torch.set_num_threads(1)


def _wrap(
    name: str,
    net: nn.Module,
    fe: FrontEnd,
    layers: list[LayerInfo],
    n_labels: int,
    multilabel: bool = False,
    patch_frames: int = 32,
) -> LoadedModel:
    return LoadedModel(
        name=name,
        net=net.eval(),
        front_end=fe,
        labels=[f"class{i}" for i in range(n_labels)],
        patch_frames=patch_frames,
        multilabel=multilabel,
        layers={layer.name: layer for layer in layers},
        architecture={"family": "test"},
    )


def logmel_fe() -> FrontEnd:
    return logmel_frontend(sample_rate=SR, n_fft=256, hop=64, n_mels=16)


class LogmelCNN(nn.Module):
    def __init__(self, n_labels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(6, n_labels)

    def forward(self, x):
        x = x / 40.0 + 1.0  # dB around [-80, 0] -> about [-1, 1]
        h = self.relu2(self.bn2(self.conv2(self.pool1(self.relu1(self.conv1(x))))))
        return self.fc(self.pool2(h).flatten(1))


def logmel_cnn(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = LogmelCNN()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net.bn2.running_mean.uniform_(-0.2, 0.2)
        net.bn2.running_var.uniform_(0.5, 2.0)
        net.bn2.weight.uniform_(0.5, 1.5)
        net.bn2.bias.uniform_(-0.1, 0.1)
    layers = [
        LayerInfo("conv 1", "conv1", "convolutions", "conv"),
        LayerInfo("relu 1", "relu1", "convolutions", "block"),
        LayerInfo("pool 1", "pool1", "convolutions", "pool"),
        LayerInfo("conv 2", "conv2", "convolutions", "conv"),
        LayerInfo("bn 2", "bn2", "convolutions", "batchnorm"),
        LayerInfo("relu 2", "relu2", "convolutions", "block"),
        LayerInfo("output", "fc", "output", "output"),
    ]
    return _wrap("tiny-logmel", net, logmel_fe(), layers, 3)


class GapCNN(nn.Module):
    def __init__(self, n_labels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, n_labels)

    def forward(self, x):
        h = self.relu2(self.conv2(self.relu1(self.conv1(x / 40.0 + 1.0))))
        return self.fc(self.gap(h).flatten(1))


def gap_cnn(seed: int = 1) -> LoadedModel:
    torch.manual_seed(seed)
    net = GapCNN()
    layers = [
        LayerInfo("conv 1", "conv1", "convolutions", "conv"),
        LayerInfo("conv 2", "conv2", "convolutions", "conv"),
        LayerInfo("feature maps", "relu2", "convolutions", "block"),
        LayerInfo("output", "fc", "output", "output"),
    ]
    return _wrap("tiny-gap", net, logmel_fe(), layers, 3)


def stft_fe() -> FrontEnd:
    return stft_frontend(sample_rate=SR, n_fft=128, hop=32)


class StftCNN(nn.Module):
    def __init__(self, n_labels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, (5, 3), padding=(2, 1))
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, n_labels)

    def forward(self, x):
        h = self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(4.0 * x)))))
        return self.fc(self.gap(h).flatten(1))


def stft_cnn(seed: int = 2) -> LoadedModel:
    torch.manual_seed(seed)
    net = StftCNN()
    layers = [
        LayerInfo("conv 1", "conv1", "convolutions", "conv"),
        LayerInfo("relu 1", "relu1", "convolutions", "block"),
        LayerInfo("pool 1", "pool1", "convolutions", "pool"),
        LayerInfo("conv 2", "conv2", "convolutions", "conv"),
        LayerInfo("relu 2", "relu2", "convolutions", "block"),
        LayerInfo("output", "fc", "output", "output"),
    ]
    return _wrap("tiny-stft", net, stft_fe(), layers, 3)


def signal(seconds: float = 0.5, *, freqs=(300.0, 1200.0, 2500.0), sr: int = SR, seed: int = 0) -> np.ndarray:
    """A sum of sines plus a little noise, float32 (samples,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs) * 0.5
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def features(m: LoadedModel, y: np.ndarray) -> torch.Tensor:
    """(samples,) -> (1, C, F, T)."""
    return m.front_end(torch.from_numpy(np.asarray(y, dtype=np.float32)).unsqueeze(0))


def band_energy(y: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Energy of ``y`` between lo and hi Hz (rfft)."""
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())
