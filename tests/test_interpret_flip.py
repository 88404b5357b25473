"""Classification flip by input optimisation, on a model whose decision is known by design."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from interpret_nets import SR, band_energy, logmel_fe, signal, stft_cnn
from musiclens.core.errors import ParameterError
from musiclens.core.interpret.flip import flip
from musiclens.core.models.registry import LayerInfo, LoadedModel


class BandNet(nn.Module):
    """logit_c = 0.2 · mean dB of band group c (low 0-4, mid 5-10, high 11-15 of 16 mels)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for c, rows in enumerate((range(5), range(5, 11), range(11, 16))):
                self.fc.weight[c, list(rows)] = 0.2 / len(rows)

    def forward(self, x):
        return self.fc(x.mean(dim=-1)[:, 0])


def band_model() -> LoadedModel:
    return LoadedModel(
        "bands",
        BandNet().eval(),
        logmel_fe(),
        ["low", "mid", "high"],
        32,
        False,
        {"output": LayerInfo("output", "fc", "output", "output")},
        {"family": "test"},
    )


def _predict(m, y):
    with torch.no_grad():
        return int(m.net(m.front_end(torch.from_numpy(y)[None]))[0].argmax())


def test_audio_flip_adds_high_energy_and_is_heard():
    m = band_model()
    y = signal(0.5, freqs=(150.0, 300.0))
    assert _predict(m, y) == 0  # low
    steps = list(flip(m, y, target="high", steps=300, lr=0.05))
    last = steps[-1]
    print(
        f"flip low->high (audio): {last.step} steps, SNR {last.snr_db:.1f} dB, "
        f"p(high) {steps[0].target_probability:.3f} -> {last.target_probability:.3f}"
    )
    assert last.done and last.flipped and not last.cancelled
    assert last.step < 300 and all(not s.flipped for s in steps[:-2])
    assert last.info["audio_prediction"] == "high"
    assert _predict(m, last.audio) == 2  # the returned audio itself is classified "high"
    hi_before = band_energy(y, SR, 2000, 4000)
    hi_after = band_energy(last.audio, SR, 2000, 4000)
    assert hi_after > 10 * hi_before
    assert np.isfinite(last.audio).all() and np.abs(last.audio).max() <= 1.0
    assert last.snr_db > 0  # the change is quieter than the music


def test_feature_flip_reports_the_audio_prediction():
    m = band_model()
    y = signal(0.5, freqs=(150.0, 300.0))
    last = list(flip(m, y, target=2, steps=300, lr=1.0, domain="features"))[-1]
    assert last.flipped and last.distance > 0 and last.snr_db is None
    assert last.info["audio_prediction"] in m.labels
    assert last.audio.shape == y.shape and np.isfinite(last.audio).all()


def test_stft_model_audio_flip_survives_resynthesis():
    m = stft_cnn()
    y = signal(0.5)
    with torch.no_grad():
        start = int(m.net(m.front_end(torch.from_numpy(y)[None]))[0].argmax())
    target = (start + 1) % 3
    last = list(flip(m, y, target=target, steps=200, lr=0.05))[-1]
    assert last.flipped and last.info["audio_prediction"] == m.labels[target]


def test_cancel_and_bad_domain():
    m = band_model()
    y = signal(0.3, freqs=(150.0,))
    out = list(flip(m, y, target="high", steps=50, cancel=lambda: True))
    assert len(out) == 1 and out[0].cancelled and out[0].step == 0
    with pytest.raises(ParameterError, match="domain"):
        next(flip(m, y, target="high", domain="midi"))
