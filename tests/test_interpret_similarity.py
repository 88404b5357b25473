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
    a = torch.randn(1, 5, 4, 6, generator=g)  # 24 positions x 5 channels
    b = torch.randn(1, 3, 4, 6, generator=g)  # 24 positions x 3 channels
    x = a[0].reshape(5, -1).T.double()
    y = b[0].reshape(3, -1).T.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = x @ x.T, y @ y.T

    def hsic(p, q):
        return torch.trace(p @ h @ q @ h)

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


# ---------------------------------------------------------------- mse_max, debiased CKA


def test_mse_max_is_normalised_by_the_pairs_maximum():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[2.0, 1.0, 4.0, 8.0]])
    # s = 8: (a-b)/8 = (-1, 1, -1, -4)/8 -> mean of squares = (1+1+1+16)/64/4
    assert float(sim.mse_max(a, b)) == pytest.approx(19 / 256)
    assert float(sim.mse_max(b, a)) == pytest.approx(19 / 256)  # symmetric, unlike nmse
    assert float(sim.mse_max(a, 10.0 * a)) == pytest.approx(float(sim.mse_max(0.1 * a, a)))  # scale-free
    assert float(sim.mse_max(a, -a)) == pytest.approx(((2 / 4) ** 2 + 1 + (6 / 4) ** 2 + 4) / 4)
    # the bound 4 is reached only for A = -B at the maximum everywhere
    assert float(sim.mse_max(torch.ones(1, 5), -torch.ones(1, 5))) == pytest.approx(4.0)
    z = torch.zeros(1, 3)
    assert float(sim.mse_max(z, z)) == 0.0
    g = torch.Generator().manual_seed(3)
    r = sim.mse_max(torch.randn(50, 20, generator=g), torch.randn(50, 20, generator=g))
    assert ((r >= 0) & (r <= 4)).all() and (r > 0).all()


def _hsic_unbiased_gram(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) eq. 5, straight from the n x n Gram matrices."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    return float(
        (
            np.trace(kt @ lt)
            + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * one @ kt @ lt @ one
        )
        / (n * (n - 3))
    )


def test_unbiased_hsic_matches_the_gram_matrix_formula():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 3)) + 0.5  # uncentred on purpose: the estimator
    y = rng.standard_normal((9, 2)) * 2.0  # is implemented in feature space
    got = sim._hsic_unbiased(torch.from_numpy(x)[None], torch.from_numpy(y)[None])
    assert float(got) == pytest.approx(_hsic_unbiased_gram(x @ x.T, y @ y.T), rel=1e-10)


def test_debiased_cka_matches_the_gram_formula_and_rotations_give_one():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1, 5, 3, 4, generator=g)  # 12 positions x 5 channels
    b = torch.randn(1, 2, 3, 4, generator=g)
    x = a[0].reshape(5, -1).T.double().numpy()
    y = b[0].reshape(2, -1).T.double().numpy()
    x, y = x - x.mean(0), y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    want = _hsic_unbiased_gram(k, l) / np.sqrt(_hsic_unbiased_gram(k, k) * _hsic_unbiased_gram(l, l))
    assert float(sim.debiased_cka(a, b)) == pytest.approx(want, rel=1e-9)
    # debiased < plain for unrelated random maps with few positions (the bias it removes)
    assert float(sim.debiased_cka(a, b)) < float(sim.linear_cka(a, b))
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    rotated = torch.einsum("kj,bjft->bkft", q, a) * 0.3 - 1.0
    assert float(sim.debiased_cka(a, rotated)) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ParameterError, match="at least 4 positions"):
        sim.debiased_cka(torch.randn(1, 3, 1, 3), torch.randn(1, 3, 1, 3))


def test_debiased_cka_baseline_is_near_zero_and_below_plain_baseline():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(1, 8, 4, 10, generator=g)
    b = a + 0.3 * torch.randn(1, 8, 4, 10, generator=g)
    base = float(sim.cka_permutation_baseline(a, b, n_permutations=20, debiased=True))
    plain = float(sim.cka_permutation_baseline(a, b, n_permutations=20))
    assert abs(base) < 0.1 and plain > base + 0.05
    assert float(sim.debiased_cka(a, b)) > 0.8


def test_layer_similarity_with_the_new_metrics_and_pairs():
    m = logmel_cnn()
    loud = signal(0.5, freqs=(300.0, 600.0), seed=1)
    quiet = 0.05 * signal(0.5, freqs=(2500.0, 3100.0), seed=2)
    xs = [features(m, s) for s in (loud + quiet, loud, quiet)]
    c = sim.layer_similarity(m, xs[0], xs[1], metrics=sim.METRICS, n_permutations=4)
    assert set(c.values) == set(sim.METRICS) | {"cka_baseline", "cka_debiased_baseline"}
    conv = c.layers.index("conv 2")
    assert 0 < c.curve("mse_max")[conv] < 4
    assert c.curve("cka_debiased")[conv] > c.curve("cka_debiased_baseline")[conv]
    assert np.isnan(
        sim.layer_similarity(m, xs[0], xs[1], layers=["output"], metrics=["cka_debiased"]).curve("cka_debiased")[0]
    )
    # default metrics unchanged for existing callers
    assert set(sim.layer_similarity(m, xs[0], xs[1], n_permutations=0).values) == set(sim.DEFAULT_METRICS)
    # pairwise = the pair-by-pair function, row for row
    pw = sim.pairwise_similarity(m, xs, metrics=sim.METRICS, n_permutations=4)
    assert sim.all_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    for row, (i, j) in enumerate(sim.all_pairs(3)):
        one = sim.layer_similarity(m, xs[i], xs[j], metrics=sim.METRICS, n_permutations=4)
        for k in one.values:
            np.testing.assert_allclose(pw.values[k][row], one.values[k][0], rtol=1e-12, equal_nan=True)
    with pytest.raises(ParameterError, match="no pairs"):
        sim.pairwise_similarity(m, xs[:1])
