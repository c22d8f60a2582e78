"""The pure array cores of the metrics, on hand-made inputs (fast: no sampling, no data set)."""

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from dcign_eval.metrics import _utils, beta_vae, dci, factor_fit, factor_vae, irs, mig, \
    modularity, sap, unsupervised
from dcign_eval.metrics.synthetic import SyntheticFactors, flat_index
from trainer.errors import DcignError


# ------------------------------------------------------------------ discretiser and information

def test_histogram_discretize_matches_histogram_and_digitize():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=500), rng.integers(0, 40, 500), np.full(500, 3.5)])
    got = _utils.histogram_discretize(x, 20)
    for j in range(x.shape[1]):
        expected = np.digitize(x[:, j], np.histogram(x[:, j], 20)[1][:-1])
        np.testing.assert_array_equal(got[:, j], expected)
    assert got[:, 0].min() == 1 and got[:, 0].max() == 20
    assert len(np.unique(got[:, 2])) == 1  # a constant column is one bin


def test_mutual_info_matrix_equals_sklearn():
    rng = np.random.default_rng(1)
    a = np.column_stack([rng.integers(0, 20, 800), rng.integers(0, 3, 800), np.zeros(800, int)])
    b = np.column_stack([a[:, 0] // 4, rng.integers(0, 7, 800), rng.integers(5, 9, 800)])
    got = _utils.discrete_mutual_info(a, b)
    expected = np.array([[mutual_info_score(b[:, j], a[:, i]) for j in range(3)]
                         for i in range(3)])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(_utils.discrete_entropy(b),
                               [mutual_info_score(b[:, j], b[:, j]) for j in range(3)], atol=1e-12)
    assert np.all(got[2] == 0)  # a constant column shares no information


def test_top_two_gap_single_row_and_ties():
    np.testing.assert_array_equal(_utils.top_two_gap(np.array([[0.3, 0.0]])), [0.3, 0.0])
    np.testing.assert_allclose(_utils.top_two_gap(np.array([[1.0, 0.2], [1.0, 0.5], [0.1, 0.4]])),
                               [0.0, 0.1])


# ------------------------------------------------------------------ validation and the cache

def test_check_codes_rejects_nan_with_one_line_message():
    codes = np.ones((10, 3))
    codes[4, 1] = np.nan
    with pytest.raises(DcignError, match="^codes contain NaN") as e:
        _utils.check_codes(codes)
    assert "\n" not in str(e.value)
    with pytest.raises(DcignError, match="2-D"):
        _utils.check_codes(np.ones(5))
    with pytest.raises(DcignError, match="inf"):
        _utils.check_codes(np.array([[1.0], [np.inf]]))


def test_constant_dims_sees_float_rounding_constants():
    codes = np.column_stack([np.full(1000, 0.1), np.zeros(1000), np.linspace(0, 1e-9, 1000)])
    assert np.var(codes[:, 0]) > 0  # rounding: the reference's var > 0 test keeps column 0
    np.testing.assert_array_equal(_utils.constant_dims(codes), [True, True, False])


def test_cache_encodes_each_grid_point_once():
    data = SyntheticFactors([3, 4, 5])
    calls = []

    def represent(x):
        calls.append(len(x))
        return x * 2.0

    cache = _utils.CodeCache(data, represent, encode_batch_size=7)
    rng = np.random.default_rng(0)
    f1 = data.sample_factors(500, rng)
    np.testing.assert_array_equal(cache(f1), f1 * 2.0)
    f2 = data.sample_factors(500, rng).reshape(50, 10, 3)
    np.testing.assert_array_equal(cache(f2), f2 * 2.0)
    distinct = len(np.unique(np.concatenate([flat_index(f1, data.factor_sizes),
                                             flat_index(f2, data.factor_sizes).ravel()])))
    assert sum(calls) == cache.num_encoded == distinct <= 60
    assert max(calls) <= 7
    off = _utils.CodeCache(data, represent, enabled=False)
    np.testing.assert_array_equal(off(f1), f1 * 2.0)
    assert off.num_encoded == 500


def test_cache_checks_what_represent_returns():
    data = SyntheticFactors([3, 4])
    f = data.sample_factors(20, np.random.default_rng(0))
    with pytest.raises(DcignError, match="codes contain NaN"):
        _utils.CodeCache(data, lambda x: np.full((len(x), 2), np.nan))(f)
    with pytest.raises(DcignError, match="2-D"):
        _utils.CodeCache(data, lambda x: x[:, 0])(f)
    with pytest.raises(DcignError, match="codes for"):
        _utils.CodeCache(data, lambda x: x[:1])(f)


# ------------------------------------------------------------------ DCI

def test_dci_diagonal_importance_is_perfect():
    r = np.diag([0.5, 2.0, 1.0, 3.0])
    assert dci._disentanglement(r) == pytest.approx(1.0, abs=1e-9)
    assert dci._completeness(r) == pytest.approx(1.0, abs=1e-9)


def test_dci_uniform_zero_and_duplicated_importance():
    assert dci._disentanglement(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-9)
    assert dci._completeness(np.ones((4, 3))) == pytest.approx(0.0, abs=1e-9)
    assert dci._disentanglement(np.zeros((4, 3))) == 0.0
    assert dci._completeness(np.zeros((4, 3))) == 0.0
    dup = np.vstack([np.eye(5), np.eye(5)])
    assert dci._disentanglement(dup) == pytest.approx(1.0, abs=1e-9)
    assert dci._completeness(dup) == pytest.approx(1 - math.log(2) / math.log(10), abs=1e-9)


def test_dci_matches_the_reference_formula_on_random_importance():
    from scipy.stats import entropy
    r = np.random.default_rng(3).random((6, 4))
    d_ref = np.sum((1 - entropy(r.T + 1e-11, base=4)) * r.sum(1) / r.sum())
    c_ref = np.sum((1 - entropy(r + 1e-11, base=6)) * r.sum(0) / r.sum())
    assert dci._disentanglement(r) == pytest.approx(d_ref, abs=1e-12)
    assert dci._completeness(r) == pytest.approx(c_ref, abs=1e-12)


def test_dci_single_factor_or_latent():
    assert dci._disentanglement(np.array([[0.2], [0.8]])) == 1.0
    assert dci._completeness(np.array([[0.2, 0.8]])) == 1.0


@pytest.mark.parametrize("mode", dci.DCI_MODES)
def test_dci_core_on_a_tiny_identity_code(mode):
    rng = np.random.default_rng(0)
    f = rng.integers(0, [3, 5], size=(600, 2))
    ft = rng.integers(0, [3, 5], size=(300, 2))
    out = dci._compute_dci(f.astype(float), f, ft.astype(float), ft, mode=mode,
                           random_state=rng)
    assert out["disentanglement"] > 0.99 and out["completeness"] > 0.99
    assert out["informativeness_test"] == 1.0
    assert out["mode"] == mode
    with pytest.raises(DcignError, match="unknown DCI mode"):
        dci._compute_dci(f.astype(float), f, ft.astype(float), ft, mode="lasso")


@pytest.mark.parametrize("mode", dci.DCI_MODES)
def test_dci_identical_latents_share_the_importance(mode):
    # LightGBM always splits on the first of two equal features; the importance of copies is
    # shared equally, as scikit-learn's random feature order gives in expectation.
    rng = np.random.default_rng(1)
    f = rng.integers(0, [3, 5], size=(600, 2))
    ft = rng.integers(0, [3, 5], size=(300, 2))
    z, zt = f.astype(float), ft.astype(float)
    out = dci._compute_dci(np.hstack([z, z[:, :1]]), f, np.hstack([zt, zt[:, :1]]), ft,
                           mode=mode, random_state=0)
    importance, *_ = dci._importance_matrix(np.hstack([z, z[:, :1]]), f,
                                            np.hstack([zt, zt[:, :1]]), ft, mode,
                                            np.random.default_rng(0))
    assert importance[0, 0] == pytest.approx(importance[2, 0])
    assert importance[0, 0] > 0.4
    # latent 1 alone carries factor 1; factor 0's importance halves over latents 0 and 2
    assert out["completeness"] == pytest.approx(
        dci._completeness(np.array([[0.5, 0], [0, 1], [0.5, 0]])), abs=0.02)


# ------------------------------------------------------------------ MIG, modularity, SAP

def test_mig_from_hand_made_mutual_information():
    mi = np.array([[1.0, 0.1], [0.2, 0.6], [0.1, 0.5]])
    entropy = np.array([2.0, 1.0])
    assert mig._mig_from_mutual_info(mi, entropy) == pytest.approx((0.8 / 2 + 0.1 / 1) / 2)
    # a factor with zero entropy is left out; none left -> 0
    assert mig._mig_from_mutual_info(mi, np.array([2.0, 0.0])) == pytest.approx(0.4)
    assert mig._mig_from_mutual_info(mi, np.zeros(2)) == 0.0


def test_mig_perfect_code_with_few_values_is_one():
    f = np.random.default_rng(0).integers(0, [4, 7], size=(2000, 2))
    assert mig._compute_mig(f.astype(float), f) == pytest.approx(1.0, abs=0.01)
    assert mig._compute_mig(np.hstack([f, f]).astype(float), f) == pytest.approx(0.0)


def test_modularity_core():
    assert modularity._modularity(np.diag([0.3, 1.0, 2.0])) == pytest.approx(1.0)
    assert modularity._modularity(np.ones((3, 4))) == pytest.approx(0.0)
    assert modularity._modularity(np.zeros((3, 4))) == 0.0
    m = np.random.default_rng(2).random((5, 3))
    sq = m**2
    ref = np.mean(1 - (sq.sum(1) - sq.max(1)) / (sq.max(1) * 2))
    assert modularity._modularity(m) == pytest.approx(ref)
    assert modularity._modularity(np.array([[0.5], [0.0]])) == 0.5  # single factor


def test_macro_auc_equals_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 400)
    scores = rng.random((400, 5))
    scores[:, 2] = np.round(scores[:, 2], 1)  # ties
    expected = roc_auc_score(MultiLabelBinarizer().fit_transform(y[:, None]), scores)
    assert modularity._macro_auc(y, np.arange(5), scores) == pytest.approx(expected, abs=1e-12)


def test_explicitness_of_constant_code_is_chance():
    rng = np.random.default_rng(0)
    f = rng.integers(0, [3, 6], size=(500, 2))
    ft = rng.integers(0, [3, 6], size=(300, 2))
    out = modularity._compute_explicitness(np.zeros((500, 4)), f, np.zeros((300, 4)), ft, rng)
    assert out["explicitness_score_test"] == pytest.approx(0.5)


def test_sap_continuous_score_matrix_and_score():
    rng = np.random.default_rng(5)
    f = rng.integers(0, [4, 9], size=(1000, 2))
    codes = np.column_stack([f[:, 0] + rng.normal(0, 0.5, 1000), np.zeros(1000),
                             -3.0 * f[:, 1]])
    s = sap._score_matrix_continuous(codes, f)
    for i in range(3):
        for j in range(2):
            c = np.cov(codes[:, i], f[:, j])
            ref = c[0, 1] ** 2 / (c[0, 0] * c[1, 1]) if c[0, 0] > 1e-12 else 0.0
            assert s[i, j] == pytest.approx(ref, abs=1e-12)
    assert sap._compute_sap(codes, f, continuous=True) == pytest.approx(
        np.mean(np.sort(s, 0)[-1] - np.sort(s, 0)[-2]))
    assert sap._compute_sap(np.zeros((100, 3)), f[:100], continuous=True) == 0.0


# ------------------------------------------------------------------ IRS

def _irs_reference_loop(factors, codes, q=0.99):
    """A plain re-statement of disentanglement_lib's IRS arithmetic (active latents only)."""
    ys = _utils.histogram_discretize(factors, 20)
    max_dev = np.max(np.abs(codes - codes.mean(0)), 0)
    cum = np.zeros((codes.shape[1], ys.shape[1]))
    for i in range(ys.shape[1]):
        vals = np.unique(ys[:, i])
        for v in vals:
            z = codes[ys[:, i] == v]
            cum[:, i] += np.quantile(np.abs(z - z.mean(0)), q, axis=0)
        cum[:, i] /= len(vals)
    scores = (1 - cum / max_dev[:, None]).max(1)
    return np.average(scores, weights=max_dev)


def test_irs_matches_reference_arithmetic_and_counts_active_dims():
    rng = np.random.default_rng(6)
    f = rng.integers(0, [3, 40, 6], size=(3000, 3))
    codes = np.column_stack([f[:, 1] + rng.normal(0, 2, 3000), rng.normal(size=3000),
                             f[:, 0] * 1.0])
    got = irs._compute_irs(np.column_stack([codes, np.full(3000, 0.1)]), f)
    assert got["avg_score"] == pytest.approx(_irs_reference_loop(f, codes), abs=1e-12)
    assert got["num_active_dims"] == 3  # the float-constant column is dropped, and counted right
    empty = irs._compute_irs(np.full((100, 2), 0.1), f[:100])
    assert empty["avg_score"] == 0.0 and empty["num_active_dims"] == 0


# ------------------------------------------------------------------ FactorVAE, BetaVAE

def test_factor_vae_core_votes_and_pruning():
    gv = np.array([1.0, 4.0, 1e-4])  # latent 2 is pruned (std 0.01 < 0.05)
    local = np.array([[0.1, 3.0, 0.0], [0.9, 0.4, 0.0], [0.05, 3.9, 0.0], [1.0, 0.1, 0.0]])
    labels = np.array([0, 1, 0, 1])
    out = factor_vae._compute_factor_vae(local, labels, local, labels[::-1], gv, num_factors=2)
    assert out["train_accuracy"] == 1.0 and out["eval_accuracy"] == 0.0
    assert out["num_active_dims"] == 2
    none = factor_vae._compute_factor_vae(local, labels, local, labels, np.zeros(3), 2)
    assert none == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_beta_vae_features():
    c1 = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    c2 = np.array([[[1.0, 1.0], [0.0, 3.0]]])
    np.testing.assert_array_equal(beta_vae._features(c1, c2), [[1.5, 0.0]])


# ------------------------------------------------------------------ unsupervised

def test_gaussian_total_correlation():
    assert unsupervised._gaussian_total_correlation(np.diag([1.0, 4.0, 9.0])) == \
        pytest.approx(0.0, abs=1e-12)
    r = 0.6
    cov = np.array([[2.0, r * np.sqrt(2 * 3)], [r * np.sqrt(2 * 3), 3.0]])
    assert unsupervised._gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - r**2))
    dup = np.ones((2, 2))  # perfectly dependent: floored, finite
    tc = unsupervised._gaussian_total_correlation(dup)
    assert np.isfinite(tc) and tc == pytest.approx(0.5 * np.log(1e6) - 0.5 * np.log(2), rel=1e-3)
    assert unsupervised._compute_gaussian_total_correlation(np.zeros((50, 3))) == 0.0


def test_mean_pairwise_mutual_info():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(2000, 1))
    assert unsupervised._compute_mutual_info(np.hstack([z, z]), 20) == pytest.approx(
        _utils.discrete_entropy(_utils.histogram_discretize(z, 20))[0])
    assert unsupervised._compute_mutual_info(np.zeros((100, 3))) == 0.0
    assert unsupervised._compute_mutual_info(z) == 0.0


# ------------------------------------------------------------------ the paper's measurements

def test_monotone_fit():
    x = np.repeat(np.arange(10.0), 5)
    assert factor_fit.monotone_fit(np.exp(x / 3), x) == {"spearman": 1.0, "r2": 1.0}
    dec = factor_fit.monotone_fit(-x**3, x)
    assert dec["spearman"] == pytest.approx(1.0) and dec["r2"] == pytest.approx(1.0)
    noise = factor_fit.monotone_fit(np.random.default_rng(0).normal(size=50), x)
    assert noise["spearman"] < 0.4 and noise["r2"] < 0.4
    assert factor_fit.monotone_fit(np.zeros(50), x) == {"spearman": 0.0, "r2": 0.0}
    with pytest.raises(DcignError, match="NaN"):
        factor_fit.monotone_fit(np.full(50, np.nan), x)


def test_named_neuron_fits():
    x = np.linspace(-80, 80, 60)
    codes = np.column_stack([np.tanh(x / 50), np.zeros(60), x[::-1]])
    fits = factor_fit.named_neuron_fits(codes, {"azimuth": x, "light": x},
                                        {"azimuth": 0, "light": 2})
    assert list(fits) == ["azimuth", "light"]
    assert fits["azimuth"] == {"neuron": 0, "spearman": 1.0, "r2": 1.0}
    assert fits["light"]["spearman"] == pytest.approx(1.0)
    with pytest.raises(DcignError, match="outside"):
        factor_fit.named_neuron_fits(codes, {"azimuth": x}, {"azimuth": 5})


def test_intrinsic_invariance():
    rng = np.random.default_rng(8)
    identity = np.repeat(np.arange(6), 20)
    per_identity = rng.normal(size=(6, 4))
    invariant = per_identity[identity]
    assert factor_fit.intrinsic_invariance(invariant, identity) == 0.0
    noisy = invariant + rng.normal(0, 0.1, invariant.shape)
    assert 0 < factor_fit.intrinsic_invariance(noisy, identity) < 0.2
    assert factor_fit.intrinsic_invariance(rng.normal(size=(120, 4)), identity) == \
        pytest.approx(1.0, abs=0.1)
    assert factor_fit.intrinsic_invariance(np.zeros((120, 4)), identity) == 0.0
    sub = factor_fit.intrinsic_invariance(noisy, identity, max_points=60, random_state=0)
    assert sub == factor_fit.intrinsic_invariance(noisy, identity, max_points=60, random_state=0)
    # chunking does not change the means
    w1 = factor_fit.within_between_distances(noisy, identity)
    w2 = factor_fit.within_between_distances(noisy, identity, chunk=7)
    np.testing.assert_allclose(w1, w2)
    with pytest.raises(DcignError, match="two identities"):
        factor_fit.intrinsic_invariance(noisy, np.zeros(120))
