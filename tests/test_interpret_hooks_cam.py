"""Activation capture, CAM, Grad-CAM and Grad-CAM++ on tiny models with hand-computed answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interpret_nets import features, gap_cnn, logmel_cnn, signal, stft_cnn
from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.interpret import cam as cam_mod
from musiclens.core.interpret.hooks import (
    activations,
    active_hooks,
    capture,
    filter_map,
    patch_activations,
    split_patches,
)
from musiclens.core.interpret.maps import normalise, upsample


@pytest.fixture(scope="module")
def gap():
    return gap_cnn()


@pytest.fixture(scope="module")
def x_gap(gap):
    return features(gap, signal(0.5))  # (1, 1, 16, 63)


def _gap_maps(net, x):
    """Hand-written forward of GapCNN up to the averaged maps."""
    h = F.relu(F.conv2d(x / 40.0 + 1.0, net.conv1.weight, net.conv1.bias, padding=1))
    return F.relu(F.conv2d(h, net.conv2.weight, net.conv2.bias, padding=1))


# ----------------------------------------------------------------------------- hooks
def test_capture_records_named_layers_and_removes_hooks(gap, x_gap):
    before = active_hooks(gap.net)
    with capture(gap, ["conv 1", "feature maps"]) as acts:
        gap.net(x_gap)
        assert active_hooks(gap.net) == before + 2
    assert active_hooks(gap.net) == before
    assert acts["conv 1"].shape == (1, 4, 16, 63)
    expected = _gap_maps(gap.net, x_gap)
    torch.testing.assert_close(acts["feature maps"], expected)
    torch.testing.assert_close(filter_map(acts["feature maps"], 3), expected[:, 3])


def test_hooks_are_removed_after_an_exception_in_the_block(gap, x_gap):
    before = active_hooks(gap.net)
    with pytest.raises(RuntimeError, match="boom"), capture(gap, ["conv 1", "conv 2"]):
        gap.net(x_gap)
        raise RuntimeError("boom")
    assert active_hooks(gap.net) == before


def test_hooks_are_removed_when_the_forward_pass_raises(monkeypatch):
    m = gap_cnn()
    x = features(m, signal(0.3))
    before = active_hooks(m.net)

    def broken(_x):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(m.net.fc, "forward", broken)
    for call in (
        lambda: cam_mod.grad_cam(m, x, layer="conv 2", target=0),
        lambda: cam_mod.grad_cam_pp(m, x, layer="conv 2", target=0),
        lambda: cam_mod.cam(m, x, layer="feature maps", target=0),
        lambda: activations(m, x, ["conv 1", "conv 2"]),
    ):
        with pytest.raises(RuntimeError, match="forward failed"):
            call()
        assert active_hooks(m.net) == before


def test_unknown_layer_is_a_clear_error_and_registers_nothing(gap, x_gap):
    before = active_hooks(gap.net)
    with pytest.raises(MusicLensError, match="no layer 'conv 9'"), capture(gap, ["conv 1", "conv 9"]):
        pass
    assert active_hooks(gap.net) == before


def test_filter_index_out_of_range(gap, x_gap):
    acts = activations(gap, x_gap, "conv 2")
    with pytest.raises(ParameterError, match=r"0\.\.4"):
        filter_map(acts["conv 2"], 5)


def test_patch_activations_match_running_each_patch():
    m = logmel_cnn()
    x = features(m, signal(1.2))  # 151 frames -> 4 patches of 32 (+ dropped rest)
    patches = split_patches(x, m.patch_frames)
    assert patches.shape == (4, 1, 16, 32)
    torch.testing.assert_close(patches[2], x[0, :, :, 64:96])
    acts = patch_activations(m, x, ["conv 2"], filters=[1, 4])
    assert acts["conv 2"].shape == (4, 2, 8, 16)
    with torch.no_grad():
        net = m.net
        one = net.conv2(net.pool1(net.relu1(net.conv1(patches[3:4] / 40.0 + 1.0))))
    torch.testing.assert_close(acts["conv 2"][3], one[0, [1, 4]])


# ----------------------------------------------------------------------------- CAM family
def test_cam_equals_hand_computed_weighted_sum_and_explains_the_logit(gap, x_gap):
    maps = _gap_maps(gap.net, x_gap)  # (1, 5, 16, 63)
    for c in range(3):
        expected = torch.einsum("k,kft->ft", gap.net.fc.weight[c].detach(), maps[0])
        got = cam_mod.cam(gap, x_gap, layer="feature maps", target=c)
        assert got.shape == (1, 16, 63)
        torch.testing.assert_close(got[0], expected)
        logit = gap.net(x_gap)[0, c]
        torch.testing.assert_close(got.mean() + gap.net.fc.bias[c], logit.detach())
    by_name = cam_mod.cam(gap, x_gap, layer="feature maps", target="class2")
    torch.testing.assert_close(by_name, cam_mod.cam(gap, x_gap, layer="feature maps", target=2))


def test_cam_refuses_a_non_gap_layer(gap, x_gap):
    with pytest.raises(ParameterError, match="GAP"):
        cam_mod.cam(gap, x_gap, layer="conv 1", target=0)  # 4 channels, fc reads 5


def test_grad_cam_on_gap_model_is_cam_over_area(gap, x_gap):
    """For GAP + linear, dy_c/dA_k = w_ck / (F·T) everywhere, so Grad-CAM = CAM / (F·T)."""
    for c in range(3):
        want = cam_mod.cam(gap, x_gap, layer="feature maps", target=c) / (16 * 63)
        got = cam_mod.grad_cam(gap, x_gap, layer="feature maps", target=c)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    raw = cam_mod.grad_cam(gap, x_gap, layer="feature maps", target=0)
    relu = cam_mod.grad_cam(gap, x_gap, layer="feature maps", target=0, relu=True)
    assert (raw < 0).any() and (raw > 0).any()  # the sign is kept by default
    torch.testing.assert_close(relu, raw.clamp_min(0))


def test_grad_cam_pp_on_gap_model_matches_the_closed_form(gap, x_gap):
    """g_k = c_k = w_ck/(F·T) constant, so α_k = 1/(2 + S_k c_k) and
    w_k = F·T·relu(c_k)/(2 + S_k c_k) with S_k = Σ A_k."""
    maps = _gap_maps(gap.net, x_gap)[0]
    n = 16 * 63
    for c in range(3):
        ck = gap.net.fc.weight[c].detach() / n
        sk = maps.sum(dim=(1, 2))
        wk = torch.where(ck != 0, n * F.relu(ck) / (2 + sk * ck), torch.zeros_like(ck))
        want = torch.einsum("k,kft->ft", wk, maps)
        got = cam_mod.grad_cam_pp(gap, x_gap, layer="feature maps", target=c)[0]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_grad_cam_batch_with_one_target_per_item_and_stft_model():
    m = stft_cnn()
    x = torch.cat([features(m, signal(0.4, seed=s)) for s in (0, 1)])
    both = cam_mod.grad_cam(m, x, layer="conv 2", target=[0, 2])
    assert both.shape == (2, 32, 50)
    torch.testing.assert_close(both[1:], cam_mod.grad_cam(m, x[1:], layer="conv 2", target=2))
    assert torch.isfinite(both).all() and both.abs().sum() > 0


def test_grad_cam_for_a_layer_with_batchnorm_in_train_mode_restores_the_flag():
    m = logmel_cnn()
    m.net.train()
    x = features(m, signal(0.5))
    cam_eval = cam_mod.grad_cam(m, x, layer="conv 2", target=1)
    assert m.net.training and m.net.bn2.training
    m.net.eval()
    torch.testing.assert_close(cam_eval, cam_mod.grad_cam(m, x, layer="conv 2", target=1))


def test_upsample_keeps_values_and_sign():
    maps = torch.tensor([[[1.0, -2.0], [3.0, 4.0]]])
    up = upsample(maps, (4, 4), mode="nearest")
    assert up.shape == (1, 4, 4)
    torch.testing.assert_close(up[0, :2, 2:], torch.full((2, 2), -2.0))
    time_only = upsample(torch.tensor([[1.0, 2.0]]), (3, 2), mode="nearest")
    torch.testing.assert_close(time_only[0], torch.tensor([[1.0, 2.0]] * 3))
    bil = upsample(maps, (4, 4))
    assert bil.min() == -2.0 and bil.max() == 4.0
    torch.testing.assert_close(normalise(maps).abs().amax(), torch.tensor(1.0))


class _ClassMapNet(torch.nn.Module):
    """conv -> ReLU -> transposed conv to one map per class -> GAP = logits (no linear)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.relu = torch.nn.ReLU()
        self.up = torch.nn.ConvTranspose2d(4, 3, 2, stride=2)

    def forward(self, x):
        return self.up(self.relu(self.conv(x / 40.0 + 1.0))).mean(dim=(2, 3))


def test_cam_of_a_model_whose_maps_are_the_class_maps():
    from interpret_nets import _wrap, logmel_fe
    from musiclens.core.models.registry import LayerInfo

    torch.manual_seed(5)
    m = _wrap("class-maps", _ClassMapNet(), logmel_fe(), [LayerInfo("class maps", "up", "c", "conv")], 3)
    x = features(m, signal(0.5))[..., :62]
    with torch.no_grad():
        maps = m.net.up(m.net.relu(m.net.conv(x / 40.0 + 1.0)))
        logits = m.net(x)
    for c in range(3):
        got = cam_mod.cam(m, x, layer="class maps", target=c)
        torch.testing.assert_close(got, maps[:, c])
        torch.testing.assert_close(got.mean(dim=(1, 2)), logits[:, c])


def test_inplace_relu_after_the_layer_does_not_change_what_is_captured():
    m = logmel_cnn()
    x = features(m, signal(0.4))
    want_act = activations(m, x, "conv 1")["conv 1"]
    want_cam = cam_mod.grad_cam(m, x, layer="conv 1", target=1)
    assert (want_act < 0).any()  # a pre-ReLU map: an in-place ReLU would clip it
    m.net.relu1.inplace = True
    torch.testing.assert_close(activations(m, x, "conv 1")["conv 1"], want_act)
    torch.testing.assert_close(cam_mod.grad_cam(m, x, layer="conv 1", target=1), want_cam)
    assert m.net.relu1.inplace
