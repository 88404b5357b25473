"""Layer-wise similarity: hand-computed metric values, identical stimuli, permutation baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interpret_nets import features, gap_cnn, logmel_cnn, signal, stft_cnn
from musiclens.core.errors import ParameterError
from musiclens.core.interpret import similarity as sim


def test_metrics_on_small_hand_computed_vectors():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[2.0, 1.0, 4.0, 3.0]])
    # pearson: centred a = (-1.5, -.5, .5, 1.5), b = (-.5, -1.5, 1.5, .5): 3/5 = 0.6
    assert float(sim.pearson(a, b)) == pytest.approx(0.6)
    # cosine: 28 / 30
    assert float(sim.cosine(a, b)) == pytest.approx(28 / 30)
    # nmse: ||a-b||^2 / ||a||^2 = 4 / 30
    assert float(sim.nmse(a, b)) == pytest.approx(4 / 30)
    assert float(sim.nmse(a, a)) == 0.0
    assert np.isnan(float(sim.pearson(a, torch.ones(1, 4))))


def test_linear_cka_matches_the_hsic_formula_and_its_invariances():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 5, 4, 6, generator=g)   # 24 positions x 5 channels
    b = torch.randn(1, 3, 4, 6, generator=g)   # 24 positions x 3 channels
    x = a[0].reshape(5, -1).T.double()
    y = b[0].reshape(3, -1).T.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda p, q: torch.trace(p @ h @ q @ h)
    want = hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l))
    assert float(sim.linear_cka(a, b)) == pytest.approx(float(want), rel=1e-9)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    rotated = torch.einsum("kj,bjft->bkft", q, a) * 3.0 + 2.0
    assert float(sim.linear_cka(a, rotated)) == pytest.approx(1.0, abs=1e-9)
    assert float(sim.linear_cka(a, a)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("make", [logmel_cnn, gap_cnn, stft_cnn])
def test_identical_stimuli_are_identical_at_every_layer(make):
    m = make()
    x = features(m, signal(0.5))
    curve = sim.layer_similarity(m, x, x, n_permutations=5)
    assert curve.layers == sim.default_layers(m)
    np.testing.assert_allclose(curve.curve("pearson"), 1.0, atol=1e-9)
    np.testing.assert_allclose(curve.curve("cosine"), 1.0, atol=1e-9)
    np.testing.assert_allclose(curve.curve("nmse"), 0.0, atol=1e-12)
    np.testing.assert_allclose(curve.curve("cka"), 1.0, atol=1e-9)
    base = curve.curve("cka_baseline")
    print(f"{m.name} identical: CKA permutation baseline per layer {np.round(base, 3)}")
    assert (base < 0.9).all()


def test_mix_versus_stems():
    """A mix is more like the stem that dominates it than like the quiet one."""
    m = logmel_cnn()
    loud = signal(0.5, freqs=(300.0, 600.0), seed=1)
    quiet = 0.05 * signal(0.5, freqs=(2500.0, 3100.0), seed=2)
    mix = loud + quiet
    xm, xl, xq = (features(m, s) for s in (mix, loud, quiet))
    vs_loud = sim.layer_similarity(m, xm, xl, n_permutations=5)
    vs_quiet = sim.layer_similarity(m, xm, xq, n_permutations=5)
    for k in ("pearson", "cosine", "cka"):
        print(f"mix vs loud/quiet stem {k}: {np.round(vs_loud.curve(k), 3)} / {np.round(vs_quiet.curve(k), 3)}")
    print(f"mix vs loud/quiet stem nmse: {np.round(vs_loud.curve('nmse'), 3)} / {np.round(vs_quiet.curve('nmse'), 3)}")
    assert (vs_loud.curve("pearson") > vs_quiet.curve("pearson")).all()
    assert (vs_loud.curve("nmse") < vs_quiet.curve("nmse")).all()
    assert (vs_loud.curve("pearson") < 1.0).all()  # not identical
    assert (vs_loud.curve("cka") > vs_loud.curve("cka_baseline")).all()
    d = vs_loud.to_dict()
    assert d["layers"] == vs_loud.layers and len(d["cka"]) == len(d["layers"])


def test_dense_layers_get_nan_cka_and_bad_metric_is_refused():
    m = logmel_cnn()
    x = features(m, signal(0.3))
    c = sim.layer_similarity(m, x, x * 0.5, layers=["conv 2", "output"], metrics=["cosine", "cka"])
    assert np.isnan(c.curve("cka")[1]) and np.isfinite(c.curve("cka")[0])
    assert np.isfinite(c.curve("cosine")).all() and (c.curve("cosine") < 1.0).all()
    with pytest.raises(ParameterError, match="unknown metrics"):
        sim.layer_similarity(m, x, x, metrics=["euclid"])
