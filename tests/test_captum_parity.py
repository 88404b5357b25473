"""Captum's attributions equal the hand-written ones they replaced (issue 16).

The references below are the algorithms MusicLens used before it took Captum's
(``git log -p musiclens/core/interpret/saliency.py cam.py``), kept here, small, only to show
the two agree: the plain gradient, SmoothGrad on the same noise, Integrated Gradients
(Gauss–Legendre, accumulated in float64) and Grad-CAM read through forward hooks. They are
compared with the method table's functions, which now call Captum, on the bundled MusiCNN
(``MSD_musicnn``) and on a tiny CNN.

Tolerance: ``max |ours − Captum| / max |Captum| ≤ 1e-5`` (the difference relative to the
map's largest value; per-element relative errors are meaningless where the map crosses 0).
Known difference, corrected in the glue and checked here: Captum's ``riemann_trapezoid``
weights sum to ``(n − 1)/n`` instead of 1, so its trapezoid IG is scaled by ``n/(n − 1)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpret_nets import features, logmel_cnn, signal
from musiclens.core.interpret import integrated_gradients_split as split
from musiclens.core.interpret import methods, saliency
from musiclens.core.interpret._common import class_scores, eval_mode, target_weights
from musiclens.core.interpret.hooks import as_map, capture

TOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# ------------------------------------------------------------------ the old algorithms


def _score_grad(m, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad(), eval_mode(m.net):
        (g,) = torch.autograd.grad(class_scores(m, m.net(xi), w).sum(), xi)
    return g


def ref_gradient(m, x, target):
    return _score_grad(m, x, target_weights(m, target, x.shape[0]))


def ref_smoothgrad(m, x, target, *, n_samples, noise_level, seed):
    """Mean gradient over x + N(0, σ²), σ = noise_level·(max − min), the noise drawn as
    Captum draws it (one ``torch.normal`` of all the copies, after ``manual_seed``)."""
    w = target_weights(m, target, 1)
    sigma = noise_level * float(x.max() - x.min())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noise = torch.normal(0, torch.tensor(sigma).repeat((n_samples,) + tuple(x.shape[1:])))
    noisy = x.repeat_interleave(n_samples, dim=0) + noise
    return _score_grad(m, noisy, w.expand(n_samples, -1)).mean(0, keepdim=True)


def ref_integrated_gradients(m, x, x0, target, *, steps, rule="gausslegendre"):
    """(x − x₀) ⊙ Σ wᵢ ∇f(x₀ + αᵢ(x − x₀)), float64 accumulation."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, weights / 2
    else:  # trapezoid with `steps` intervals
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[0] = weights[-1] = 0.5 / steps
    w = target_weights(m, target, 1)
    acc = torch.zeros(x.shape, dtype=torch.float64)
    for a, wt in zip(alphas, weights, strict=True):
        acc += wt * _score_grad(m, x0 + float(a) * (x - x0), w).double()
    return (acc * (x - x0).double()).float()


def ref_grad_cam(m, x, target, layer):
    """Σ_k mean(∂y/∂A_k) A_k with A read by a forward hook (the old cam.grad_cam)."""
    w = target_weights(m, target, x.shape[0])
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad(), eval_mode(m.net), capture(m, layer, detach=False) as acts:
        score = class_scores(m, m.net(xi), w)
        a = acts[layer]
        (g,) = torch.autograd.grad(score.sum(), a)
    a, g = as_map(a.detach()), as_map(g)
    return torch.einsum("bk,bkft->bft", g.mean(dim=(2, 3)), a)


# ------------------------------------------------------------------ the models


@pytest.fixture(scope="module")
def musicnn():
    from musiclens.core.models import registry

    torch.set_num_threads(1)
    m = registry.load("MSD_musicnn", device="cpu")
    rng = np.random.default_rng(0)
    t = np.arange(m.patch_samples) / m.sample_rate
    y = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    x = m.front_end(torch.tensor(y, dtype=torch.float32)[None])[..., : m.patch_frames]
    return m, x, "rock"


@pytest.fixture(scope="module")
def tiny():
    m = logmel_cnn()
    return m, features(m, signal(0.4)), 1


MODELS = ["musicnn", "tiny"]


@pytest.mark.parametrize("which", MODELS)
def test_gradient_equals_captum_saliency(which, request):
    m, x, target = request.getfixturevalue(which)
    ours, captum = ref_gradient(m, x, target), methods.get("gradient")(m, x, target=target)
    r = rel(ours, captum)
    print(f"gradient {which}: max relative difference {r:.2e}")
    assert captum.abs().max() > 0 and r <= TOL


@pytest.mark.parametrize("which", MODELS)
def test_smoothgrad_equals_captum_noise_tunnel(which, request):
    m, x, target = request.getfixturevalue(which)
    ours = ref_smoothgrad(m, x, target, n_samples=8, noise_level=0.15, seed=3)
    captum = methods.get("smoothgrad")(m, x, target=target, n_samples=8, noise_level=0.15, seed=3)
    r = rel(ours, captum)
    print(f"smoothgrad {which}: max relative difference {r:.2e}")
    assert r <= TOL
    assert rel(captum, methods.get("gradient")(m, x, target=target)) > 1e-3  # the noise did something


@pytest.mark.parametrize("which", MODELS)
def test_integrated_gradients_equal_captum(which, request):
    m, x, target = request.getfixturevalue(which)
    x0 = saliency.baseline_tensor(m, x, "silence")
    ours = ref_integrated_gradients(m, x, x0, target, steps=16)
    info: dict = {}
    with split.enabled(False):  # Captum's path (MusiCNN's split path: tests/test_ig_split.py)
        captum = methods.get("integrated-gradients")(m, x, target=target, steps=16, info=info)
    r = rel(ours, captum)
    print(f"integrated gradients {which}: max relative difference {r:.2e}, completeness {info['relative_error']}")
    assert r <= TOL
    assert info["steps"] == 16 and torch.isfinite(info["completeness_error"]).all()


def test_trapezoid_integrated_gradients_are_rescaled_to_the_trapezoid_rule(tiny):
    """Captum's riemann_trapezoid weights sum to (n − 1)/n; the glue scales by n/(n − 1)."""
    m, x, target = tiny
    x0 = saliency.baseline_tensor(m, x, "silence")
    ours = ref_integrated_gradients(m, x, x0, target, steps=6, rule="trapezoid")
    got = saliency.integrated_gradients(m, x, target=target, steps=6, method="trapezoid").attributions
    assert rel(ours, got) <= TOL
    assert rel(ours * 6 / 7, got) > 0.1  # what Captum's own weights would give


@pytest.mark.parametrize(
    "which, layer",
    [
        ("musicnn", "front end / timbral 7x38 / conv"),  # 2-D (B, K, F_l, T_l)
        ("musicnn", "mid end / conv 2"),  # 1-D (B, K, T_l)
        ("tiny", "conv 2"),
    ],
)
def test_grad_cam_equals_captum_layer_grad_cam(which, layer, request):
    m, x, target = request.getfixturevalue(which)
    ours = ref_grad_cam(m, x, target, layer)
    captum = methods.get("grad-cam")(m, x, target=target, layer=layer)
    r = rel(ours, captum)
    print(f"grad-cam {which} {layer}: max relative difference {r:.2e}")
    assert captum.shape == ours.shape and r <= TOL


def test_the_window_starts_without_importing_captum(tmp_path):
    """Captum costs a few tenths of a second to import: the window's start does not pay it
    (the method table and the panels read names only; Captum is imported on the first map)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import musiclens.app.window as w\n"
        "assert 'captum' not in sys.modules, 'importing the window imported captum'\n"
        "win = w.MainWindow(); win.show(); app.processEvents()\n"
        "assert 'captum' not in sys.modules, 'showing the window imported captum'\n"
        "from musiclens.core.interpret import methods\n"
        "methods.get('integrated-gradients'); [m.options for m in methods.METHODS]\n"
        "assert 'captum' not in sys.modules, 'reading the method table imported captum'\n"
        "win.close(); print('ok')\n"
    )
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        MUSICLENS_SETTINGS=str(tmp_path / "s.ini"),
        MUSICLENS_RECOVERY=str(tmp_path / "r.json"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        MUSICLENS_CACHE=str(tmp_path / "cache"),
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
