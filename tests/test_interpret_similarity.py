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
    curve = sim.layer_similarity(m, x, x)
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
    vs_loud = sim.layer_similarity(m, xm, xl)
    vs_quiet = sim.layer_similarity(m, xm, xq)
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
    # each pair has its own maximum: a batch gives the values of its pairs taken one by one
    xa = torch.stack([a[0], 0.01 * a[0]])
    xb = torch.stack([b[0], 0.01 * b[0]])
    np.testing.assert_allclose(sim.mse_max(xa, xb), [19 / 256, 19 / 256], rtol=1e-6)
    np.testing.assert_allclose(sim.mse_max(xb, xa), [19 / 256, 19 / 256], rtol=1e-6)


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
    # a batch of uncentred maps: each item its own value
    x2 = np.stack([x, rng.standard_normal((9, 3)) - 1.0])
    y2 = np.stack([y, rng.standard_normal((9, 2)) + 2.0])
    got2 = sim._hsic_unbiased(torch.from_numpy(x2), torch.from_numpy(y2))
    want2 = [_hsic_unbiased_gram(p @ p.T, q @ q.T) for p, q in zip(x2, y2, strict=True)]
    np.testing.assert_allclose(got2.numpy(), want2, rtol=1e-10)
    # the terms take any leading shape (...), also none: one unbatched (n, K) map
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    one = sim._hsic_combine(sim._cross_sq(xt, yt), sim._hsic_terms(xt), sim._hsic_terms(yt), 9)
    assert one.shape == () and float(one) == pytest.approx(float(got), rel=1e-12)


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
    # the sampled means estimate the exact ones (closed form) within their spread
    assert float(sim.cka_permutation_baseline(a, b, debiased=True)) == 0.0
    assert float(sim.cka_permutation_baseline(a, b)) == pytest.approx(plain, abs=0.05)


def test_the_exact_baselines_are_the_means_over_every_permutation():
    """Closed forms checked by brute force: all 7! = 5040 orders of 7 positions."""
    import itertools

    g = torch.Generator().manual_seed(5)
    a = torch.randn(2, 3, 1, 7, generator=g) + torch.linspace(0, 2, 7)  # uncentred, 2 items
    b = 0.5 * a[:, :2] + torch.randn(2, 2, 1, 7, generator=g)
    lin, deb = [], []
    for order in itertools.permutations(range(7)):
        shuffled = b[..., list(order)]
        lin.append(sim.linear_cka(a, shuffled))
        deb.append(sim.debiased_cka(a, shuffled))
    np.testing.assert_allclose(sim.cka_permutation_baseline(a, b), torch.stack(lin).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sim.cka_permutation_baseline(a, b, debiased=True), 0.0)
    np.testing.assert_allclose(torch.stack(deb).mean(0), 0.0, atol=1e-12)


def _reference_cka(x: np.ndarray, y: np.ndarray, *, debiased: bool) -> float:
    """Kornblith et al. (2019) from the n x n Gram matrices of (n, K) maps: HSIC of the centred
    Grams (biased), or Song et al.'s unbiased HSIC — independent of the feature-space code."""
    k, l = x @ x.T, y @ y.T
    if debiased:
        return _hsic_unbiased_gram(k, l) / np.sqrt(_hsic_unbiased_gram(k, k) * _hsic_unbiased_gram(l, l))
    n = k.shape[0]
    h = np.eye(n) - 1.0 / n
    kc, lc = h @ k @ h, h @ l @ h
    return float(np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc)))


def test_pairwise_engine_matches_a_gram_matrix_reference_on_random_maps():
    """The shared-statistics engine (MapStats, one product per pair) against the n x n
    reference, for every pair of 5 random stimuli at two layers of a small net."""
    m = logmel_cnn()
    xs = [features(m, signal(0.3, freqs=(200.0 * (i + 1), 900.0), seed=i)) for i in range(5)]
    got = sim.pairwise_similarity(m, xs, metrics=sim.METRICS)
    from musiclens.core.interpret.hooks import activations

    layers = [n for n in got.layers if len(got.shapes[n]) >= 2]
    acts = [activations(m, x, layers) for x in xs]
    for row, (i, j) in enumerate(sim.all_pairs(5)):
        for name in layers:
            col = got.layers.index(name)
            xa = acts[i][name][0].reshape(acts[i][name].shape[1], -1).T.double().numpy()
            xb = acts[j][name][0].reshape(acts[j][name].shape[1], -1).T.double().numpy()
            for metric, debiased in (("cka", False), ("cka_debiased", True)):
                want = _reference_cka(xa, xb, debiased=debiased)
                assert got.values[metric][row, col] == pytest.approx(want, rel=1e-7, abs=1e-10), (metric, name)


def test_pairs_are_computed_one_connected_group_at_a_time():
    assert sim.connected_groups([(0, 1), (2, 3), (1, 4), (5, 6), (3, 5)]) == [[0, 2], [1, 3, 4]]
    assert sim.connected_groups(sim.all_pairs(4)) == [list(range(6))]


def test_layer_similarity_with_the_new_metrics_and_pairs():
    m = logmel_cnn()
    loud = signal(0.5, freqs=(300.0, 600.0), seed=1)
    quiet = 0.05 * signal(0.5, freqs=(2500.0, 3100.0), seed=2)
    xs = [features(m, s) for s in (loud + quiet, loud, quiet)]
    c = sim.layer_similarity(m, xs[0], xs[1], metrics=sim.METRICS)
    assert set(c.values) == set(sim.METRICS) | {"cka_baseline", "cka_debiased_baseline"}
    conv = c.layers.index("conv 2")
    assert 0 < c.curve("mse_max")[conv] < 4
    assert c.curve("cka_debiased")[conv] > c.curve("cka_debiased_baseline")[conv]
    assert np.isnan(
        sim.layer_similarity(m, xs[0], xs[1], layers=["output"], metrics=["cka_debiased"]).curve("cka_debiased")[0]
    )
    # default metrics unchanged for existing callers
    assert set(sim.layer_similarity(m, xs[0], xs[1], baseline=False).values) == set(sim.DEFAULT_METRICS)
    # pairwise = the pair-by-pair function, row for row
    pw = sim.pairwise_similarity(m, xs, metrics=sim.METRICS)
    assert sim.all_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    for row, (i, j) in enumerate(sim.all_pairs(3)):
        one = sim.layer_similarity(m, xs[i], xs[j], metrics=sim.METRICS)
        for k in one.values:
            np.testing.assert_allclose(pw.values[k][row], one.values[k][0], rtol=1e-12, equal_nan=True)
    with pytest.raises(ParameterError, match="no pairs"):
        sim.pairwise_similarity(m, xs[:1])


def test_the_shared_statistics_give_the_direct_metric_values():
    """One dot product per pair (MapStats) = the metric functions on the maps themselves."""
    g = torch.Generator().manual_seed(9)
    a = torch.randn(3, 4, 5, 6, generator=g) * 2 + 1
    b = 0.7 * a + torch.randn(3, 4, 5, 6, generator=g)
    b[2] = 0.0  # an all-zero map: NaN where the metric is undefined, as the functions say
    metrics = ["pearson", "cosine", "nmse", "mse_max"]
    got = sim._pair_values(sim.MapStats.of(a), sim.MapStats.of(b), metrics, baseline=False)
    for name, fn in (("pearson", sim.pearson), ("cosine", sim.cosine), ("nmse", sim.nmse), ("mse_max", sim.mse_max)):
        np.testing.assert_allclose(got[name], fn(a, b).numpy(), rtol=1e-12, atol=1e-15, equal_nan=True)
    same = sim._pair_values(sim.MapStats.of(a), sim.MapStats.of(a.clone()), metrics, baseline=False)
    assert (same["nmse"] == 0).all() and (same["mse_max"] == 0).all()
    with pytest.raises(ParameterError, match="different sizes"):
        sim._pair_values(sim.MapStats.of(a), sim.MapStats.of(b[..., :5]), metrics, baseline=False)


# ---------------------------------------------------------------- edge cases (mutation testing)


def _np_flat_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pearson, cosine, nMSE and mse_max of two flattened maps, straight from numpy."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    ac, bc = a - a.mean(), b - b.mean()
    s = max(np.abs(a).max(), np.abs(b).max())
    return {
        "pearson": float(ac @ bc / np.sqrt((ac @ ac) * (bc @ bc))),
        "cosine": float(a @ b / np.sqrt((a @ a) * (b @ b))),
        "nmse": float(((a - b) ** 2).sum() / (a @ a)),
        "mse_max": float((((a - b) / s) ** 2).mean()),
    }


@pytest.mark.parametrize("scale", [1e-3, 1e-6, 1e3])
def test_metrics_of_maps_with_small_or_large_norms(scale):
    """Values are scale-free: tiny maps (norm products far below 1) are not undefined."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64) * scale
    b = (0.6 * a + torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64) * scale) * 0.5
    metrics = ["pearson", "cosine", "nmse", "mse_max"]
    shared = sim._pair_values(sim.MapStats.of(a), sim.MapStats.of(b), metrics, baseline=False)
    for item in range(2):
        want = _np_flat_metrics(a[item].numpy(), b[item].numpy())
        for name, fn in (
            ("pearson", sim.pearson),
            ("cosine", sim.cosine),
            ("nmse", sim.nmse),
            ("mse_max", sim.mse_max),
        ):
            assert float(fn(a, b)[item]) == pytest.approx(want[name], rel=1e-9), name
            assert float(shared[name][item]) == pytest.approx(want[name], rel=1e-9), name
    # CKA and debiased CKA of tiny maps against the Gram reference
    x = a[0].reshape(3, -1).T.numpy()
    y = b[0].reshape(3, -1).T.numpy()
    x, y = x - x.mean(0), y - y.mean(0)
    for fn, debiased in ((sim.linear_cka, False), (sim.debiased_cka, True)):
        assert float(fn(a, b)[0]) == pytest.approx(_reference_cka(x, y, debiased=debiased), rel=1e-9)
    cka = sim._cka_of(sim.MapStats.of(a), sim.MapStats.of(b), sim.METRICS, baseline=True)
    assert float(cka["cka"][0]) == pytest.approx(_reference_cka(x, y, debiased=False), rel=1e-9)
    assert float(cka["cka_debiased"][0]) == pytest.approx(_reference_cka(x, y, debiased=True), rel=1e-9)
    assert float(cka["cka_debiased_baseline"][0]) == 0.0


def test_all_zero_maps_give_nan_or_zero_as_documented():
    z = torch.zeros(1, 4, dtype=torch.float64)
    b = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64) * 1e-4
    stats = {k: sim.MapStats.of(t) for k, t in (("z", z), ("b", b))}
    for got in (
        {
            "pearson": sim.pearson(z, b),
            "cosine": sim.cosine(z, b),
            "nmse": sim.nmse(z, b),
            "mse_max": sim.mse_max(z, b),
        },
        sim._flat_metrics(stats["z"], stats["b"], ["pearson", "cosine", "nmse", "mse_max"]),
    ):
        assert np.isnan(float(got["pearson"])) and np.isnan(float(got["cosine"]))
        assert np.isnan(float(got["nmse"]))  # zero reference, non-zero error: undefined
        assert float(got["mse_max"]) == pytest.approx((1 + 4 + 0.25 + 9) / 9 / 4)  # mean (b/s)^2, s = 3e-4
    flat0 = sim._flat_metrics(stats["z"], sim.MapStats.of(z.clone()), ["nmse", "mse_max", "cosine"])
    assert float(flat0["nmse"]) == 0.0 and float(flat0["mse_max"]) == 0.0 and np.isnan(float(flat0["cosine"]))
    assert float(sim.nmse(z, z)) == 0.0 and float(sim.mse_max(z, z)) == 0.0
    # nMSE with a non-zero reference and a zero other map is exactly 1
    assert float(sim.nmse(b, z)) == pytest.approx(1.0)
    assert float(sim._flat_metrics(stats["b"], stats["z"], ["nmse"])["nmse"]) == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="same shape"):
        sim.mse_max(b, torch.zeros(1, 5))


def test_map_stats_hold_the_documented_terms():
    g = torch.Generator().manual_seed(12)
    a = torch.randn(2, 3, 5, generator=g, dtype=torch.float64) + 0.7  # (B, K, T): 5 positions
    st = sim.MapStats.of(a)
    for i in range(2):
        flat = a[i].numpy().ravel()
        pos = a[i].numpy().T  # (n, K)
        pos = pos - pos.mean(0)
        np.testing.assert_allclose(st.centred[i].numpy(), flat - flat.mean(), rtol=1e-12)
        assert float(st.mean[i]) == pytest.approx(flat.mean(), rel=1e-12)
        assert float(st.norm2[i]) == pytest.approx(flat @ flat, rel=1e-12)
        assert float(st.cnorm2[i]) == pytest.approx(((flat - flat.mean()) ** 2).sum(), rel=1e-12)
        assert float(st.absmax[i]) == np.abs(flat).max()
        np.testing.assert_allclose(st.pos[i].numpy(), pos, rtol=1e-12, atol=1e-15)
        assert float(st.gram[i]) == pytest.approx(np.linalg.norm(pos.T @ pos), rel=1e-12)
        assert float(st.sq[i]) == pytest.approx((pos**2).sum(), rel=1e-12)
        k = pos @ pos.T
        assert float(st.hsic[i]) == pytest.approx(_hsic_unbiased_gram(k, k), rel=1e-10)
    assert st.positions == 5
    only_flat = sim.MapStats.of(a, cka=False, debiased=False)
    assert only_flat.pos is None and only_flat.gram is None and only_flat.hsic is None and only_flat.positions == 0
    plain = sim.MapStats.of(a, cka=True, debiased=False)
    assert plain.gram is not None and plain.hsic is None and plain.hsic_terms is None
    deb = sim.MapStats.of(a, cka=False, debiased=True)
    assert deb.gram is None and deb.hsic is not None and deb.positions == 5
    dense = sim.MapStats.of(a[:, :, 0])  # (B, K): no positions
    assert dense.pos is None and dense.positions == 0 and dense.sq is None
    assert sim._cka_of(st, dense, sim.METRICS, baseline=True) == {}
    assert sim._cka_of(dense, st, sim.METRICS, baseline=True) == {}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_cka_and_its_baselines_with_few_positions(n):
    """Exact baselines against the mean over every permutation, down to 1 position."""
    import itertools

    g = torch.Generator().manual_seed(20 + n)
    a = torch.randn(1, 3, 1, n, generator=g, dtype=torch.float64)
    b = torch.randn(1, 2, 1, n, generator=g, dtype=torch.float64) + 0.3 * a[:, :2]
    sa, sb = sim.MapStats.of(a), sim.MapStats.of(b)
    assert sa.positions == n
    for metrics in (["cka"], ["cka_debiased"], ["cka", "cka_debiased"]):
        out = sim._cka_of(sa, sb, metrics, baseline=True)
        want = set(metrics) | {f"{k}_baseline" for k in metrics}
        if n < 4:
            want -= {"cka_debiased", "cka_debiased_baseline"}
        assert set(out) == want, (n, metrics)
        assert set(sim._cka_of(sa, sb, metrics, baseline=False)) == want - {"cka_baseline", "cka_debiased_baseline"}
    out = sim._cka_of(sa, sb, sim.METRICS, baseline=True)
    if n == 1:  # no variance over one position: undefined
        assert np.isnan(float(out["cka"])) and np.isnan(float(out["cka_baseline"]))
        assert np.isnan(float(sim.cka_permutation_baseline(a, b)))
        return
    perms = [sim.linear_cka(a, b[..., list(o)]) for o in itertools.permutations(range(n))]
    exact = float(torch.stack(perms).mean())
    assert float(out["cka_baseline"]) == pytest.approx(exact, rel=1e-12)
    assert float(sim.cka_permutation_baseline(a, b)) == pytest.approx(exact, rel=1e-12)
    assert float(out["cka"]) == pytest.approx(float(sim.linear_cka(a, b)), rel=1e-12)
    if n == 2:  # two centred positions are rank one: every pairing is perfectly similar
        assert exact == pytest.approx(1.0, rel=1e-12)
    if n >= 4:
        x, y = a[0, :, 0].T.numpy(), b[0, :, 0].T.numpy()
        x, y = x - x.mean(0), y - y.mean(0)
        assert float(out["cka_debiased"]) == pytest.approx(_reference_cka(x, y, debiased=True), rel=1e-9)
        assert float(sim.debiased_cka(a, b)) == pytest.approx(_reference_cka(x, y, debiased=True), rel=1e-9)
        assert float(out["cka_debiased_baseline"]) == 0.0
    else:
        with pytest.raises(ParameterError, match="more positions"):
            sim.cka_permutation_baseline(a, b, debiased=True)
        with pytest.raises(ParameterError, match="at least 4 positions"):
            sim.debiased_cka(a, b)


def test_metric_subsets_compute_only_their_terms():
    g = torch.Generator().manual_seed(13)
    a = torch.randn(1, 4, 2, 3, generator=g, dtype=torch.float64)
    b = torch.randn(1, 4, 2, 3, generator=g, dtype=torch.float64)
    full_a, full_b = sim.MapStats.of(a), sim.MapStats.of(b)
    only_cka = [sim.MapStats.of(t, cka=True, debiased=False) for t in (a, b)]
    only_deb = [sim.MapStats.of(t, cka=False, debiased=True) for t in (a, b)]
    assert set(sim._pair_values(full_a, full_b, ["cka"], True)) == {"cka", "cka_baseline"}
    assert set(sim._pair_values(full_a, full_b, ["cka_debiased"], True)) == {"cka_debiased", "cka_debiased_baseline"}
    assert set(sim._pair_values(full_a, full_b, ["pearson"], True)) == {"pearson"}
    # statistics without the terms: the metric is left out, not computed from None
    assert set(sim._pair_values(*only_deb, ["cka", "cosine"], True)) == {"cosine"}
    assert set(sim._pair_values(*only_cka, ["cka_debiased", "nmse"], True)) == {"nmse"}
    assert set(sim._pair_values(only_cka[0], only_deb[1], ["cka", "cka_debiased"], True)) == set()
    assert set(sim._pair_values(only_deb[0], only_cka[1], ["cka", "cka_debiased"], True)) == set()
    assert set(sim._pair_values(full_a, only_cka[1], ["cka", "cka_debiased"], True)) == {"cka", "cka_baseline"}
    assert set(sim._pair_values(only_cka[0], full_b, ["cka", "cka_debiased"], True)) == {"cka", "cka_baseline"}
    assert set(sim._pair_values(full_a, only_deb[1], sim.METRICS, True)) >= {"cka_debiased", "cka_debiased_baseline"}
    assert "cka" not in sim._pair_values(only_deb[0], full_b, sim.METRICS, True)
    want = sim._pair_values(full_a, full_b, sim.METRICS, True)
    for k, v in sim._pair_values(*only_cka, ["cka"], True).items():
        np.testing.assert_array_equal(v, want[k])
    for k, v in sim._pair_values(*only_deb, ["cka_debiased"], True).items():
        np.testing.assert_array_equal(v, want[k])


def test_sampled_baseline_draws_reproducible_permutations():
    import itertools

    g = torch.Generator().manual_seed(14)
    a = torch.randn(1, 3, 1, 4, generator=g)
    b = torch.randn(1, 2, 1, 4, generator=g)
    orders = [list(o) for o in itertools.permutations(range(4))]
    each = {tuple(o): float(sim.linear_cka(a, b[..., o])) for o in orders}
    each_deb = {tuple(o): float(sim.debiased_cka(a, b[..., o])) for o in orders}
    for seed in (None, 0, 3):
        one = float(sim.cka_permutation_baseline(a, b, n_permutations=1, seed=seed))
        assert min(abs(one - v) for v in each.values()) < 1e-12
        one = float(sim.cka_permutation_baseline(a, b, n_permutations=1, seed=seed, debiased=True))
        assert min(abs(one - v) for v in each_deb.values()) < 1e-12
    # the default seed is 0; the sample is the mean over the permutations torch draws with it
    gen = torch.Generator().manual_seed(0)
    drawn = [tuple(torch.randperm(4, generator=gen).tolist()) for _ in range(3)]
    want = np.mean([each[o] for o in drawn])
    assert float(sim.cka_permutation_baseline(a, b, n_permutations=3)) == pytest.approx(want, rel=1e-9)
    assert float(sim.cka_permutation_baseline(a, b, n_permutations=3, seed=0)) == pytest.approx(want, rel=1e-9)
    gen = torch.Generator().manual_seed(1)
    other = np.mean([each[tuple(torch.randperm(4, generator=gen).tolist())] for _ in range(3)])
    assert float(sim.cka_permutation_baseline(a, b, n_permutations=3, seed=1)) == pytest.approx(other, rel=1e-9)
    assert other != pytest.approx(want)
    with pytest.raises(ParameterError, match="at least 1"):
        sim.cka_permutation_baseline(a, b, n_permutations=0)


def test_shape_checks_refuse_mismatched_maps():
    a = torch.randn(2, 3, 2, 4)
    with pytest.raises(ParameterError, match="same batch and positions"):
        sim.linear_cka(a, a[:1])
    with pytest.raises(ParameterError, match="same batch and positions"):
        sim.debiased_cka(a, a[..., :3])
    with pytest.raises(ParameterError, match="same batch and positions"):
        sim.cka_permutation_baseline(a, a[:, :, :1])
    assert sim.linear_cka(a, a[:, :2]).shape == (2,)  # channel counts may differ
    with pytest.raises(ParameterError, match="with positions"):
        sim.linear_cka(a[:, :, 0, 0], a[:, :, 0, 0])
    with pytest.raises(ParameterError, match="more positions than 0"):
        sim.cka_permutation_baseline(a[:, :, 0, 0], a[:, :, 0, 0])
    with pytest.raises(ParameterError, match="unknown metrics"):
        sim.layer_similarity(logmel_cnn(), a, a, metrics=[])


def _brute_groups(pairs):
    """Connected components by repeated merging: sets of pair indices, ordered by first pair."""
    comps: list[tuple[set[int], list[int]]] = []
    for p, (i, j) in enumerate(pairs):
        hit = [c for c in comps if i in c[0] or j in c[0]]
        nodes, idx = {i, j}, [p]
        for c in hit:
            nodes |= c[0]
            idx += c[1]
            comps.remove(c)
        comps.append((nodes, idx))
    return sorted((sorted(c[1]) for c in comps), key=lambda g: g[0])


def test_connected_groups_against_brute_force():
    assert sim.connected_groups([]) == []
    assert sim.connected_groups([(0, 1)]) == [[0]]
    assert sim.connected_groups([(3, 4), (0, 1), (4, 0)]) == [[0, 1, 2]]
    assert sim.connected_groups([(2, 2), (0, 1)]) == [[0], [1]]
    rng = np.random.default_rng(15)
    for _ in range(60):
        n = int(rng.integers(2, 12))
        pairs = [tuple(int(v) for v in rng.integers(0, n, 2)) for _ in range(int(rng.integers(1, 10)))]
        assert sim.connected_groups(pairs) == _brute_groups(pairs), pairs
    chain = [(i, i + 1) for i in range(30)][::-1]  # deep trees: path halving must stay correct
    assert sim.connected_groups(chain + [(40, 41)]) == [list(range(30)), [30]]


def test_class_pairs_and_all_pairs():
    assert sim.all_pairs(0) == [] and sim.all_pairs(1) == []
    assert sim.all_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    got = sim.class_pairs(["a", "b", "a", "c", "a", "b"])
    assert got == {"a": [(0, 2), (0, 4), (2, 4)], "b": [(1, 5)]}
    assert sim.class_pairs(["x", "y"]) == {}


def _tiny_with_unused_layer():
    m = logmel_cnn()
    m.net.unused = torch.nn.Identity()  # hooked but never run
    return m


def test_pairwise_steps_count_to_the_total_and_rows_follow_the_pairs():
    m = _tiny_with_unused_layer()
    xs = [features(m, signal(0.3 + 0.05 * i, freqs=(250.0 * (i + 1), 700.0), seed=i)) for i in range(4)]
    pairs = [(2, 0), (1, 3), (0, 2), (3, 3)]  # two groups; the reference is the first index
    layers = ["conv 2", "unused", "relu 1", "output"]
    seen: list[tuple[int, int]] = []
    got = sim.pairwise_similarity(
        m, xs, pairs, layers=layers, metrics=sim.METRICS, progress=lambda d, t: seen.append((d, t))
    )
    assert got.layers == ["conv 2", "relu 1", "output"]
    total = len(pairs) * len(layers)
    # groups [[0, 2], [1, 3]]: per group, per layer, one step per pair; the unused layer counts
    # its pairs as done in one step, so the progress reaches the total
    want, done = [], 0
    for group in ([0, 2], [1, 3]):
        for name in layers:
            if name == "unused":
                done += len(group)
                want.append((done, total))
                continue
            for _ in group:
                done += 1
                want.append((done, total))
    assert seen == want and seen[-1] == (total, total)
    t = min(x.shape[-1] for x in xs)
    for row, (i, j) in enumerate(pairs):
        one = sim.layer_similarity(m, xs[i][..., :t], xs[j][..., :t], layers=got.layers, metrics=sim.METRICS)
        assert set(one.values) == set(got.values)
        for k in one.values:
            np.testing.assert_allclose(got.values[k][row], one.values[k][0], rtol=1e-12, equal_nan=True)
    assert got.shapes == {n: sim.layer_similarity(m, xs[0], xs[1], layers=[n]).shapes[n] for n in got.layers}
    assert got.values["nmse"][0, 0] != pytest.approx(got.values["nmse"][2, 0])  # (2, 0) vs (0, 2)
    # steps as a generator: the curve is its return value
    steps = sim.pairwise_similarity_steps(m, xs, [(0, 1)], layers=["conv 2"], metrics=["cosine"], baseline=False)
    assert next(steps) == (1, 1)
    with pytest.raises(StopIteration) as stop:
        next(steps)
    assert list(stop.value.value.values) == ["cosine"] and stop.value.value.layers == ["conv 2"]


def test_pairwise_refuses_bad_input():
    m = logmel_cnn()
    xs = [features(m, signal(0.3, seed=i)) for i in range(3)]
    for bad in ([(0, 3)], [(3, 0)], [(-1, 0)], [(0, -1)]):
        with pytest.raises(ParameterError, match=r"^pair indices must be in 0\.\.2, got "):
            sim.pairwise_similarity(m, xs, bad)
    with pytest.raises(ParameterError, match=r"^pairwise_similarity takes one item \(1, C, F, T\) per stimulus$"):
        sim.pairwise_similarity(m, [xs[0], torch.cat([xs[1], xs[2]])])
    with pytest.raises(ParameterError, match="no layers"):
        sim.pairwise_similarity(m, xs, layers=[])
    ok = sim.pairwise_similarity(m, xs, [(0, 2), (2, 1)], layers=["conv 1"], metrics=["pearson"])
    assert ok.values["pearson"].shape == (2, 1)
    # a stimulus paired with itself is a group of one file
    same = sim.pairwise_similarity(m, xs, [(1, 1)], layers=["conv 1"], metrics=["pearson", "cka"], baseline=False)
    assert same.values["pearson"][0, 0] == pytest.approx(1.0) and set(same.values) == {"pearson", "cka"}
    assert same.shapes["conv 1"][0] == 4
    default = sim.pairwise_similarity_steps(m, xs, [(0, 1)], layers=["conv 1"], metrics=["cka"])
    with pytest.raises(StopIteration) as stop:
        while True:
            next(default)
    assert set(stop.value.value.values) == {"cka", "cka_baseline"}  # baselines by default


def test_layer_similarity_batches_cuts_and_refuses():
    m = _tiny_with_unused_layer()
    x1 = features(m, signal(0.4, seed=1))
    x2 = features(m, signal(0.3, freqs=(500.0, 900.0), seed=2))
    xa, xb = torch.cat([x1[..., : x2.shape[-1]], x2]), torch.cat([x2, x1[..., : x2.shape[-1]]])
    both = sim.layer_similarity(m, xa, xb, layers=["conv 1", "unused", "output"], metrics=sim.METRICS)
    assert both.layers == ["conv 1", "output"]
    assert both.shapes["conv 1"] == tuple(m.net.conv1(x2 / 40.0 + 1.0).shape[1:])
    for item, (p, q) in enumerate(((x1, x2), (x2, x1))):  # longer T is cut to the shorter
        one = sim.layer_similarity(m, p, q, layers=["conv 1", "output"], metrics=sim.METRICS)
        for k in one.values:
            np.testing.assert_allclose(both.values[k][item], one.values[k][0], rtol=1e-6, equal_nan=True)
            np.testing.assert_array_equal(both.curve(k, item), both.values[k][item])
    d = both.to_dict(1)
    assert d["cka"][1] is None and d["nmse"][0] == pytest.approx(float(both.values["nmse"][1, 0]))
    with pytest.raises(ParameterError, match=r"not computed; have cosine, nmse$"):
        sim.layer_similarity(m, x1, x2, layers=["conv 1"], metrics=["cosine", "nmse"]).curve("cka")
    with pytest.raises(ParameterError, match=r"allowed: pearson, cosine, nmse, mse_max, cka, cka_debiased$"):
        sim.layer_similarity(m, x1, x2, metrics=["euclid"])
    stft = stft_cnn()  # 2 input channels: the message names the batch sizes, not the channels
    s1 = features(stft, signal(0.3))
    with pytest.raises(ParameterError, match=r"same batch size, got 3 and 1$"):
        sim.layer_similarity(stft, torch.cat([s1, s1, s1]), s1)
    with pytest.raises(ParameterError, match=r"same batch size, got 1 and 3$"):
        sim.layer_similarity(stft, s1, torch.cat([s1, s1, s1]))
    with pytest.raises(ParameterError, match="no layers"):
        sim.layer_similarity(m, x1, x2, layers=[])
    assert sim._value_keys(["cka_debiased", "pearson", "cka"], True) == [
        "cka_debiased",
        "pearson",
        "cka",
        "cka_baseline",
        "cka_debiased_baseline",
    ]
    assert sim._value_keys(["cka"], False) == ["cka"]
    assert sim.default_layers(m) == ["conv 1", "relu 1", "pool 1", "conv 2", "bn 2", "relu 2"]
