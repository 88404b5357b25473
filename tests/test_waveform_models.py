"""Raw-waveform models (input (B, 1, S) samples): layer maps over time, time-domain filter
auralisation, attributions over the samples of a file, dreaming on the samples.

The model is a tiny Conv1d stack defined here and built as a ``LoadedModel`` directly; its
first layer's filter 0 is an identity tap, so what it hears can be computed by hand."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from musiclens.core import analyses
from musiclens.core.errors import MusicLensError
from musiclens.core.models.inputs import Waveform
from musiclens.core.models.registry import LayerInfo, LoadedModel

SHOTS = os.environ.get("MUSICLENS_PANEL_SHOTS")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the panel tests below (Qt loads only there)

SR = 8000
PATCH = 1024
LABELS = ["low", "mid", "high"]


class TinyWaveNet(nn.Module):
    """(B, 1, S) or (B, S) samples -> (B, 3) logits: two Conv1d layers, a mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 4, 9, padding=4)  # same length as the input
        self.conv2 = nn.Conv1d(4, 6, 16, stride=4)
        self.head = nn.Linear(6, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, None]
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return self.head(h.mean(-1))


def tiny_model(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = TinyWaveNet()
    with torch.no_grad():  # filter 0 of conv 1 passes the samples through: its activation is x
        net.conv1.weight[0].zero_()
        net.conv1.weight[0, 0, 4] = 1.0
        net.conv1.bias[0] = 0.0
    layers = [
        LayerInfo("conv 1", "conv1", "front", "conv"),
        LayerInfo("conv 2", "conv2", "front", "conv"),
        LayerInfo("head", "head", "back", "dense"),
    ]
    return LoadedModel(
        "tiny-wave",
        net.eval(),
        input=Waveform(sample_rate=SR, patch_samples=PATCH),
        labels=LABELS,
        layers={x.name: x for x in layers},
    )


def chirp(seconds: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)


def test_layer_maps_of_a_1d_layer_are_channels_by_time():
    m = tiny_model()
    y = chirp()[:PATCH]
    maps = analyses.layer_maps(m, y, "conv 2")
    n_time = (PATCH - 16) // 4 + 1
    assert maps.maps.shape == (6, 1, n_time)
    with torch.no_grad():  # the layer's output computed by hand
        h = F.relu(m.net.conv1(torch.from_numpy(y)[None, None]))
        want = m.net.conv2(h)[0].numpy()
    np.testing.assert_allclose(maps.maps[:, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.energy, (np.clip(want, 0, None) ** 2).mean(axis=1), rtol=1e-5)
    assert maps.level_db.shape == (6,) and maps.silent.dtype == bool


def test_auralisation_masks_the_samples_by_the_activation():
    """Filter 0 of conv 1 outputs the samples themselves, so its time-domain auralisation is
    y · relu(y) / max(relu(y)), sample by sample."""
    m = tiny_model()
    y = chirp()[:PATCH]
    heard = analyses.hear_filter(m, y, "conv 1", 0)
    want = y * np.clip(y, 0, None) / np.clip(y, 0, None).max()
    np.testing.assert_allclose(heard.audio, want, rtol=1e-5, atol=1e-6)
    assert heard.sample_rate == SR and heard.end_s == pytest.approx(PATCH / SR)
    assert heard.mask.shape == (1, PATCH)  # the activation over time (positive part, max 1)
    # the layer maps' level of that filter is the level of this auralisation
    maps = analyses.layer_maps(m, y, "conv 1")
    assert maps.level_db[0] == pytest.approx(20 * np.log10(np.sqrt(np.mean(want.astype(np.float64) ** 2))), abs=1e-3)


def test_auralisation_of_a_downsampled_layer_silences_where_the_filter_is_off():
    m = tiny_model()
    y = np.concatenate([np.zeros(PATCH // 2, np.float32), chirp()[: PATCH // 2]])
    with torch.no_grad():  # filter 0 of conv 2 reads only conv 1's filter 0 (x itself) at tap 0
        m.net.conv2.weight.zero_()
        m.net.conv2.bias.zero_()
        m.net.conv2.weight[0, 0, :] = 1.0  # a moving sum of relu(x): zero over the silent half
    heard = analyses.hear_filter(m, y, "conv 2", 0)
    assert np.abs(heard.audio[: PATCH // 2 - 32]).max() == 0.0
    assert np.sqrt(np.mean(heard.audio[PATCH // 2 + 32 :] ** 2)) > 0.05
    with pytest.raises(MusicLensError, match="raw samples"):
        analyses.hear_filter(m, y, "conv 2", 0, how="deconv")


def test_waveform_dream_stays_in_full_scale_raises_the_class_and_returns_its_samples():
    m = tiny_model()
    result = analyses.run(analyses.dream(m, chirp()[:PATCH], target="high", steps=30, lr=0.05))
    assert result.sample_rate == SR and result.audio.shape == (PATCH,)
    assert np.abs(result.audio).max() <= 1.0
    assert result.objective_after > result.objective_before
    with torch.no_grad():  # the audio is the dreamed input itself: the model's scores agree
        p = m.predict(torch.from_numpy(result.audio)[None, None])[0].numpy()
    np.testing.assert_allclose(p, [result.probabilities_after[x] for x in LABELS], rtol=1e-4, atol=1e-6)
    assert result.before.ndim == 2 and result.after.shape == result.before.shape  # drawn as a spectrogram
    swept = analyses.run(analyses.dream(m, None, target="high", steps=2, lr=0.05))  # a sine sweep of one patch
    assert swept.audio.shape == (PATCH,) and swept.steps == 2


def test_waveform_dream_smoothness_keeps_the_change_low_passed():
    from musiclens.core.interpret.dream import run_dream

    m = tiny_model()
    start = chirp()[:PATCH] * 0.1

    def high_share(smoothness: int) -> float:
        last = run_dream(m, start, target="high", steps=20, lr=0.02, smoothness=smoothness)
        change = last.audio.astype(np.float64) - start
        spectrum = np.abs(np.fft.rfft(change)) ** 2
        return float(spectrum[len(spectrum) // 2 :].sum() / spectrum.sum())  # above sr/4

    rough, smooth = high_share(0), high_share(16)
    assert smooth < 0.2 * rough, (rough, smooth)


def test_unit_activity_reads_waveform_batches():
    from musiclens.core.interpret.activity import unit_activity

    m = tiny_model()
    x = torch.from_numpy(np.stack([chirp()[:PATCH], -chirp()[:PATCH]]))  # (B, S)
    act = unit_activity(m, x, layers=["conv 1"])["conv 1"]
    want = (np.clip(x.numpy(), 0, None) ** 2).mean()  # filter 0 is x itself, ReLU'd
    assert act.energy[0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(MusicLensError, match=r"\(B, 1, S\)"):
        unit_activity(m, torch.zeros(2, 3, PATCH))


def test_attribution_over_a_file_is_one_curve_over_the_samples():
    """The gradient over 2.5 patches: two patches of samples, each the autograd gradient of
    the target's logit with respect to that patch, on one time axis."""
    from musiclens.core.analyses.attribution import WaveformAttribution

    m = tiny_model()
    y = chirp(seconds=2.5 * PATCH / SR)
    result = analyses.run(analyses.attribution_over_file(m, y, "gradient", "mid"))
    assert isinstance(result, WaveformAttribution)
    assert result.values.shape == (2 * PATCH,) and result.sample_rate == SR
    assert result.end_s == pytest.approx(2 * PATCH / SR)
    np.testing.assert_allclose(result.times_s[[0, PATCH]], [0.0, PATCH / SR])
    want = []
    for a in (0, PATCH):
        x = torch.from_numpy(y[a : a + PATCH])[None, None].requires_grad_(True)
        m.net(x)[0, LABELS.index("mid")].backward()
        want.append(x.grad[0, 0].numpy())
    expected = np.abs(np.concatenate(want))  # "gradient" is drawn as its magnitude
    np.testing.assert_allclose(np.abs(result.values), expected, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------ the window
@pytest.mark.gui
def test_spectrogram_draws_a_waveform_attribution_aligned_under_the_image(qtbot):
    """A waveform attribution is a curve in a lane under the spectrogram: the image's overlay
    stays empty, the curve's envelope keeps the extremes, and a time lands on the same screen
    column in both plots."""
    from PySide6.QtCore import QPointF

    from musiclens.app.panels.spectrogram import SpectrogramView
    from musiclens.core.analyses.dream import waveform_display, waveform_display_front_end

    m = tiny_model()
    y = chirp(seconds=3 * PATCH / SR + 0.05)
    result = analyses.run(analyses.attribution_over_file(m, y, "integrated-gradients", "mid"))
    view = SpectrogramView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    qtbot.waitExposed(view)
    bins = waveform_display_front_end(SR).bin_frequencies()
    view.set_spectrogram(waveform_display(y, SR), len(y) / SR, bins, "chirp")
    view.set_overlay(result.values, start_s=result.start_s, end_s=result.end_s, symmetric=True, what="IG")
    assert view.lane.isVisible() and not view.overlay.isVisible() and view._overlay_data is None
    times, low, high = view.lane.data
    assert high.max() == pytest.approx(result.values.max()) and low.min() == pytest.approx(result.values.min())
    assert times[0] >= 0 and times[-1] <= result.end_s
    qtbot.wait(50)

    def screen_x(plot, t: float) -> float:
        scene = plot.getViewBox().mapViewToScene(QPointF(t, 0))
        return float(plot.mapToGlobal(plot.mapFromScene(scene)).x())

    for t in (0.05, result.end_s / 2, result.end_s - 0.01):
        assert abs(screen_x(view.plot, t) - screen_x(view.lane, t)) <= 1.0
    view.set_overlay(np.ones((4, 10)), start_s=0, end_s=0.2)  # a 2-D map: the image again
    assert not view.lane.isVisible() and view.overlay.isVisible()
    view.clear_overlay()
    assert not view.lane.isVisible()


@pytest.mark.gui
def test_layers_panel_shows_a_1d_layer_as_channels_by_time(qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor

    from musiclens.app.panels.layers import THUMB, LayersPanel

    m = tiny_model()
    panel = LayersPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_model(_summary(m))
    maps = analyses.layer_maps(m, chirp()[:PATCH], "conv 2")
    panel.set_maps(maps)
    assert panel.overview.isVisible() and not panel.overview.pixmap().isNull()
    assert panel.grid.count() == 6 and "6 filters" in panel.info.text()
    # a thumbnail is the filter's curve over time: its highest lit pixel is where the filter peaks
    k = int(panel.grid.item(0).data(Qt.UserRole))
    image = panel.grid.item(0).icon().pixmap(THUMB).toImage()
    w, h = image.width(), image.height()

    def top(x: int) -> int:
        return next((yy for yy in range(h) if QColor(image.pixel(x, yy)).red() > 200), h)

    highest = min(range(w), key=top)
    peak = np.argmax(maps.maps[k, 0]) / (maps.maps.shape[2] - 1) * (w - 1)
    assert abs(highest - peak) <= 3, (highest, peak)
    flat = analyses.LayerMaps("2-D", 0, 0.0, np.ones((3, 4, 5), np.float32), np.ones(3))
    panel.set_maps(flat)
    assert not panel.overview.isVisible()


def _summary(m: LoadedModel):
    """The panel's ModelSummary of a waveform model, built here (only its layers are read)."""
    from musiclens.core.analyses.results import ModelSummary

    layers = [(i.name, i.group, i.kind) for i in m.layers.values()]
    return ModelSummary(m.name, list(m.labels), m.multilabel, layers, m.patch_seconds, "waveform", m.sample_rate)


def save_tiny_folder(folder) -> Path:
    """The tiny model as a model folder of the "python" architecture: net.py, weights, model.json."""
    import inspect
    import json

    from safetensors.torch import save_file

    m = tiny_model()
    folder.mkdir(parents=True, exist_ok=True)
    source = f"import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\nLABELS = {LABELS!r}\n\n\n"
    (folder / "net.py").write_text(source + inspect.getsource(TinyWaveNet))
    save_file({k: v.contiguous() for k, v in m.net.state_dict().items()}, str(folder / "weights.safetensors"))
    meta = {
        "format": "musiclens-model/1",
        "name": "tiny-wave",
        "input": "waveform",
        "architecture": {"python": "net.py:TinyWaveNet", "params": {}},
        "waveform": {"sample_rate": SR, "patch_samples": PATCH},
        "labels": LABELS,
        "multilabel": False,
        "layer_names": {"conv1": "conv 1", "conv2": "conv 2"},
    }
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.gui
def test_window_opens_a_waveform_model_with_layer_maps_a_lane_and_a_filter(qtbot, window, tmp_path):
    """The whole window on a raw-waveform model folder: the recording is drawn (a log-mel of
    its samples), predictions per patch, a 1-D layer's channels × time, an attribution curve
    under the spectrogram, a filter heard by time-domain masking."""
    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "tiny-wave")
    wav = tmp_path / "chirp.wav"
    sf.write(wav, chirp(seconds=3 * PATCH / SR + 0.05), SR)
    with qtbot.waitSignal(window.session.analysis_ready, timeout=120_000):
        window._load_model(str(folder), trust_code=True, then=lambda: window.open_file(wav))
    assert window.session.summary.front_end_kind == "waveform"
    assert window.session.analysis.probabilities.shape == (3, len(LABELS))
    assert window.spectrogram.n_bins == 64
    shown = []
    window.layers.select_layer("conv 2")
    qtbot.waitUntil(lambda: window.layers.maps is not None and window.layers.maps.layer == "conv 2", timeout=60_000)
    assert window.layers.overview.isVisible() and window.layers.maps.maps.shape[:2] == (6, 1)
    window.session.attribution("gradient", "mid", None, lambda r: (shown.append(r), window._show_attribution(r)))
    qtbot.waitUntil(lambda: bool(shown), timeout=60_000)
    assert window.spectrogram.lane.isVisible() and shown[0].values.shape == (3 * PATCH,)
    heard = []
    window.session.hear_filter("conv 1", 0, 0, "activation", heard.append)
    qtbot.waitUntil(lambda: bool(heard), timeout=60_000)
    assert heard[0].audio.shape == (PATCH,) and heard[0].mask.shape == (1, PATCH)
    if SHOTS:
        window.grab().save(str(Path(SHOTS) / "waveform-window.png"))
