"""The compiled mel projection (musiclens.core.mel_power) against the torch path it replaces
for inference: same mel power, where it applies and where it must not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclens.core import features as F
from musiclens.core import mel_power

FRONT_ENDS = {
    "logmel 2048": F.logmel_frontend(),
    "musicnn": F.musicnn_frontend(),
    # 128 bands on 129 bins: the lowest bands touch no bin at all (empty bands)
    "empty bands": F.logmel_frontend(sample_rate=22050, n_fft=256, hop=100, n_mels=128, htk=True),
    "fmin/fmax, odd hop": F.logmel_frontend(sample_rate=44100, n_fft=1024, hop=441, n_mels=80, fmin=30.0, fmax=9000.0),
}


def torch_path_power(fe: F.FrontEnd, audio: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(mel_power, "kernel", lambda: None)
        return fe._power(audio)


@pytest.fixture(scope="module")
def compiled() -> object:
    assert mel_power.prepare(), "numba is a dependency: the compiled kernel must be available"
    assert mel_power.prepare()  # a second call: already loaded
    return mel_power.kernel()


@pytest.mark.parametrize("name", list(FRONT_ENDS))
@pytest.mark.parametrize("seconds", [0.05, 3.3])
def test_compiled_mel_power_is_the_sparse_product(name, seconds, compiled, monkeypatch):
    fe = FRONT_ENDS[name]
    rng = np.random.default_rng(7)
    audio = torch.from_numpy((0.2 * rng.standard_normal((2, int(seconds * fe.sample_rate)))).astype(np.float32))
    audio[1, : audio.shape[1] // 3] = 0.0  # silence: exact zeros must stay zeros
    ours = fe._power(audio)
    reference = torch_path_power(fe, audio, monkeypatch)
    assert ours.shape == reference.shape == (2, fe.n_mels, fe.n_frames(audio.shape[1]))
    assert ours.dtype == torch.float32 and ours.grad_fn is None
    scale = reference.amax(dim=(1, 2), keepdim=True)
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6 * float(scale.min()))
    silent = reference == 0  # silent frames of the 3.3 s clips (and empty bands)
    assert bool((ours[silent] == 0).all())
    assert silent.any() or seconds < 1
    assert len(compiled.signatures) == 1  # prepare() compiled the types the front ends pass


def test_more_frames_than_one_block_each_block_written_once(compiled):
    fe = FRONT_ENDS["logmel 2048"]
    block = F.BLOCK_BYTES // (8 * (fe.n_fft // 2 + 1))
    n = (2 * block + 5 - 1) * fe.hop  # 2 blocks and 5 frames once padded
    audio = torch.zeros(1, n)
    audio[0, -fe.hop * 3 :] = 1.0  # energy only in the last frames, after two full blocks
    power = fe._power(audio)[0]
    assert power.shape[1] == 2 * block + 5
    assert float(power[:, : 2 * block - 2].abs().max()) == 0.0  # nothing left over from np.empty
    assert float(power[:, -2:].sum()) > 0


def test_bands_rebuild_the_filterbank():
    basis = F.mel_basis(FRONT_ENDS["empty bands"]).numpy()
    bands = mel_power.MelBands.from_basis(basis)
    rebuilt = np.zeros_like(basis)
    for m in range(len(basis)):
        rebuilt[m, bands.lo[m] : bands.hi[m]] = bands.weights[bands.offset[m] : bands.offset[m + 1]]
    np.testing.assert_array_equal(rebuilt, basis)
    assert (bands.lo == bands.hi).any(), "this front end has bands that touch no bin"


def test_gradients_still_flow_through_the_torch_path():
    fe = FRONT_ENDS["logmel 2048"]
    audio = (0.1 * torch.randn(1, 22050)).requires_grad_(True)
    out = fe(audio)
    assert out.grad_fn is not None
    out.sum().backward()
    assert audio.grad is not None and torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("audio", "why"),
    [
        (torch.zeros(1, 22050, dtype=torch.float64), "float64"),
        (torch.zeros(1, 22050, requires_grad=True), "needs a gradient"),
    ],
)
def test_compiled_path_only_where_it_applies(audio, why, compiled):
    fe = FRONT_ENDS["logmel 2048"]
    assert fe._compiled_mel_power(audio) is None, why
    assert fe._compiled_mel_power(audio.detach().float()) is not None
    assert F.stft_frontend()._compiled_mel_power(audio.detach().float()) is None  # no mel bands
    with torch.no_grad():
        assert fe._compiled_mel_power(audio.float()) is not None  # no grad mode: inference
