"""Hearing an explanation: top-k masks, used + ignored = the recording, and scores that move
the right way (core.interpret.explanation_audio, core.analyses.explanation, the command)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from interpret_nets import SR, _wrap, band_energy, logmel_cnn, logmel_fe, signal, stft_fe
from musiclens.core import analyses
from musiclens.core.analyses.explanation import analysed_span, hear_explanation
from musiclens.core.errors import ParameterError
from musiclens.core.interpret.explanation_audio import hear_masks, top_k_mask
from musiclens.core.models.registry import LayerInfo

torch.set_num_threads(1)


# ------------------------------------------------------------------ top_k_mask
def test_top_k_mask_keeps_the_largest_positive_cells():
    a = torch.tensor([[5.0, -1.0, 3.0, 0.0, 1.0], [2.0, -4.0, 4.0, 0.5, -2.0]])  # 10 cells
    m = top_k_mask(a, 20)  # 2 cells: 5 and 4
    assert m.tolist() == [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0]]
    m = top_k_mask(a, 50)  # 5 cells: 5, 4, 3, 2, 1
    assert m.tolist() == [[1, 0, 1, 0, 1], [1, 0, 1, 0, 0]]
    soft = top_k_mask(a, 20, soft=True)  # min(1, a / 4) on positive cells
    np.testing.assert_allclose(soft.numpy(), [[1, 0, 0.75, 0, 0.25], [0.5, 0, 1, 0.125, 0]])


def test_top_k_mask_never_uses_negative_cells_and_works_per_item():
    a = torch.tensor([[[-1.0, -2.0], [0.3, -0.1]], [[1.0, 2.0], [3.0, 4.0]]])  # (2, 2, 2)
    m = top_k_mask(a, 100)
    assert m[0].tolist() == [[0, 0], [1, 0]]  # only the positive cell, though 100 % was asked
    assert m[1].tolist() == [[1, 1], [1, 1]]
    assert top_k_mask(a, 25)[1].tolist() == [[0, 0], [0, 1]]
    assert top_k_mask(-a.abs() - 1, 50).sum() == 0  # nothing speaks for the target: nothing used


@pytest.mark.parametrize("top", [0, -5, 101])
def test_top_k_mask_rejects_bad_percentages(top):
    with pytest.raises(ParameterError, match="percentage"):
        top_k_mask(torch.ones(3, 4), top)


# ------------------------------------------------------------------ hear_masks
@pytest.mark.parametrize("fe_maker", [logmel_fe, stft_fe], ids=["mel", "stft"])
@pytest.mark.parametrize("soft", [False, True])
def test_used_plus_ignored_is_the_recording(fe_maker, soft, rng):
    fe = fe_maker()
    y = signal(1.0)
    attr = torch.from_numpy(rng.standard_normal((fe.n_bins, fe.n_frames(len(y)))).astype(np.float32))
    heard = hear_masks(y, attr, fe, top=20, soft=soft)
    used, ignored, original = heard.used[0], heard.ignored[0], heard.original[0]
    assert used.shape == ignored.shape == y.shape
    np.testing.assert_allclose(used + ignored, original, atol=1e-5)
    np.testing.assert_allclose(original, y, atol=1e-4)  # the iSTFT of the unmasked STFT
    for part in (used, ignored):
        assert np.isfinite(part).all()
        rms = float(np.sqrt(np.mean(part**2)))
        assert rms > 0.05 * float(np.sqrt(np.mean(y**2)))  # not silent
        assert np.abs(part).max() < 1.0  # not clipped
    if not soft:
        assert heard.used_share[0] == pytest.approx(0.2, abs=0.01)
        assert set(np.unique(heard.mask.numpy())) <= {0.0, 1.0}


def test_a_band_of_attribution_keeps_that_band_in_used_and_the_rest_in_ignored():
    fe = logmel_fe()
    y = signal(1.0, freqs=(300.0, 2500.0))
    centres = fe.bin_frequencies()
    attr = np.zeros((fe.n_bins, fe.n_frames(len(y))), np.float32)
    attr[np.abs(centres - 2500.0).argsort()[:2]] = 1.0  # the two bands nearest 2.5 kHz
    heard = hear_masks(y, attr, fe, top=50)
    used, ignored = heard.used[0], heard.ignored[0]
    hi_used, lo_used = band_energy(used, SR, 2300, 2700), band_energy(used, SR, 200, 400)
    hi_ign, lo_ign = band_energy(ignored, SR, 2300, 2700), band_energy(ignored, SR, 200, 400)
    assert hi_used > 50 * lo_used  # used: the 2.5 kHz tone
    assert lo_ign > 50 * hi_ign  # ignored: the 300 Hz tone


def test_hear_masks_at_another_rate_and_shape_errors():
    fe = logmel_fe()
    y = signal(0.5, sr=16000)
    attr = np.ones((fe.n_bins, fe.n_frames(len(y) // 2)), np.float32)
    heard = hear_masks(y, attr, fe, top=100, sample_rate=16000)
    assert heard.sample_rate == 16000 and heard.used.shape == (1, len(y))
    assert np.abs(heard.ignored).max() < 1e-6  # everything used
    with pytest.raises(ParameterError, match="grid"):
        hear_masks(y, np.ones((fe.n_bins + 1, 10)), fe, sample_rate=16000)
    with pytest.raises(ParameterError, match="frames"):
        hear_masks(y, np.ones((fe.n_bins, 10)), fe, sample_rate=16000)


# ------------------------------------------------------------------ the use case
class BandNet(nn.Module):
    """Class 0 reads the mean level of mel bands ``band``; class 1 the other bands."""

    def __init__(self, band: slice):
        super().__init__()
        self.band = band
        self.gain = nn.Parameter(torch.tensor(0.2))

    def forward(self, x):
        v = x[:, 0] / 40.0 + 1.0  # (B, F, T), dB -> about [-1, 1]
        inside = torch.zeros(v.shape[1], dtype=torch.bool)
        inside[self.band] = True
        return torch.stack([v[:, inside].mean((1, 2)), v[:, ~inside].mean((1, 2))], 1) / self.gain


def band_model():
    fe = logmel_fe()
    near = np.abs(fe.bin_frequencies() - 2500.0).argsort()[:3]
    net = BandNet(slice(int(near.min()), int(near.max()) + 1))
    m = _wrap("band", net, fe, [LayerInfo("output", "gain", "output", "output")], 2, multilabel=True)
    m.labels = ["high", "rest"]
    return m


@pytest.mark.parametrize("method", ["gradient", "integrated-gradients"])
def test_the_model_scores_used_above_ignored(method):
    m = band_model()
    y = signal(2.0, freqs=(300.0, 2500.0))
    steps = analyses.run(hear_explanation(m, y, method, "high", top=20, options={"steps": 16}))
    s = steps.scores
    assert steps.target == "high" and steps.method in (method, "integrated-gradients")
    assert s["used"] > s["ignored"] + 0.2, s
    assert abs(s["used"] - s["original"]) < 0.15, s
    assert len(steps.used) == len(analysed_span(m, y)) and steps.sample_rate == SR
    np.testing.assert_allclose(steps.used + steps.ignored, steps.original, atol=1e-5)
    assert 0 < steps.used_share <= 0.2 + 1e-6
    assert steps.end_s - steps.start_s == pytest.approx(len(steps.used) / SR)


def test_the_use_case_reuses_an_attribution_and_picks_a_layer_for_grad_cam():
    m = logmel_cnn()
    y = signal(1.0)
    first = analyses.run(hear_explanation(m, y, "grad-cam", "class1", top=30))
    assert first.layer == "conv 1"  # the first conv layer by default
    seen = []
    again = analyses.run(
        hear_explanation(m, y, "grad-cam", "class1", top=10, attribution=first.attribution), seen.append
    )
    assert not any("patch" in p.message for p in seen)  # no attribution computed again
    assert again.used_share < first.used_share
    np.testing.assert_allclose(again.original, first.original)
    assert set(again.summary()) >= {"scores", "used_share", "rms_dbfs", "method", "target"}


def test_a_model_without_a_spectrogram_is_refused():
    raw = SimpleNamespace(kind="waveform", name="raw")
    with pytest.raises(ParameterError, match="spectrogram"):
        analyses.run(hear_explanation(raw, np.zeros(16000, np.float32), "gradient", 0))


def test_too_short_audio_is_one_clear_error():
    m = logmel_cnn()
    with pytest.raises(ParameterError, match="needs at least"):
        analyses.run(hear_explanation(m, signal(0.1), "gradient", 0))


# ------------------------------------------------------------------ the real model, the demo clip
def test_ig_on_the_demo_clip_scores_used_above_ignored():
    """MusiCNN (bundled) on the bundled demo, first patch, its top tag, IG with 8 steps."""
    from musiclens.core import audio
    from musiclens.core.models import registry
    from musiclens.core.resources import demo_recording

    m = registry.load("MSD_musicnn", device="cpu")
    y, _ = audio.load(demo_recording(), sr=m.sample_rate, duration=3.1)
    target = analyses.predict(m, y).top[0][0]
    res = analyses.run(hear_explanation(m, y, "ig", target, top=20, options={"steps": 8}))
    s = res.scores
    assert s["used"] > s["ignored"], s
    for part in (res.used, res.ignored):
        assert np.isfinite(part).all() and 0 < np.abs(part).max() < 1.0


# ------------------------------------------------------------------ the command
def test_the_command_writes_used_and_ignored(run_cli, tmp_path):
    from musiclens.core import audio
    from musiclens.core.resources import demo_recording

    status, out, err = run_cli(
        "hear-explanation",
        demo_recording(),
        "--method",
        "gradient",
        "--top",
        "25",
        "--out",
        tmp_path / "o",
        "--json",
        "-q",
    )
    assert status == 0, err
    summary = json.loads(out)
    assert set(summary["scores"]) == {"original", "used", "ignored"}
    assert summary["method"] == "gradient" and summary["top_percent"] == 25
    used, sr = audio.load(tmp_path / "o" / "used.wav", sr=None)
    ignored, _ = audio.load(tmp_path / "o" / "ignored.wav", sr=None)
    assert sr == 16000 and len(used) == len(ignored) > 0
    assert np.abs(used).max() > 0 and np.abs(ignored).max() > 0
    status, out, err = run_cli("hear-explanation", demo_recording(), "--top", "0", "--out", tmp_path / "x")
    assert status == 2 and "--top" in err and len(err.strip().splitlines()) == 1
