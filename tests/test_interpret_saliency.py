"""Gradient, SmoothGrad and Integrated Gradients on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interpret_nets import features, gap_cnn, logmel_cnn, signal, stft_cnn
from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.interpret import saliency
from musiclens.core.models.registry import LoadedModel


def _linear_model() -> LoadedModel:
    """logit_c = Σ W_c ⊙ x + b_c on a (1, 16, 8) input: every attribution is known."""
    fe = FrontEnd("logmel", 8000, 256, 64, n_mels=16)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8, 2)).eval()
    return LoadedModel("linear", net, fe, ["a", "b"], 8, False, {}, {"family": "test"})


def test_gradient_of_a_linear_model_is_its_weight():
    m = _linear_model()
    x = torch.randn(2, 1, 16, 8)
    g = saliency.gradient(m, x, target="b")
    w = m.net[1].weight.detach()[1].view(1, 16, 8)
    torch.testing.assert_close(g, w.expand(2, 1, 16, 8).contiguous())
    torch.testing.assert_close(saliency.gradient(m, x, target=1, times_input=True), x * w)


def test_ig_of_a_linear_model_is_exact():
    m = _linear_model()
    x = torch.randn(1, 1, 16, 8)
    res = saliency.integrated_gradients(m, x, target=0, baseline="zeros", steps=4)
    torch.testing.assert_close(res.attributions, x * m.net[1].weight.detach()[0].view(1, 1, 16, 8))
    assert abs(float(res.completeness_error[0])) < 1e-5


@pytest.mark.parametrize(
    "make, method, steps, tol",
    [
        (logmel_cnn, "gausslegendre", 64, 0.02),
        (logmel_cnn, "trapezoid", 64, 0.02),
        (gap_cnn, "gausslegendre", 64, 0.02),
        (stft_cnn, "gausslegendre", 64, 0.02),
    ],
)
def test_ig_completeness_error_is_small(make, method, steps, tol):
    m = make()
    x = features(m, signal(0.4))
    res = saliency.integrated_gradients(m, x, target=1, steps=steps, method=method)
    diff = float(res.score[0] - res.baseline_score[0])
    assert abs(diff) > 1e-3  # the check below is not vacuous
    assert res.attributions.shape == x.shape
    print(
        f"IG {m.name} {method} {steps} steps: f(x)-f(x0)={diff:.5f} "
        f"error={float(res.completeness_error[0]):.2e} relative={float(res.relative_error[0]):.2e}"
    )
    assert float(res.relative_error[0]) < tol
    torch.testing.assert_close(res.attributions.sum() - diff, res.completeness_error[0], rtol=1e-4, atol=1e-5)


def test_ig_error_shrinks_with_more_steps():
    m = logmel_cnn()
    x = features(m, signal(0.4))
    coarse = saliency.integrated_gradients(m, x, target=0, steps=2, method="midpoint")
    fine = saliency.integrated_gradients(m, x, target=0, steps=128, method="midpoint")
    assert abs(float(fine.completeness_error[0])) < abs(float(coarse.completeness_error[0]))


def test_silence_baseline_is_the_front_end_of_zeros():
    m = logmel_cnn()
    x = features(m, signal(0.2))
    b = saliency.baseline_tensor(m, x, "silence")
    torch.testing.assert_close(b, torch.full_like(x, -100.0))
    s = stft_cnn()
    assert saliency.baseline_tensor(s, features(s, signal(0.2)), "silence").abs().max() == 0


def test_smoothgrad_with_zero_noise_is_the_gradient_and_noise_changes_it():
    m = logmel_cnn()
    x = features(m, signal(0.4))
    g = saliency.gradient(m, x, target=2)
    torch.testing.assert_close(saliency.smoothgrad(m, x, target=2, n_samples=3, noise_level=0.0), g)
    sg = saliency.smoothgrad(m, x, target=2, n_samples=8, noise_level=0.2, seed=1)
    assert sg.shape == x.shape and torch.isfinite(sg).all()
    assert not torch.allclose(sg, g)
    torch.testing.assert_close(sg, saliency.smoothgrad(m, x, target=2, n_samples=8, noise_level=0.2, seed=1))
    sq = saliency.smoothgrad(m, x, target=2, n_samples=4, noise_level=0.2, squared=True)
    assert sq.min() >= 0


def test_bad_parameters_raise_parameter_error():
    m = logmel_cnn()
    x = features(m, signal(0.2))
    with pytest.raises(ParameterError, match="no label"):
        saliency.gradient(m, x, target="jazz")
    with pytest.raises(ParameterError, match="out of range"):
        saliency.gradient(m, x, target=3)
    with pytest.raises(ParameterError, match=r"\(B, 1, 16, T\)"):
        saliency.gradient(m, torch.zeros(1, 2, 16, 10), target=0)
    with pytest.raises(ParameterError, match="method"):
        saliency.integrated_gradients(m, x, target=0, method="simpson")
