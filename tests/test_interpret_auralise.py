"""Filter auralisation: masks on the original complex STFT, inverted with the original phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpret_nets import SR, band_energy, features, logmel_cnn, logmel_fe, signal, stft_cnn, stft_fe
from musiclens.core.errors import ParameterError
from musiclens.core.interpret.auralise import (
    apply_mask,
    apply_mask_to_features,
    auralise_filter,
    filter_mask,
    mask_to_linear,
    mel_to_linear_weights,
)

TONES = (300.0, 1200.0, 2500.0)


def _frames(fe, n):
    return fe.n_frames(n)


@pytest.mark.parametrize("fe_factory", [stft_fe, logmel_fe])
def test_all_ones_mask_returns_the_input(fe_factory):
    fe = fe_factory()
    y = signal(0.5, freqs=TONES)
    mask = torch.ones(1, fe.n_bins, _frames(fe, len(y)))
    out = apply_mask(y, mask, fe)
    err = float(np.abs(out.audio[0] - y).max())
    print(f"all-ones round trip ({fe.kind}): max abs error {err:.2e}")
    assert out.audio.shape == (1, len(y)) and out.sample_rate == SR
    assert err < 1e-4


def test_mel_mask_maps_to_linear_as_a_weighted_mean():
    fe = logmel_fe()
    w = mel_to_linear_weights(fe)
    assert w.shape == (fe.n_fft // 2 + 1, 16)
    torch.testing.assert_close(w.sum(1), torch.ones(w.shape[0]), rtol=0, atol=1e-6)
    assert w.min() >= 0
    one_band = torch.zeros(1, 16, 3)
    one_band[:, 7] = 1.0
    lin = mask_to_linear(one_band, fe)[0, :, 0]
    freqs = np.arange(fe.n_fft // 2 + 1) * SR / fe.n_fft
    lo, hi = fe.bin_frequencies()[[6, 8]]  # band 7 spans its neighbours' centres
    assert float(lin[(freqs < lo - 1) | (freqs > hi + 1)].abs().max()) == 0.0
    assert float(lin.max()) > 0.5


def test_mel_mask_is_interpolated_linearly_between_band_centres():
    fe = logmel_fe()
    values = torch.linspace(0.2, 1.0, 16) ** 2  # any mask over the 16 bands
    lin = mask_to_linear(values.view(1, 16, 1), fe)[0, :, 0].double().numpy()
    centres = fe.bin_frequencies()
    freqs = np.arange(fe.n_fft // 2 + 1) * SR / fe.n_fft
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    want = np.interp(freqs[inside], centres, values.double().numpy())
    np.testing.assert_allclose(lin[inside], want, atol=1e-5)


@pytest.mark.parametrize("fe_factory", [stft_fe, logmel_fe])
def test_band_mask_keeps_the_band_and_removes_the_others(fe_factory):
    fe = fe_factory()
    y = signal(1.0, freqs=TONES)
    centres = fe.bin_frequencies()
    keep = torch.as_tensor((centres > 900) & (centres < 1600), dtype=torch.float32)
    mask = keep.view(1, -1, 1).expand(1, fe.n_bins, _frames(fe, len(y)))
    out = apply_mask(y, mask, fe).audio[0]
    bands = {f: (f - 60, f + 60) for f in TONES}
    kept = band_energy(out, SR, *bands[1200.0]) / band_energy(y, SR, *bands[1200.0])
    gone = [band_energy(out, SR, *bands[f]) / band_energy(y, SR, *bands[f]) for f in (300.0, 2500.0)]
    print(
        f"band mask ({fe.kind}): 1200 Hz keeps {kept:.3f} of its energy; 300/2500 Hz keep {gone[0]:.1e}/{gone[1]:.1e}"
    )
    assert kept > 0.8
    assert max(gone) < 1e-3


def test_auralise_at_the_file_rate():
    fe = stft_fe()
    y16 = signal(0.5, freqs=TONES, sr=16000)
    mask = torch.ones(1, fe.n_bins, fe.n_frames(4000))
    out = apply_mask(y16, mask, fe, sample_rate=16000)
    assert out.sample_rate == 16000 and out.audio.shape == (1, len(y16))
    # everything below the model's Nyquist (4 kHz) survives resampling there and back
    corr = np.corrcoef(out.audio[0, 200:-200], y16[200:-200])[0, 1]
    assert corr > 0.99


@pytest.mark.parametrize(
    "make, layer", [(stft_cnn, "relu 1"), (stft_cnn, "conv 2"), (logmel_cnn, "relu 1"), (logmel_cnn, "bn 2")]
)
def test_auralise_filter_gives_finite_audible_audio(make, layer):
    m = make()
    y = signal(0.5, freqs=TONES, sr=11025)
    out = auralise_filter(m, y, layer=layer, filter=1, sample_rate=11025)
    assert out.sample_rate == 11025 and out.audio.shape == (1, len(y))
    assert np.isfinite(out.audio).all()
    rms = float(np.sqrt(np.mean(out.audio**2)))
    assert rms > 1e-3 * float(np.sqrt(np.mean(y**2)))
    assert out.mask.min() >= 0 and abs(float(out.mask.max()) - 1.0) < 1e-6
    # the mask is the filter's activation, resized: where the filter is silent, so is the mask
    x = m.front_end(torch.from_numpy(signal(0.5, freqs=TONES)).unsqueeze(0))
    mk = filter_mask(m, x, layer=layer, filter=1)
    assert mk.shape == (1, m.front_end.n_bins, x.shape[-1])


def test_auralised_filter_is_the_masked_recording():
    """With the STFT model and a mask built by hand from the filter's activation, the
    auralisation equals iSTFT(STFT(y) ⊙ mask)."""
    m = stft_cnn()
    y = signal(0.5, freqs=TONES)
    x = features(m, y)
    mask = filter_mask(m, x, layer="relu 1", filter=2)
    a = auralise_filter(m, y, layer="relu 1", filter=2)
    b = apply_mask(y, mask, m.front_end)
    np.testing.assert_allclose(a.audio, b.audio, atol=1e-6)
    # the filter's own map, read directly from conv 1 (ReLU'd and normalised)
    with torch.no_grad():
        act = torch.relu(m.net.conv1(4.0 * x))[:, 2]
    torch.testing.assert_close(mask, act / act.max(), rtol=1e-5, atol=1e-6)


def test_without_a_recording_griffin_lim_or_istft_is_used():
    m = stft_cnn()
    y = signal(0.5, freqs=TONES)
    x = features(m, y)
    ones = torch.ones(1, x.shape[2], x.shape[3])
    exact = apply_mask_to_features(x, ones, m.front_end, length=len(y))
    assert float((exact[0].numpy() - y).__abs__().max()) < 1e-4  # STFT kind: exact iSTFT
    mel = logmel_cnn()
    xm = features(mel, y)
    gl = apply_mask_to_features(xm, torch.ones(1, 16, xm.shape[-1]), mel.front_end, n_iter=8, length=len(y))
    assert torch.isfinite(gl).all() and gl.abs().max() > 1e-3


def test_mask_shape_errors():
    fe = stft_fe()
    y = signal(0.2)
    with pytest.raises(ParameterError, match="does not fit"):
        apply_mask(y, torch.ones(1, fe.n_bins, 3), fe)
    with pytest.raises(ParameterError, match="rows"):
        mask_to_linear(torch.ones(1, 10, 3), fe)


@pytest.mark.parametrize("layer", ["conv 1", "pool 1", "relu 2"])
def test_stopping_the_forward_pass_at_the_layer_changes_nothing(layer):
    from musiclens.core.interpret.auralise import layer_output
    from musiclens.core.interpret.hooks import capture

    m = logmel_cnn()
    x = features(m, signal(0.4))
    with torch.no_grad(), capture(m, layer) as acts:
        m.net(x)
    assert torch.equal(layer_output(m, x, layer), acts[layer])
    calls = []
    handle = m.net.fc.register_forward_hook(lambda *_: calls.append(1))
    try:
        layer_output(m, x, layer)
        assert calls == []  # the layers after it did not run
        layer_output(m, x, layer, stop_early=False)
        assert calls == [1]
    finally:
        handle.remove()
    y = signal(0.4)
    early = auralise_filter(m, y, layer=layer, filter=1)
    full = auralise_filter(m, y, layer=layer, filter=1, stop_early=False)
    np.testing.assert_array_equal(early.audio, full.audio)
    assert torch.equal(early.mask, full.mask)


# ---------------------------------------------------------------------- what is heard (issue 13, item 4)
def _dbfs(y) -> float:
    rms = float(np.sqrt(np.mean(np.asarray(y, dtype=np.float64) ** 2)))
    return 20 * np.log10(rms) if rms > 0 else -np.inf


@pytest.mark.parametrize("make, layer", [(logmel_cnn, "conv 2"), (logmel_cnn, "conv 1"), (stft_cnn, "conv 2")])
def test_filter_levels_are_the_levels_of_each_filters_auralisation(make, layer):
    """One batched pass gives every filter's auralised level; a filter whose activation is
    never positive (zeroed before auralisation) is silent however large its energy."""
    from musiclens.core.interpret.auralise import SILENT_DBFS, filter_levels

    m = make()
    with torch.no_grad():  # filter 0 of conv 2: always negative, large mean square
        conv = m.net.conv2
        conv.bias[0] = -50.0
    y = signal(0.5, freqs=TONES, sr=11025)
    levels = filter_levels(m, y, layer=layer, sample_rate=11025)
    k = levels.level_db.shape[0]
    assert levels.maps.shape[0] == k and levels.energy.shape == (k,) and levels.silent.shape == (k,)
    for f in range(k):
        want = _dbfs(auralise_filter(m, y, layer=layer, filter=f, sample_rate=11025).audio[0])
        got = float(levels.level_db[f])
        assert got == want or abs(got - want) < 0.01, (f, got, want)
        assert bool(levels.silent[f]) == (want < SILENT_DBFS)
    # energy: mean square of the positive part of the activation (what the mask is made of)
    np.testing.assert_allclose(levels.energy, (np.clip(levels.maps, 0, None) ** 2).mean(axis=(1, 2)), rtol=1e-6)
    if layer == "conv 2":
        raw = (levels.maps[0] ** 2).mean()
        assert raw > np.max((levels.maps[1:] ** 2).mean(axis=(1, 2)))  # first by raw energy...
        assert levels.energy[0] == 0 and levels.level_db[0] == -np.inf and levels.silent[0]  # ...silent


def test_loudness_normalisation_reaches_the_target_and_reports_its_gain():
    from musiclens.core.interpret.auralise import normalise_loudness

    y = 0.01 * signal(0.5, freqs=TONES)
    out, gain_db = normalise_loudness(y, target_dbfs=-20.0)
    assert _dbfs(out) == pytest.approx(-20.0, abs=1e-3)
    assert gain_db == pytest.approx(_dbfs(out) - _dbfs(y), abs=1e-6)
    np.testing.assert_allclose(out, y * 10 ** (gain_db / 20), rtol=1e-5)
    # a peak limit wins over the target (no clipping), and the gain says what was applied
    spiky = np.zeros(8000, np.float32)
    spiky[100] = 0.5
    out, gain_db = normalise_loudness(spiky, target_dbfs=-20.0, peak=0.99)
    assert float(np.abs(out).max()) == pytest.approx(0.99, rel=1e-5)
    assert gain_db == pytest.approx(20 * np.log10(0.99 / 0.5), abs=1e-4)
    # digital silence stays silence, gain 0 dB
    out, gain_db = normalise_loudness(np.zeros(100, np.float32))
    assert gain_db == 0.0 and not out.any()
