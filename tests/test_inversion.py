"""iSTFT round trip, Griffin-Lim against librosa, mel -> linear, and front-end inversion."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from conftest import tone
from musiclens.core import features as F
from musiclens.core import inversion as inv
from musiclens.core.errors import ParameterError


def music_like(sr=22050, seconds=2.0):
    rng = np.random.default_rng(7)
    y = tone((196.0, 247.0, 294.0, 392.0), sr=sr, seconds=seconds, amp=0.5)
    env = np.exp(-3 * (np.arange(len(y)) % (sr // 2)) / sr).astype(np.float32)
    return (y * env + 0.02 * rng.standard_normal(len(y)).astype(np.float32)).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (1024, 256), (512, 128)])
def test_stft_istft_round_trip_is_exact(n_fft, hop):
    fe = F.FrontEnd("stft", 22050, n_fft, hop, compression="none", top_db=None)
    x = torch.tensor(music_like())[None]
    back = inv.istft(F.stft(x, fe), fe, length=x.shape[-1])
    assert (back - x).abs().max().item() < 1e-5


def test_two_channel_features_invert_exactly():
    fe = F.stft_frontend()
    x = torch.tensor(music_like())[None]
    back = inv.features_to_audio(fe(x), fe, length=x.shape[-1])
    assert (back - x).abs().max().item() < 1e-5


def test_griffin_lim_equals_librosa_with_the_same_start():
    fe = F.FrontEnd("magnitude", 22050, 1024, 256, power=1.0, compression="none")
    y = music_like()
    mag = F.stft(torch.tensor(y)[None], fe).abs()
    ours = inv.griffin_lim(mag, fe, n_iter=32, init_phase="zeros", length=len(y))
    ref = librosa.griffinlim(mag[0].numpy(), n_iter=32, hop_length=256, n_fft=1024, init=None, length=len(y))
    sc_ours = inv.spectral_convergence(mag, ours, fe).item()
    sc_ref = inv.spectral_convergence(mag, torch.tensor(ref)[None], fe).item()
    print(f"Griffin-Lim spectral convergence after 32 iterations: ours {sc_ours:.4f}, librosa {sc_ref:.4f}")
    assert abs(sc_ours - sc_ref) < 1e-3
    assert np.abs(ours[0].numpy() - ref).max() < 1e-2 * np.abs(ref).max()
    assert sc_ours < 0.3


def test_griffin_lim_converges_and_momentum_helps():
    fe = F.FrontEnd("magnitude", 22050, 1024, 256, power=1.0, compression="none")
    mag = F.stft(torch.tensor(music_like())[None], fe).abs()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    sc = {
        n: inv.spectral_convergence(mag, inv.griffin_lim(mag, fe, n_iter=n, generator=g()), fe).item()
        for n in (0, 8, 32)
    }
    classic = inv.spectral_convergence(mag, inv.griffin_lim(mag, fe, n_iter=32, momentum=0.0, generator=g()), fe).item()
    assert sc[0] > sc[8] > sc[32]
    assert sc[32] < classic


def test_griffin_lim_from_the_true_phase_is_nearly_exact():
    fe = F.FrontEnd("magnitude", 22050, 1024, 256, power=1.0, compression="none")
    x = torch.tensor(music_like())[None]
    spec = F.stft(x, fe)
    out = inv.griffin_lim(spec.abs(), fe, n_iter=0, init_phase=spec.angle(), length=x.shape[-1])
    assert (out - x).abs().max().item() < 1e-4


def test_mel_to_linear_nnls_beats_pseudo_inverse():
    fe = F.logmel_frontend(sample_rate=22050, n_fft=1024, hop=256, n_mels=64)
    x = torch.tensor(music_like())[None]
    power = F.stft(x, fe).abs() ** 2
    mel = F.mel_basis(fe) @ power
    residual = {}
    for method in ("pinv", "nnls"):
        lin = inv.mel_to_linear(mel, fe, method=method)
        assert lin.shape == power.shape and (lin >= 0).all()
        residual[method] = ((F.mel_basis(fe) @ lin - mel).norm() / mel.norm()).item()
    assert residual["nnls"] < 0.05 < residual["pinv"] or residual["nnls"] < residual["pinv"] / 3


def test_to_power_undoes_the_compression():
    power = torch.rand(1, 16, 10) + 1e-3
    for fe in (F.logmel_frontend(top_db=None), F.musicnn_frontend().replace(float16_power=False)):
        assert torch.allclose(inv.to_power(fe.compress(power), fe), power, rtol=1e-4)


def test_mel_features_to_audio_is_finite_and_audible():
    fe = F.logmel_frontend(sample_rate=22050, n_fft=1024, hop=256, n_mels=64)
    x = torch.tensor(music_like())[None]
    out = inv.features_to_audio(fe(x), fe, length=x.shape[-1])
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert 0.2 < out.pow(2).mean().sqrt() / x.pow(2).mean().sqrt() < 5


def test_bad_inputs():
    fe = F.stft_frontend()
    with pytest.raises(ParameterError, match="complex"):
        inv.istft(torch.zeros(1, 513, 10), fe)
    with pytest.raises(ParameterError, match="bins"):
        inv.griffin_lim(torch.zeros(1, 100, 10), fe)
    with pytest.raises(ParameterError, match="mel front end"):
        inv.mel_to_linear(torch.zeros(1, 64, 10), fe)
    with pytest.raises(ParameterError, match="real/imag"):
        inv.channels_to_complex(torch.zeros(1, 1, 513, 10))


@pytest.mark.parametrize(
    "n_fft,hop,win_length", [(2048, 512, None), (1024, 256, 800), (512, 128, None), (1024, 300, None)]
)
@pytest.mark.parametrize("length", [None, 22050, 21000])
def test_istft_equals_torch_istft(n_fft, hop, win_length, length):
    fe = F.FrontEnd("stft", 22050, n_fft, hop, win_length=win_length, compression="none", top_db=None)
    spec = F.stft(torch.tensor(music_like(seconds=1.0))[None].repeat(2, 1), fe)
    ours = inv.istft(spec, fe, length=length)
    theirs = torch.istft(
        spec, n_fft, hop, win_length=win_length or n_fft, window=F.window(fe, "cpu"), center=True, length=length
    )
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-6


def test_istft_pads_zeros_beyond_what_the_frames_cover():
    fe = F.FrontEnd("stft", 22050, 1024, 256, compression="none", top_db=None)
    spec = F.stft(torch.tensor(music_like(seconds=1.0))[None], fe)
    covered = 1024 + 256 * (spec.shape[-1] - 1) - 512
    out = inv.istft(spec, fe, length=covered + 1000)
    assert out.shape[-1] == covered + 1000 and not out[:, covered:].any() and out[:, :covered].abs().max() > 0.1
