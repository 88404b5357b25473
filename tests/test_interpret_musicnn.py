"""The interpretation engine unchanged on the real bundled MusiCNN (MTT weights).

One 3 s patch of a synthetic chord; kept small (a few seconds on one core).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpret_nets import signal
from musiclens.core.interpret import auralise, cam, deconv, dream, saliency, similarity
from musiclens.core.interpret.hooks import activations, active_hooks
from musiclens.core.interpret.maps import upsample
from musiclens.core.models import available, load

pytestmark = pytest.mark.skipif(
    "MTT_musicnn" not in available(), reason="the bundled MTT_musicnn model is not in resources/models"
)

TIMBRAL = "front end / timbral 7x38"


@pytest.fixture(scope="module")
def mtt():
    return load("MTT_musicnn")


@pytest.fixture(scope="module")
def chord():
    return signal(3.0, freqs=(220.0, 277.2, 329.6, 440.0), sr=16000)


@pytest.fixture(scope="module")
def x(mtt, chord):
    return mtt.front_end(torch.from_numpy(chord)[None])[..., :187]  # (1, 1, 96, 187)


def test_activations_and_grad_cam_shapes(mtt, x):
    acts = activations(mtt, x, [f"{TIMBRAL} / conv", "mid end / conv 2", "back end / penultimate"])
    assert acts[f"{TIMBRAL} / conv"].shape == (1, 204, 59, 187)
    assert acts["mid end / conv 2"].shape == (1, 64, 187)
    heat = cam.grad_cam(mtt, x, layer=f"{TIMBRAL} / feature maps", target="piano")
    assert heat.shape == (1, 59, 187) and torch.isfinite(heat).all() and heat.abs().max() > 0
    assert upsample(heat, (96, 187)).shape == (1, 96, 187)
    mid = cam.grad_cam_pp(mtt, x, layer="mid end / conv 2", target="piano", relu=True)
    assert mid.shape == (1, 1, 187) and mid.min() >= 0
    assert active_hooks(mtt.net) == 0


def test_integrated_gradients_completeness_on_musicnn(mtt, x):
    res = saliency.integrated_gradients(mtt, x, target="piano", steps=8, batch_size=8)
    diff = float(res.score[0] - res.baseline_score[0])
    print(
        f"IG MTT_musicnn 'piano' 8 steps: f(x)-f(silence)={diff:.4f} "
        f"error={float(res.completeness_error[0]):.4f} relative={float(res.relative_error[0]):.3f}"
    )
    assert abs(diff) > 0.1
    assert float(res.relative_error[0]) < 0.1


def test_auralise_and_deconv_timbral_filter(mtt, x):
    y22 = signal(3.0, freqs=(220.0, 277.2, 329.6, 440.0), sr=22050)
    # the filter that responds most to this chord
    act = activations(mtt, x, f"{TIMBRAL} / conv")[f"{TIMBRAL} / conv"]
    k = int(act.clamp_min(0).mean(dim=(0, 2, 3)).argmax())
    out = auralise.auralise_filter(mtt, y22, sample_rate=22050, layer=f"{TIMBRAL} / conv", filter=k)
    assert out.sample_rate == 22050 and out.audio.shape == (1, len(y22))
    assert np.isfinite(out.audio).all() and np.sqrt(np.mean(out.audio**2)) > 1e-3
    d = deconv.deconv(mtt, x, layer=f"{TIMBRAL} / conv", filter=k)
    assert d.shape == x.shape and d.abs().max() > 0
    # from its strongest position only, the projection is the filter's 38 bands x 7 frames
    one = deconv.deconv(mtt, x, layer=f"{TIMBRAL} / conv", filter=k, keep="max")[0, 0]
    rows = (one.abs().sum(1) > 0).nonzero().flatten()
    cols = (one.abs().sum(0) > 0).nonzero().flatten()
    assert 1 <= len(rows) <= 38 and int(rows.max() - rows.min()) < 38
    assert 1 <= len(cols) <= 7 and int(cols.max() - cols.min()) < 7


def test_similarity_curve_over_all_layers(mtt, x):
    curve = similarity.layer_similarity(mtt, x, x)
    assert len(curve.layers) == len(mtt.layers) - 1
    np.testing.assert_allclose(curve.curve("pearson"), 1.0, atol=1e-6)
    np.testing.assert_allclose(curve.curve("nmse"), 0.0, atol=1e-10)
    cka = curve.curve("cka")
    has_positions = np.isfinite(cka)
    np.testing.assert_allclose(cka[has_positions], 1.0, atol=1e-6)
    assert (curve.curve("cka_baseline")[has_positions] < 0.9).all()


def test_dream_on_musicnn(mtt, chord):
    steps = list(dream.dream(mtt, chord, target="piano", minus="others", steps=3, lr=0.1))
    print(f"dream MTT_musicnn piano-minus-others: {steps[0].objective:.3f} -> {steps[-1].objective:.3f}")
    assert steps[-1].objective > steps[0].objective
    assert steps[-1].audio.shape == chord.shape and np.isfinite(steps[-1].audio).all()


def test_sanity_cascade_on_musicnn_top_layers(mtt, x):
    from musiclens.core.interpret import sanity

    order = sanity.cascade_layers(mtt)
    assert order[0] == "back_end.output" and order[-1] == "input_bn"
    steps = sanity.cascading_randomisation(mtt, x, method="gradient", target="piano", layers=order[:3])
    assert [s.layer for s in steps] == ["", "output", "back end / penultimate", "back end / dense"]
    for s in steps:
        print(
            f"sanity MTT_musicnn gradient step {s.step} {s.layer or '(trained)'}: "
            f"spearman {s.spearman:.3f} ssim {s.ssim:.3f}"
        )
    assert steps[-1].spearman < 0.9
