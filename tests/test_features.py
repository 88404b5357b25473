"""Front ends: parity with librosa, shapes, batching, serialisation and bad parameters."""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import torch

from conftest import tone
from musiclens.core import features as F
from musiclens.core.audio import load
from musiclens.core.errors import ParameterError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def synthetic(sr: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Chord + sweep + a click + noise: every bin has something, some are near silent."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = tone((110.0, 440.0, 1760.0), sr=sr, seconds=seconds, amp=0.4)
    y += 0.2 * np.sin(2 * np.pi * (200 + 2000 * t) * t).astype(np.float32)
    y[len(y) // 2] += 0.9
    y += 0.01 * rng.standard_normal(len(y)).astype(np.float32)
    y[: sr // 10] = 0.0  # a silent start exercises amin and top_db
    return y.astype(np.float32)


def librosa_logmel(y, fe: F.FrontEnd, ref=1.0):
    S = librosa.feature.melspectrogram(
        y=y,
        sr=fe.sample_rate,
        n_fft=fe.n_fft,
        hop_length=fe.hop,
        n_mels=fe.n_mels,
        fmin=fe.fmin,
        fmax=fe.fmax,
        power=fe.power,
    )
    return librosa.power_to_db(S, ref=np.max if ref == "max" else ref, amin=fe.amin, top_db=fe.top_db)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw",
    [
        dict(sample_rate=22050, n_fft=2048, hop=512, n_mels=128),
        dict(sample_rate=16000, n_fft=512, hop=256, n_mels=96, fmin=20.0, fmax=8000.0),
        dict(sample_rate=44100, n_fft=1024, hop=441, n_mels=80, ref="max", top_db=60.0),
        dict(sample_rate=22050, n_fft=1024, hop=256, n_mels=64, top_db=None),
    ],
)
def test_logmel_matches_librosa_within_a_thousandth_of_a_db(kw, device):
    fe = F.logmel_frontend(**kw)
    y = synthetic(fe.sample_rate)
    ours = fe.compute(y, device=device)
    assert ours.shape == (1, fe.n_mels, fe.n_frames(len(y)))
    expected = librosa_logmel(y, fe, ref=fe.ref)
    assert np.abs(ours[0] - expected).max() <= 1e-3


def test_stft_channels_match_librosa():
    fe = F.stft_frontend(sample_rate=22050, n_fft=1024, hop=256)
    y = synthetic(22050)
    ours = fe.compute(y)
    D = librosa.stft(y, n_fft=1024, hop_length=256)
    assert ours.shape == (2, 513, D.shape[1])
    scale = np.abs(D).max()
    assert np.abs(ours[0] - D.real).max() / scale < 1e-5
    assert np.abs(ours[1] - D.imag).max() / scale < 1e-5
    real_only = F.stft_frontend(sample_rate=22050, n_fft=1024, hop=256, real_only=True).compute(y)
    np.testing.assert_array_equal(real_only[0], ours[0])


def test_linear_power_in_db_matches_librosa():
    fe = F.FrontEnd("magnitude", 22050, 1024, 256, power=2.0, ref=1.0, top_db=80.0)
    y = synthetic(22050)
    D = librosa.stft(y, n_fft=1024, hop_length=256)
    diff = np.abs(fe.compute(y)[0] - librosa.power_to_db(np.abs(D) ** 2, ref=1.0, top_db=80.0))
    # Without the mel sum, single bins where the FFT nearly cancels carry float32 rounding
    # of two different FFT libraries: all but a handful of bins agree to 1e-3 dB.
    assert np.quantile(diff, 0.9999) <= 1e-3 and diff.max() <= 5e-3


def test_musicnn_front_end_is_musicnns_formula():
    fe = F.musicnn_frontend()
    y = synthetic(16000, seconds=3.0)
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96)
    expected = np.log10(1 + 10000 * S.astype(np.float16).astype(np.float64))
    ours = fe.compute(y)[0]
    assert ours.shape == (96, 1 + len(y) // 256)
    # float16 quantisation can round a value on the other side of a tie: compare robustly
    diff = np.abs(ours - expected)
    assert np.median(diff) < 1e-6 and diff.max() < 2e-3
    assert (fe.n_mels, fe.sample_rate, fe.n_fft, fe.hop) == (96, 16000, 512, 256)


def test_batch_is_the_same_as_one_by_one():
    fe = F.logmel_frontend(sample_rate=16000, n_fft=512, hop=160, n_mels=40, ref="max")
    batch = np.stack([synthetic(16000, 1.0, seed=s) * (s + 1) for s in range(3)])
    together = fe.compute(batch)
    assert together.shape[0] == 3
    for i in range(3):
        np.testing.assert_allclose(together[i], fe.compute(batch[i]), atol=1e-4)


def test_front_end_survives_json_and_is_hashable():
    for fe in (F.logmel_frontend(), F.musicnn_frontend(), F.stft_frontend(real_only=True)):
        again = F.FrontEnd.from_dict(json.loads(json.dumps(fe.to_dict())))
        assert again == fe and hash(again) == hash(fe)


def test_geometry_helpers_agree_with_the_output():
    fe = F.logmel_frontend()
    y = synthetic(22050, 1.3)
    out = fe.compute(y)
    assert out.shape[-1] == fe.n_frames(len(y))
    times = fe.frame_times(out.shape[-1])
    assert times[1] == pytest.approx(512 / 22050)
    freqs = fe.bin_frequencies()
    assert len(freqs) == 128 and np.all(np.diff(freqs) > 0) and freqs[-1] < 11025
    assert len(F.stft_frontend().bin_frequencies()) == F.stft_frontend().n_bins == 513


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(kind="mfcc", sample_rate=22050, n_fft=1024, hop=256), "unknown"),
        (dict(kind="logmel", sample_rate=22050, n_fft=1024, hop=0, n_mels=64), "hop"),
        (dict(kind="logmel", sample_rate=22050, n_fft=1024, hop=256), "n_mels"),
        (dict(kind="logmel", sample_rate=16000, n_fft=1024, hop=256, n_mels=64, fmax=12000.0), "fmax"),
        (dict(kind="stft", sample_rate=22050, n_fft=1024, hop=256, window="hamming"), "window"),
        (dict(kind="stft", sample_rate=22050, n_fft=1024, hop=256, win_length=2048), "win_length"),
    ],
)
def test_bad_specs_say_what_is_allowed(kw, match):
    with pytest.raises(ParameterError, match=match):
        F.FrontEnd(**kw)


def test_bad_audio_is_refused():
    fe = F.logmel_frontend()
    with pytest.raises(ParameterError, match="empty"):
        fe(torch.zeros(1, 0))
    with pytest.raises(ParameterError, match="floating"):
        fe(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(ParameterError, match="batch"):
        fe(torch.zeros(1, 2, 100))
    with pytest.raises(ParameterError, match="unknown front end"):
        F.frontend_by_name("cqt")


@pytest.mark.realdata
@pytest.mark.parametrize("genre", ["blues", "classical", "jazz", "metal"])
def test_logmel_parity_on_real_gtzan_clips(shared_data, genre):
    y, sr = load(shared_data / f"audio/gtzan-full-pecmae/{genre}/{genre}.00000.wav")
    fe = F.logmel_frontend(sample_rate=sr)
    assert np.abs(fe.compute(y)[0] - librosa_logmel(y, fe)).max() <= 1e-3


@pytest.mark.realdata
def test_musicnn_mel_on_a_real_clip(shared_data):
    y, _ = load(shared_data / "audio/musicnn/joram-moments_of_clarity-08-solipsism-59-88.mp3", sr=16000)
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96)
    expected = np.log10(1 + 10000 * S.astype(np.float16).astype(np.float64))
    diff = np.abs(F.musicnn_frontend().compute(y)[0] - expected)
    assert np.median(diff) < 1e-6 and np.quantile(diff, 0.999) < 1e-3


@pytest.mark.parametrize("htk,norm", [(False, "slaney"), (True, "slaney"), (False, None), (True, None)])
def test_our_mel_filterbank_is_librosas(htk, norm):
    fe = F.FrontEnd("logmel", 22050, 1024, 256, n_mels=64, fmin=30.0, fmax=10000.0, htk=htk, mel_norm=norm)
    ours = F.mel_basis(fe).numpy()
    theirs = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=64, fmin=30.0, fmax=10000.0, htk=htk, norm=norm)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(
        fe.bin_frequencies(), librosa.mel_frequencies(n_mels=66, fmin=30.0, fmax=10000.0, htk=htk)[1:-1]
    )


def test_core_runs_without_importing_librosa_or_numba():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, torch\n"
        "from musiclens.core import features, audio\n"
        "y = audio.resample(np.ones(4410, np.float32), orig_sr=44100, target_sr=16000)\n"
        "x = features.musicnn_frontend()(torch.from_numpy(y)[None])\n"
        "print(tuple(x.shape), 'librosa' in sys.modules, 'numba' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # numba neither: a one-file run keeps the torch path (musiclens.core.mel_power.prepare)
    assert r.stdout.split()[-2:] == ["False", "False"]
