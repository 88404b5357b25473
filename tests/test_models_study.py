"""Study models: shapes, save/load, readable layers, Zhang's mask and filter loss by hand,
exact CAM of gap-cnn, Choi's L2, and the message for weights that don't fit model.json."""

from __future__ import annotations

import json
import math

import pytest
import torch

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.models import registry, study
from musiclens.core.models.vanilla_cnn import (
    InterpretableMask,
    localisation,
    mask_templates,
    zhang_filter_loss,
)

torch.set_num_threads(1)

EXPECTED_SHAPES = {
    "vanilla-cnn": (1, 128, 130),
    "masked-cnn": (1, 128, 130),
    "gap-cnn": (1, 128, 130),
    "choi-cnn": (1, 80, 431),
    "stft-cnn": (2, 513, 259),
    "musicnn-probe": (1, 96, 187),
}


@pytest.mark.parametrize("arch", list(study.ARCHS))
def test_every_model_declares_its_input_and_maps_it_to_logits(arch):
    torch.manual_seed(0)
    labels = ["drums", "bass", "vocals", "other"] if arch == "choi-cnn" else ["a", "b", "c"]
    m = study.create(arch, labels, multilabel=arch == "choi-cnn")
    shape = study.input_shape(m)
    assert shape == EXPECTED_SHAPES[arch]
    # the declared front end produces exactly that shape from patch_seconds of audio
    secs = study.ARCHS[arch].patch_seconds
    x = m.front_end(torch.randn(1, int(round(secs * m.front_end.sample_rate))) * 0.1)
    assert tuple(x.shape[1:]) == shape
    m.net.eval()
    out = m.net(torch.randn(3, *shape))
    assert out.shape == (3, len(labels))
    assert torch.isfinite(out).all()
    # every listed layer resolves to a module, names are readable
    for name, info in m.layers.items():
        assert m.module(name) is m.net.get_submodule(info.module)
        assert name == name.strip() and "." not in name and "_" not in name
    assert "output" in m.layers


def test_stft_cnn_real_only_takes_one_channel():
    m = study.create("stft-cnn", ["a", "b"], real_only=True)
    assert m.front_end.kind == "stft_real" and study.input_shape(m) == (1, 513, 259)
    assert m.net(torch.randn(2, 1, 513, 259)).shape == (2, 2)


def test_layer_names_of_the_masked_and_gap_models():
    masked = study.create("masked-cnn", ["a", "b"])
    assert list(masked.layers) == ["input norm", "conv 1", "conv 2", "conv 2 (masked)", "dense 1", "output"]
    assert isinstance(masked.module("conv 2 (masked)"), InterpretableMask)
    vanilla = study.create("vanilla-cnn", ["a", "b"])
    assert "conv 2 (masked)" not in vanilla.layers
    assert not any(isinstance(mod, InterpretableMask) for mod in vanilla.net.modules())
    gap = study.create("gap-cnn", ["a", "b"])
    assert gap.layers["CAM maps"].module == "deconv_relu" and gap.layers["output"].module == "fc"


@pytest.mark.parametrize("arch", list(study.ARCHS))
def test_save_load_round_trip_gives_the_same_outputs(tmp_path, arch):
    torch.manual_seed(1)
    m = study.create(arch, ["x", "y"])
    if arch == "musicnn-probe":  # standardises its frozen features, not the input
        m.net.head.scale.fit(torch.randn(8, m.net.head.scale.mean.numel()) * 2 + 3)
    else:
        m.net.norm.fit(torch.full((m.front_end.channels,), 3.0), torch.full((m.front_end.channels,), 2.0))
    registry.save(m, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["architecture"]["family"] == arch.replace("-probe", "_probe")
    assert not list(tmp_path.glob("m/*.pt")) and not list(tmp_path.glob("m/*.pkl"))
    back = registry.load(tmp_path / "m")
    x = torch.randn(2, *study.input_shape(m))
    m.net.eval()
    assert torch.equal(back.net(x), m.net(x))
    norm = "head.scale" if arch == "musicnn-probe" else "norm"
    assert torch.equal(back.net.get_submodule(norm).mean, m.net.get_submodule(norm).mean)
    assert back.front_end == m.front_end and back.patch_frames == m.patch_frames


def test_weights_that_do_not_match_the_json_give_one_clear_message(tmp_path):
    m = study.create("vanilla-cnn", ["a", "b", "c"])
    registry.save(m, tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["architecture"]["params"]["n_labels"] = 5
    meta["labels"] = list("abcde")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MusicLensError) as err:
        registry.load(tmp_path / "m")
    msg = str(err.value)
    assert "don't fit" in msg and "dense2.weight" in msg and "(3, 64) != (5, 64)" in msg
    # a family swapped under the same weights: unknown/missing tensors are named
    meta["architecture"] = {"family": "gap-cnn", "params": dict(meta["architecture"]["params"], n_labels=3)}
    meta["labels"] = ["a", "b", "c"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match=r"missing .* tensors"):
        registry.load(tmp_path / "m")


def test_too_short_patches_are_refused_with_the_minimum():
    with pytest.raises(ParameterError, match="too small"):
        study.create("vanilla-cnn", ["a", "b"], patch_seconds=0.2)
    with pytest.raises(ParameterError, match="at least 24 bins × 160 frames"):
        study.create("choi-cnn", ["a", "b"], patch_seconds=2.0)
    with pytest.raises(ParameterError, match="at least two classes"):
        study.create("vanilla-cnn", ["only"])
    with pytest.raises(ParameterError, match="unknown architecture"):
        study.create("resnet", ["a", "b"])


# ----------------------------------------------------------------------------- Zhang's mask
def test_mask_template_against_a_hand_computed_example():
    # one 4 × 8 map (F × T), maximum 5 at (f=1, t=2); radius fractions 0.25 -> r_f = 1, r_t = 2
    x = torch.zeros(1, 1, 4, 8)
    x[0, 0, 1, 2] = 5.0
    x[0, 0, 1, 3] = 2.0
    x[0, 0, 2, 3] = 3.0
    x[0, 0, 1, 4] = 4.0
    x[0, 0, 3, 7] = -2.0  # negative input far away: x·T = (-2)(-1) = 2
    t = mask_templates(x, radius_f=0.25, radius_t=0.25)[0, 0]
    assert t[1, 2] == pytest.approx(1.0)  # d = 0
    assert t[1, 3] == pytest.approx(0.5)  # d = 1/2
    assert t[1, 4] == pytest.approx(0.0, abs=1e-7)  # d = 2/2 = 1: on the ellipse
    assert t[2, 2] == pytest.approx(0.0, abs=1e-7)  # d = 1/1
    assert t[2, 3] == pytest.approx(1 - math.sqrt(1 + 0.25))  # d = sqrt(1² + (1/2)²)
    assert t[0, 0] == pytest.approx(1 - math.sqrt(1 + 1))  # d = sqrt(1 + 1)
    assert t[3, 2] == pytest.approx(-1.0)  # d = 2 -> 1 - 2 = -1
    assert t[3, 7] == pytest.approx(-1.0)  # floored at -1
    out = InterpretableMask(0.25, 0.25)(x)[0, 0]
    assert out[1, 2] == pytest.approx(5.0)
    assert out[1, 3] == pytest.approx(1.0)  # 2 × 0.5
    assert out[1, 4] == pytest.approx(0.0)  # 4 × 0
    assert out[2, 3] == pytest.approx(0.0)  # 3 × (-0.118) -> ReLU
    assert out[3, 7] == pytest.approx(2.0)  # max(x ∘ T, 0) keeps (-2)(-1)


def test_mask_centres_each_item_and_filter_separately_and_breaks_ties_first():
    x = torch.zeros(2, 2, 3, 3)
    x[0, 0, 0, 0] = 1.0
    x[0, 1, 2, 2] = 1.0
    x[1, 0, 1, 1] = 1.0
    x[1, 1] = 7.0  # all equal: the first cell (0, 0) is the centre
    t = mask_templates(x, radius_f=1 / 3, radius_t=1 / 3)  # r = 1 cell
    assert t[0, 0, 0, 0] == 1 and t[0, 1, 2, 2] == 1 and t[1, 0, 1, 1] == 1 and t[1, 1, 0, 0] == 1
    assert t[0, 0, 2, 2] == -1 and t[1, 1, 2, 2] == -1


def test_mask_does_not_differentiate_the_centre_but_passes_gradients():
    x = torch.rand(1, 1, 6, 6, requires_grad=True)
    out = InterpretableMask()(x)
    out.sum().backward()
    t = mask_templates(x.detach())
    assert torch.allclose(x.grad, t * (x.detach() * t > 0))


def test_zhang_filter_loss_against_a_hand_computed_example():
    # 1 × 2 maps; templates: T⁻ = τ[-1,-1], T_(0,0) = τ[1,-1], T_(0,1) = τ[-1,1], τ = 0.5/2
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])  # B = 2 images, K = 1
    a = 1 / (1 + math.exp(-0.5))  # p(x1 | T_(0,0)) = softmax([0.25, -0.25])[0]
    # p(x) = 1/2 for both; MI = 1/3 [0 + 2 (a log 2a + (1-a) log 2(1-a))]
    mi = (2 / 3) * (a * math.log(2 * a) + (1 - a) * math.log(2 * (1 - a)))
    loss = zhang_filter_loss(x, radius_f=0.25, radius_t=0.25)
    assert float(loss) == pytest.approx(-mi, rel=1e-5)


def test_zhang_filter_loss_is_zero_for_identical_maps_and_negative_for_localised_ones():
    same = torch.rand(1, 3, 8, 8).expand(4, 3, 8, 8).contiguous()
    assert float(zhang_filter_loss(same)) == pytest.approx(0.0, abs=1e-7)
    blobs = torch.zeros(4, 1, 8, 8)
    for i, (f, t) in enumerate([(1, 1), (1, 6), (6, 1), (6, 6)]):
        blobs[i, 0, f, t] = 20.0
    spread = torch.full((4, 1, 8, 8), 20.0 / 64)  # same energy, no location
    assert float(zhang_filter_loss(blobs, tau=0.05)) < float(zhang_filter_loss(spread, tau=0.05)) - 0.1
    assert localisation(blobs).item() == pytest.approx(1.0)
    assert localisation(spread).item() < 0.3


def test_masked_cnn_filter_loss_needs_a_training_forward():
    m = study.create("masked-cnn", ["a", "b"], filter_tau=0.05)
    x = torch.randn(4, *study.input_shape(m))
    m.net.eval()
    m.net(x)
    with pytest.raises(ParameterError, match="training mode"):
        m.net.filter_loss()
    m.net.train()
    m.net(x)
    loss = m.net.filter_loss()
    loss.backward()
    assert m.net.conv2.weight.grad is not None and m.net.conv2.weight.grad.abs().sum() > 0
    with pytest.raises(ParameterError, match="masked-cnn"):
        study.create("vanilla-cnn", ["a", "b"]).net.filter_loss()


# ----------------------------------------------------------------------------- GAP and Choi
def test_gap_cnn_logits_are_the_mean_of_the_class_activation_map_plus_bias():
    torch.manual_seed(3)
    m = study.create("gap-cnn", ["a", "b", "c"])
    m.net.eval()
    x = torch.randn(2, *study.input_shape(m))
    acts = {}
    h = m.module("CAM maps").register_forward_hook(lambda _m, _i, out: acts.setdefault("A", out))
    try:
        logits = m.net(x)
    finally:
        h.remove()
    a = acts["A"]
    assert a.shape == (2, 64, 32, 32)
    fc = m.module("output")
    cam = torch.einsum("ck,bkft->bcft", fc.weight, a)
    assert torch.allclose(cam.mean(dim=(-2, -1)) + fc.bias, logits, atol=1e-5)
    from musiclens.core.interpret.cam import cam as cam_fn

    ours = cam_fn(m, x, target=1, layer="CAM maps")
    assert torch.allclose(ours, cam[:, 1], atol=1e-5)


def test_choi_cnn_l2_penalty_and_output_activation():
    torch.manual_seed(0)
    m = study.create("choi-cnn", ["drums", "bass", "vocals", "other"], multilabel=True)
    net = m.net
    expect = 1e-4 * sum(float(l.weight.detach().pow(2).sum()) for l in (net.dense1, net.dense2, net.out))
    assert float(net.regularisation().detach()) == pytest.approx(expect, rel=1e-6)
    assert net.dense1.out_features == 128 and net.dense2.out_features == 65
    assert [b.conv.out_channels for b in (net.block1, net.block2, net.block3, net.block4)] == [32, 64, 64, 128]
    logits = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    assert torch.allclose(m.probabilities(logits), torch.sigmoid(logits))
    mood = study.create("choi-cnn", ["Q1", "Q2", "Q3", "Q4"])
    assert torch.allclose(mood.probabilities(logits).sum(), torch.tensor(1.0))
