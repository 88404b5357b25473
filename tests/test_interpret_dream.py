"""Deep dream generator: objective goes up, cancel / close stop it, audio comes out."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from interpret_nets import SR, features, logmel_cnn, signal, stft_cnn
from musiclens.core.errors import ParameterError
from musiclens.core.interpret.dream import DreamStep, dream, run_dream, sine_sweep
from musiclens.core.interpret.hooks import active_hooks


def _logits(m, x):
    with torch.no_grad():
        return m.net(x)[0]


@pytest.mark.parametrize("make, lr", [(logmel_cnn, 0.5), (stft_cnn, 0.05)])
@pytest.mark.parametrize("minus", [None, "class2", "others"])
def test_objective_increases_and_matches_the_definition(make, lr, minus):
    m = make()
    y = signal(0.5)
    steps = list(dream(m, y, target="class1", minus=minus, steps=15, lr=lr))
    assert [s.step for s in steps] == list(range(15)) + [15]
    first, last = steps[0], steps[-1]
    assert last.done and not last.cancelled and not first.done
    print(f"dream {m.name} minus={minus}: objective {first.objective:.4f} -> {last.objective:.4f}")
    assert last.objective > first.objective + 0.05
    z = _logits(m, last.x)
    want = {None: z[1], "class2": z[1] - z[2], "others": z[1] - (z[0] + z[2]) / 2}[minus]
    assert last.objective == pytest.approx(float(want), abs=1e-5)
    np.testing.assert_allclose(last.scores, z.numpy(), atol=1e-6)
    # audio out: same length and rate as the start, finite, not silent
    assert last.sample_rate == SR and last.audio.shape == (len(y),)
    assert np.isfinite(last.audio).all() and np.sqrt(np.mean(last.audio**2)) > 1e-3


def test_minimise_lowers_the_target():
    m = logmel_cnn()
    steps = list(dream(m, signal(0.5), target=0, minimise=True, steps=20, lr=1.0))
    z0, z1 = _logits(m, steps[0].x)[0], _logits(m, steps[-1].x)[0]
    assert z1 < z0 - 0.05


def test_cancel_event_stops_the_dream_and_reports_it():
    m = logmel_cnn()
    stop = threading.Event()
    seen = []
    for s in dream(m, signal(0.3), target=0, steps=50, cancel=stop):
        seen.append(s)
        if s.step == 3 and not s.done:
            stop.set()
    assert seen[-1].done and seen[-1].cancelled
    assert seen[-1].step == 3  # the update after step 3 was never applied
    torch.testing.assert_close(seen[-1].x, seen[-2].x)
    assert np.isfinite(seen[-1].audio).all()
    # a callable works too, and a cancel set before the start gives no update at all
    out = list(dream(m, signal(0.3), target=0, steps=50, cancel=lambda: True))
    assert len(out) == 1 and out[0].cancelled and out[0].step == 0


def test_closing_the_generator_stops_it_and_restores_the_model():
    m = logmel_cnn()
    m.net.train()
    gen = dream(m, signal(0.3), target=0, steps=100)
    first = next(gen)
    assert isinstance(first, DreamStep) and not m.net.training  # eval while dreaming
    gen.close()
    assert m.net.training and m.net.bn2.training
    assert active_hooks(m.net) == 0
    with pytest.raises(StopIteration):
        next(gen)


def test_stft_channel_choice_leaves_the_other_channel_alone():
    m = stft_cnn()
    y = signal(0.5)
    x0 = features(m, y)
    last = run_dream(m, y, target=2, steps=10, lr=0.05, channels=(0,))
    assert not torch.allclose(last.x[:, 0], x0[:, 0])
    torch.testing.assert_close(last.x[:, 1], x0[:, 1])


def test_subtractive_update_only_removes_energy():
    m = stft_cnn()
    y = signal(0.5)
    x0 = features(m, y)
    sub = run_dream(m, y, target=1, steps=15, lr=0.05, update="subtractive")
    assert (sub.x.abs() <= x0.abs() + 1e-6).all()
    assert (sub.x * x0 >= -1e-9).all()  # no sign flips: values move towards 0
    assert sub.objective > next(iter(dream(m, y, target=1, steps=0))).objective
    mel = logmel_cnn()
    x0m = features(mel, y)
    subm = run_dream(mel, y, target=1, steps=10, lr=0.5, update="subtractive")
    assert (subm.x <= x0m + 1e-5).all() and (subm.x >= -100.0 - 1e-5).all()
    assert (subm.x < x0m - 1e-3).any()


def test_values_stay_in_range_and_jitter_is_reproducible():
    m = logmel_cnn()
    y = signal(0.5)
    x0 = features(m, y)
    a = run_dream(m, y, target=0, steps=10, lr=3.0, jitter=4, seed=7)
    b = run_dream(m, y, target=0, steps=10, lr=3.0, jitter=4, seed=7)
    torch.testing.assert_close(a.x, b.x)
    assert float(a.x.max()) <= float(x0.max()) + 1e-5
    assert float(a.x.min()) >= min(float(x0.min()), -100.0) - 1e-5
    c = run_dream(m, y, target=0, steps=10, lr=3.0, value_range=(-50.0, -10.0))
    assert float(c.x.min()) >= -50.0 and float(c.x.max()) <= -10.0


def test_raw_gradient_and_sine_sweep_start():
    m = logmel_cnn()
    sweep = sine_sweep(m.front_end, seconds=0.5, f0=100.0)
    assert sweep.shape == (4000,) and np.abs(sweep).max() == pytest.approx(0.3, rel=1e-3)
    steps = list(dream(m, sweep, target=2, steps=12, lr=200.0, normalise_grad=False))
    assert steps[-1].objective > steps[0].objective
    # starting from features only: random phase Griffin-Lim for a mel model
    x = features(m, sweep)
    last = run_dream(m, x, target=2, steps=3, lr=0.5, n_iter=4)
    assert last.audio.ndim == 1 and np.isfinite(last.audio).all()


def test_audio_at_the_file_rate_and_intermediate_audio():
    m = stft_cnn()
    y = signal(0.5, sr=11025)
    steps = list(dream(m, y, sample_rate=11025, target=0, steps=4, lr=0.05, audio_every=2))
    assert [s.audio is not None for s in steps] == [True, False, True, False, True]
    assert steps[-1].sample_rate == 11025 and steps[-1].audio.shape == (len(y),)


def test_bad_parameters():
    m = stft_cnn()
    y = signal(0.2)
    with pytest.raises(ParameterError, match="channels"):
        next(dream(m, y, target=0, channels=(2,)))
    with pytest.raises(ParameterError, match="update"):
        next(dream(m, y, target=0, update="multiplicative"))
    with pytest.raises(ParameterError, match="different"):
        next(dream(m, y, target=0, minus=0))
    with pytest.raises(ParameterError, match="f0"):
        sine_sweep(8000, f0=10.0, f1=5000.0)


def test_mask_resynthesis_keeps_the_recording_where_nothing_changed():
    m = logmel_cnn()
    y = signal(0.5)
    nothing = run_dream(m, y, target=0, steps=0, resynthesis="mask")
    np.testing.assert_allclose(nothing.audio, y, atol=1e-4)  # no change -> the recording
    sub = run_dream(m, y, target=1, steps=10, lr=0.5, update="subtractive", resynthesis="mask")
    assert np.isfinite(sub.audio).all()
    assert np.sum(sub.audio**2) <= np.sum(y**2) * 1.001  # subtractive: energy only removed
    gl = run_dream(m, y, target=0, steps=0, n_iter=8)
    assert np.abs(gl.audio - y).max() > 1e-3  # Griffin-Lim is only an approximation
