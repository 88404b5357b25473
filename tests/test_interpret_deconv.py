"""Deconvolution to input space, checked against a hand-written deconvnet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interpret_nets import features, logmel_cnn, signal, stft_cnn
from musiclens.core.errors import ParameterError
from musiclens.core.interpret.deconv import auralise_deconv, deconv, deconv_mask
from musiclens.core.interpret.hooks import active_hooks


def _by_hand(net, x, k, *, keep_max=False, positive=False):
    """LogmelCNN: conv1 -> ReLU -> maxpool 2 -> conv2; go back from conv2's filter k with
    conv_transpose (same weights), unpooling with the switches and ReLU."""
    z = x / 40.0 + 1.0
    r = F.relu(F.conv2d(z, net.conv1.weight, net.conv1.bias, padding=1))
    p, switches = F.max_pool2d(r, 2, return_indices=True)
    a = F.conv2d(p, net.conv2.weight, net.conv2.bias, padding=1)
    seed = torch.zeros_like(a)
    seed[:, k] = a[:, k].clamp_min(0) if positive else a[:, k]
    if keep_max:
        flat = seed[:, k].flatten(1)
        only = torch.zeros_like(flat)
        i = flat.argmax(1)
        only[0, i] = flat[0, i]
        seed[:, k] = only.view_as(seed[:, k])
    down = F.conv_transpose2d(seed, net.conv2.weight, padding=1)  # flipped, transposed
    up = F.max_unpool2d(down, switches, 2, output_size=r.shape[-2:])  # switches
    up = F.relu(up)  # deconvnet ReLU
    return F.conv_transpose2d(up, net.conv1.weight, padding=1) / 40.0  # then the input scaling


@pytest.mark.parametrize("keep", ["all", "max"])
@pytest.mark.parametrize("positive", [False, True])
def test_deconv_equals_the_hand_written_deconvnet(keep, positive):
    m = logmel_cnn()
    x = features(m, signal(0.5))  # 63 frames: the odd last column is never a switch
    for k in (0, 3):
        want = _by_hand(m.net, x, k, keep_max=keep == "max", positive=positive)
        got = deconv(m, x, layer="conv 2", filter=k, keep=keep, positive=positive)
        assert got.shape == x.shape
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert active_hooks(m.net) == 0


def test_rules_differ_where_the_forward_relu_was_off():
    m = logmel_cnn()
    x = features(m, signal(0.5))
    d = deconv(m, x, layer="conv 2", filter=1, rule="deconvnet", positive=False)
    gb = deconv(m, x, layer="conv 2", filter=1, rule="guided", positive=False)
    g = deconv(m, x, layer="conv 2", filter=1, rule="gradient", positive=False)
    assert not torch.allclose(d, gb) and not torch.allclose(gb, g)
    # gradient rule = vector-Jacobian product of the kept map, checked by autograd directly
    xr = x.clone().requires_grad_(True)
    net = m.net
    a = net.conv2(net.pool1(net.relu1(net.conv1(xr / 40.0 + 1.0))))
    seed = torch.zeros_like(a)
    seed[:, 1] = a[:, 1].detach()
    (want,) = torch.autograd.grad(a, xr, seed)
    torch.testing.assert_close(g, want)


def test_inplace_relu_is_restored_and_hooks_removed():
    m = logmel_cnn()
    m.net.relu1.inplace = True
    x = features(m, signal(0.3))
    d = deconv(m, x, layer="conv 2", filter=2)
    assert m.net.relu1.inplace and active_hooks(m.net) == 0
    m.net.relu1.inplace = False
    torch.testing.assert_close(d, deconv(m, x, layer="conv 2", filter=2))


def test_deconv_of_stft_model_and_its_auralisation():
    m = stft_cnn()
    y = signal(0.5)
    x = features(m, y)
    d = deconv(m, x, layer="relu 2", filter=0)
    assert d.shape == x.shape and d.abs().max() > 0
    mask = deconv_mask(d)
    assert mask.shape == (1, 65, x.shape[-1]) and float(mask.max()) == pytest.approx(1.0)
    out = auralise_deconv(m, y, layer="relu 2", filter=0)
    assert out.audio.shape == (1, len(y)) and np.isfinite(out.audio).all()
    assert np.sqrt(np.mean(out.audio**2)) > 1e-4
    mel = auralise_deconv(logmel_cnn(), y, layer="conv 2", filter=0, sample_rate=8000)
    assert np.isfinite(mel.audio).all() and np.abs(mel.audio).max() > 1e-4


def test_bad_rule_or_keep():
    m = logmel_cnn()
    x = features(m, signal(0.2))
    with pytest.raises(ParameterError, match="rule"):
        deconv(m, x, layer="conv 2", filter=0, rule="lrp")
    with pytest.raises(ParameterError, match="keep"):
        deconv(m, x, layer="conv 2", filter=0, keep="top3")


def test_relu_rule_hooks_are_removed_when_the_forward_pass_raises(monkeypatch):
    m = logmel_cnn()
    m.net.relu1.inplace = True
    x = features(m, signal(0.3))

    def broken(_x):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(m.net.fc, "forward", broken)
    with pytest.raises(RuntimeError, match="forward failed"):
        deconv(m, x, layer="conv 2", filter=0)
    assert active_hooks(m.net) == 0 and m.net.relu1.inplace
