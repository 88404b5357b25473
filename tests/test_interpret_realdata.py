"""Real-data tier: attributions of the bundled MusiCNN on MusiCNN's own demo clip (techno).

Skips with a reason when ../shared/data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interpret_nets  # noqa: F401  (one torch thread)
from musiclens.core import audio
from musiclens.core.interpret import cam, saliency
from musiclens.core.interpret.auralise import auralise_filter
from musiclens.core.models import available, load

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif("MTT_musicnn" not in available(), reason="MTT_musicnn not bundled"),
]
CLIP = "audio/musicnn/joram-moments_of_clarity-08-solipsism-59-88.mp3"


@pytest.fixture(scope="module")
def techno(shared_data):
    m = load("MTT_musicnn")
    y, sr = audio.load(shared_data / CLIP, sr=16000, offset=6.0, duration=3.0)
    x = m.front_end(torch.from_numpy(y)[None])[..., :187]
    return m, y, x


def test_ig_on_real_music_is_complete_and_deleting_its_top_cells_hurts_most(techno):
    m, _, x = techno
    res = saliency.integrated_gradients(m, x, target="techno", steps=8, batch_size=8)
    diff = float(res.score[0] - res.baseline_score[0])
    print(f"IG real clip 'techno': f(x)-f(silence)={diff:.3f}, relative error {float(res.relative_error[0]):.3f}")
    assert float(res.relative_error[0]) < 0.1
    # deletion check: silencing the most positively attributed cells lowers the techno logit,
    # silencing the most negatively attributed ones raises it. (Measured: at 1-3 % random
    # "holes" can hurt as much as the top cells - they are out of distribution - so the
    # comparison with random cells is made at 10 %.)
    silence = saliency.baseline_tensor(m, x, "silence")
    t = m.labels.index("techno")
    a = res.attributions.flatten()
    with torch.no_grad():
        full = float(m.net(x)[0, t])

    def drop_without(idx):
        z = x.flatten().clone()
        z[idx] = silence.flatten()[idx]
        with torch.no_grad():
            return full - float(m.net(z.view_as(x))[0, t])

    for frac in (0.03, 0.1):
        k = int(frac * x.numel())
        top, bottom = drop_without(a.topk(k).indices), drop_without((-a).topk(k).indices)
        rand = drop_without(torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:k])
        print(f"deleting {frac:.0%} cells: top-IG drop {top:.3f}, bottom-IG {bottom:.3f}, random {rand:.3f}")
        assert top > 0 > bottom
        if frac == 0.1:
            assert top > rand


def test_grad_cam_and_auralisation_on_real_music(techno):
    m, y, x = techno
    heat = cam.grad_cam(m, x, layer="front end / timbral 7x38 / feature maps", target="techno")
    assert heat.shape == (1, 59, 187) and torch.isfinite(heat).all() and heat.abs().max() > 0
    out = auralise_filter(m, y, layer="front end / timbral 7x38 / conv", filter=0, sample_rate=16000)
    assert np.isfinite(out.audio).all() and out.audio.shape == (1, len(y))
