"""MusiCNN / VGG port: architecture facts, padding, pooling order, weights, patching."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclens.core import tagging
from musiclens.core.errors import ParameterError
from musiclens.core.features import musicnn_frontend
from musiclens.core.models import registry
from musiclens.core.models.musicnn import InterleavedTimePool, build_musicnn, build_vgg

REPO = Path(__file__).resolve().parents[1]
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")


@pytest.fixture(scope="module")
def mtt():
    return registry.load("MTT_musicnn")


def test_bundled_models_are_listed():
    assert set(MODELS) <= set(registry.available())


@pytest.mark.parametrize("name", MODELS)
def test_model_json_and_weights(name):
    folder = REPO / "resources" / "models" / name
    meta = json.loads((folder / "model.json").read_text())
    assert meta["front_end"] == musicnn_frontend().to_dict()
    assert meta["patch_frames"] == 187 and meta["multilabel"] is True
    assert len(meta["labels"]) == 50 and len(set(meta["labels"])) == 50
    prov = meta["provenance"]
    assert prov["licence"] == "ISC" and len(prov["wheel_sha256"]) == 64
    assert (REPO / prov["licence_file"]).is_file()
    from safetensors.numpy import load_file

    stored = load_file(str(folder / "weights.safetensors"))
    net, _ = registry.build(meta["architecture"])
    state = net.state_dict()
    assert set(stored) == set(state)
    assert all(tuple(stored[k].shape) == tuple(v.shape) for k, v in state.items())
    # the TF checkpoints hold 792,079 (MusiCNN) / 607,030 (VGG) values without Adam slots
    n = sum(int(a.size) for k, a in stored.items() if not k.endswith("num_batches_tracked"))
    assert n == (792_079 if "musicnn" in name else 607_030)
    assert prov["parameters"] == n


def test_labels_start_like_musicnn(mtt):
    assert mtt.labels[:4] == ["guitar", "classical", "slow", "techno"]
    assert registry.load("MSD_musicnn").labels[:3] == ["rock", "pop", "alternative"]


def test_musicnn_shapes(mtt):
    x = torch.randn(2, 1, 96, 187)
    names = [
        "front end / timbral 7x38",
        "front end / timbral 7x67",
        "front end / temporal 128x1",
        "front end / temporal 64x1",
        "front end / temporal 32x1",
        "front end",
        "mid end / conv 1",
        "mid end / conv 2",
        "mid end / conv 3",
        "mid end",
        "back end / pool",
        "back end / penultimate",
        "output",
        "front end / timbral 7x38 / feature maps",
        "front end / timbral 7x67 / feature maps",
    ]
    out = tagging.layer_outputs(mtt, x, names)
    shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
    assert shapes["front end / timbral 7x38"] == (204, 187)
    assert shapes["front end / timbral 7x67"] == (204, 187)
    for k in (128, 64, 32):
        assert shapes[f"front end / temporal {k}x1"] == (51, 187)
    assert 2 * 204 + 3 * 51 == 408 + 153 == 561
    assert shapes["front end"] == (561, 187)
    for i in (1, 2, 3):
        assert shapes[f"mid end / conv {i}"] == (64, 187)
    assert shapes["mid end"] == (753, 187)
    assert shapes["back end / pool"] == (1506,)
    assert shapes["back end / penultimate"] == (200,)
    assert shapes["output"] == (50,)
    # valid padding in frequency: 96 - 38 + 1 and 96 - 67 + 1 rows before the max
    assert shapes["front end / timbral 7x38 / feature maps"] == (204, 59, 187)
    assert shapes["front end / timbral 7x67 / feature maps"] == (204, 30, 187)
    # the front end is the concatenation of the branches, in the original's order
    cat = torch.cat([out[n] for n in names[:5]], dim=1)
    assert torch.equal(cat, out["front end"])


def test_every_layer_resolves():
    for builder in (build_musicnn, build_vgg):
        net, layers = builder()
        assert len({layer.name for layer in layers}) == len(layers)
        for layer in layers:
            net.get_submodule(layer.module)


@pytest.mark.parametrize("kernel,before,after", [(128, 63, 64), (64, 31, 32), (32, 15, 16)])
def test_temporal_same_padding_like_tf(kernel, before, after):
    """Output frame t sees input frames t-before .. t+after (TF 'same' for even kernels)."""
    net, _ = build_musicnn()
    branch = net.front_end.get_submodule(f"temporal_{kernel}")
    assert branch.pad.padding == (before, after, 0, 0)
    with torch.no_grad():
        branch.conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 1, 187, requires_grad=True)
    branch.conv(branch.pad(x))[0, 0, 0, 100].backward()
    seen = torch.nonzero(x.grad[0, 0, 0]).flatten()
    assert seen.min().item() == 100 - before and seen.max().item() == 100 + after


def test_timbral_and_mid_end_padding_is_3_frames():
    net, _ = build_musicnn()
    assert net.front_end.timbral_38.pad.padding == (3, 3, 0, 0)
    assert net.front_end.timbral_67.conv.kernel_size == (67, 7)
    assert net.mid_end.layer1.conv.padding == (3,)
    assert net.mid_end.layer1.conv.in_channels == 561


def test_batchnorm_eps_and_eval_mode(mtt):
    bns = [m for m in mtt.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 11 and all(bn.eps == 1e-3 for bn in bns)
    assert not mtt.net.training


def test_interleaved_pool_hand_computed():
    x = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]]])  # (1, 2 rows, 3 frames)
    assert InterleavedTimePool()(x).tolist() == [[3.0, 2.0, 9.0, 6.0]]


def test_interleaved_pool_gradient_is_autograds_with_ties():
    """The fused backward (issue 20) gives autograd's gradient of amax + mean bit for bit,
    ties included (amax shares its gradient evenly among the tying frames), and a second
    derivative still flows."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 40, generator=g, dtype=torch.float64).round(decimals=1)  # many ties
    x[1, 2] = 0.0  # a whole row tying (a dead channel)
    x[0, 0, :4] = x[0, 0].max() + 1  # four frames tying for the maximum
    gout = torch.randn(3, 10, generator=g, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    (fused,) = torch.autograd.grad(InterleavedTimePool()(a), a, gout)
    b = x.clone().requires_grad_(True)
    plain = torch.stack([b.amax(dim=2), b.mean(dim=2)], dim=2).flatten(1)
    (want,) = torch.autograd.grad(plain, b, gout)
    assert torch.equal(fused, want)
    assert fused[0, 0, :4].eq(gout[0, 0] / 4 + gout[0, 1] / 40).all()
    seconds = []
    for pool in (InterleavedTimePool(), lambda t: torch.stack([t.amax(dim=2), t.mean(dim=2)], dim=2).flatten(1)):
        c = x.clone().requires_grad_(True)
        (first,) = torch.autograd.grad(pool(c).square().sum(), c, create_graph=True)
        seconds.append(torch.autograd.grad(first.sum(), c)[0])
    assert torch.allclose(seconds[0], seconds[1], rtol=1e-12, atol=1e-12)


def test_residual_connections(mtt):
    x = torch.randn(1, 1, 96, 187)
    out = tagging.layer_outputs(
        mtt, x, ["mid_end.layer1", "mid_end.layer2", "mid_end.layer2.bn", "mid_end.layer3", "mid_end.layer3.bn"]
    )
    assert torch.allclose(out["mid_end.layer2"], out["mid_end.layer2.bn"] + out["mid_end.layer1"])
    assert torch.allclose(out["mid_end.layer3"], out["mid_end.layer3.bn"] + out["mid_end.layer2"])


def test_vgg_pool_shapes():
    m = registry.load("MTT_vgg")
    layers = [f"conv {i} / pool" for i in range(1, 6)]
    out = tagging.layer_outputs(m, torch.randn(1, 1, 96, 187), layers + ["output"])
    assert [tuple(out[k].shape[1:]) for k in layers] == [
        (128, 48, 92),
        (128, 24, 46),
        (128, 12, 23),
        (128, 6, 11),
        (128, 1, 2),
    ]
    assert tuple(out["output"].shape) == (1, 50)


def test_frames_to_patches_drops_trailing_partial():
    x = torch.arange(400, dtype=torch.float32).reshape(1, 1, 400).expand(1, 96, 400)[None]
    p = tagging.frames_to_patches(x, length=187)
    assert p.shape == (2, 1, 96, 187)
    assert p[1, 0, 0, 0].item() == 187 and p[1, 0, 0, -1].item() == 373
    assert tagging.frames_to_patches(x, length=187, hop=100).shape[0] == 3  # 0, 100, 200
    with pytest.raises(ParameterError, match="fewer than one patch"):
        tagging.frames_to_patches(x[..., :186], length=187)


def test_audio_to_patches_counts(mtt):
    # musicnn's frames: 1 + n // 256; 3 s -> 188 frames -> 1 patch, 6 s -> 376 -> 2
    for seconds, n in ((3.0, 1), (6.0, 2), (30.0, 10)):
        y = np.zeros(int(seconds * 16000), dtype=np.float32)
        assert tagging.audio_to_patches(mtt, y).shape == (n, 1, 96, 187)
    with pytest.raises(ParameterError, match="needs at least"):
        tagging.audio_to_patches(mtt, np.zeros(16000, dtype=np.float32))


def test_taggram_top_is_mean_over_patches():
    probs = np.array([[0.1, 0.9, 0.5], [0.3, 0.1, 0.6]], dtype=np.float32)
    tg = tagging.Taggram(["a", "b", "c"], probs, np.array([0.0, 2.992]), 2.992)
    assert [t for t, _ in tg.top()] == ["c", "b", "a"]
    assert tg.top(1)[0][1] == pytest.approx(0.55)
    d = tg.to_dict(top=2)
    assert d["tags"] == ["a", "b", "c"] and len(d["taggram"]) == 2 and len(d["top"]) == 2


def test_dense_matrix(mtt):
    x = torch.randn(2, 1, 96, 187)
    d = tagging.dense_matrix(mtt, x)
    assert tuple(d["W"].shape) == (2, 753, 187)
    fe = tagging.layer_outputs(mtt, x, ["front end", "mid end / conv 3"])
    assert torch.equal(d["W"][:, :561], fe["front end"])
    assert torch.equal(d["W"][:, 689:], fe["mid end / conv 3"])
    assert torch.allclose(d["energy"], (d["W"] ** 2).mean(-1))
    groups = d["row_groups"]
    assert groups[0][1] == 0 and groups[-1][2] == 753
    assert all(a[2] == b[1] for a, b in itertools.pairwise(groups))
    with pytest.raises(ParameterError):
        tagging.dense_matrix(registry.load("MTT_vgg"), x)


def test_core_never_imports_tensorflow():
    for path in (REPO / "musiclens").rglob("*.py"):
        text = path.read_text()
        assert "import tensorflow" not in text and "from tensorflow" not in text, path


@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn"])
def test_fast_front_end_equals_the_layer_by_layer_path(name):
    """Pooling before ReLU/BN (the fast path) gives the same branch outputs, also for the
    channels with negative gamma (where the max over frequency becomes a min)."""
    m = registry.load(name)
    fe = m.net.front_end
    assert sum(int((b.bn.weight < 0).sum()) for b in fe.children()) > 0
    x = torch.randn(3, 1, 96, 187) * 2 + 1
    with torch.no_grad():
        fast = fe(m.net.input_bn(x))
    # a hook on every feature-map layer forces the layer-by-layer path
    slow = tagging.layer_outputs(m, x, ["front end"] + [f"front_end.{k}.bn" for k, _ in fe.named_children()])[
        "front end"
    ]
    assert torch.allclose(fast, slow, atol=1e-5, rtol=0)


def test_inference_reduction_equals_max_and_min_over_the_conv_maps():
    """The taggram's path (no autograd: negated filters, one max, the timbral convs in TF's
    orientation) gives each branch's max over frequency where gamma >= 0 and min elsewhere,
    in a batch and patch by patch, and contiguous (batch norm rounds strided inputs apart)."""
    from musiclens.core.models.musicnn import _freq_select, _signed_max

    m = registry.load("MSD_musicnn")
    x = torch.randn(2, 1, 96, 187) * 2 + 1
    with torch.no_grad():
        z = m.net.input_bn(x)
        for br in m.net.front_end.children():
            up = br.bn.weight >= 0
            assert not bool(up.all())  # the min is exercised in every branch
            xp = br.pad(z)
            ref = _freq_select(torch.nn.functional.conv2d(xp, br.conv.weight, br.conv.bias), up)
            for out in (_signed_max(xp, br.conv.weight, br.conv.bias, up), br.select(z)):
                assert out.is_contiguous()
                torch.testing.assert_close(out, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
            one = torch.cat([_signed_max(xp[i : i + 1], br.conv.weight, br.conv.bias, up) for i in range(2)])
            torch.testing.assert_close(one, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))


@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn"])
def test_fast_front_end_gradients_equal_the_layer_by_layer_path(name):
    """The timbral branches' own backward (sparse over the selected rows, issue 20) gives the
    input and weight gradients of the hooked, layer-by-layer path, also where rows tie (a
    silent stretch: every row of a column equal, and partly tied quantised values)."""
    m = registry.load(name)
    x = torch.randn(2, 1, 96, 187) * 2 + 1
    x[:, :, :, 60:110] = 0.0
    x[1] = (x[1] * 2).round() / 2

    def grads(hooked: bool) -> tuple[torch.Tensor, torch.Tensor]:
        m.net.zero_grad()
        handles = [b.bn.register_forward_hook(lambda *a: None) for b in m.net.front_end.children()] if hooked else []
        xi = x.clone().requires_grad_(True)
        (m.net(xi) * torch.linspace(-1, 1, len(m.labels))).sum().backward()
        for h in handles:
            h.remove()
        return xi.grad, m.net.front_end.timbral_38.conv.weight.grad.clone()

    (gx, gw), (rx, rw) = grads(False), grads(True)
    m.net.zero_grad()
    assert torch.allclose(gx, rx, atol=1e-6 * float(rx.abs().max()), rtol=0)
    assert torch.allclose(gw, rw, atol=1e-4 * float(rw.abs().max()), rtol=0)


def test_predict_steps_report_the_fraction_of_patches_done(mtt):
    """The window's predict job reports a fraction per patch (issue 20: every job over 1 s
    shows progress) and returns what predict returns."""
    from musiclens.core import analyses

    y = 0.1 * np.random.default_rng(1).standard_normal(mtt.front_end.frames_to_samples(3 * mtt.patch_frames))
    y = y.astype(np.float32)
    fractions: list[float | None] = []
    result = analyses.run(analyses.predict_steps(mtt, y), lambda p: fractions.append(p.fraction))
    assert fractions == [0.0, 1 / 3, 2 / 3]
    np.testing.assert_array_equal(result.probabilities, analyses.predict(mtt, y).probabilities)
    assert result.top == analyses.predict(mtt, y).top
