"""DCI (:mod:`dcign_eval.metrics.dci`): the pure core on hand-made importance matrices, and each
estimator against scikit-learn's gradient-boosted trees."""

import math

import numpy as np
import pytest

from dcign_eval.cache import identity
from dcign_eval.metrics import dci, evaluate
from dcign_eval.metrics.synthetic import SyntheticFactors
from trainer.errors import DcignError


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
    if mode == "lasso":  # informativeness is the test R^2, shrunk a little by the L1 weight
        assert out["informativeness_test"] == pytest.approx(1.0, abs=0.01)
    else:
        assert out["informativeness_test"] == 1.0
    assert out["mode"] == mode
    with pytest.raises(DcignError, match="unknown DCI mode"):
        dci._compute_dci(f.astype(float), f, ft.astype(float), ft, mode="ridge")


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


SMALL_SIZES = [3, 6, 8]
DCI_KEYS = ["dci_disentanglement", "dci_completeness", "dci_informativeness"]


def _duplicated(x):
    """Each factor standardised, then every latent twice."""
    sizes = np.array(SMALL_SIZES)
    z = (x - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)
    return np.hstack([z, z])


def _small_dci(represent, mode):
    return evaluate(SyntheticFactors(SMALL_SIZES), represent, DCI_KEYS, seed=0, dci_mode=mode,
                    num_train=1000, num_eval=500)


@pytest.fixture(scope="module")
def gbt_on_a_small_sample():
    """The reference estimator's DCI on the small sample, per code: computed once for the
    estimators compared with it (the slowest fit here, and deterministic)."""
    return {represent.__name__: _small_dci(represent, "gbt")
            for represent in (identity, _duplicated)}


@pytest.mark.parametrize("mode", ["gbt-hist", "lightgbm", "extra-trees"])
def test_dci_estimators_agree_with_gbt_on_a_small_sample(mode, gbt_on_a_small_sample):
    tolerance = {"gbt-hist": 0.005, "lightgbm": 0.02, "extra-trees": 0.05}[mode]
    for represent in (identity, _duplicated):
        gbt = gbt_on_a_small_sample[represent.__name__]
        fast = _small_dci(represent, mode)
        for k in DCI_KEYS:
            assert fast[k] == pytest.approx(gbt[k], abs=tolerance), (represent.__name__, k)
    assert gbt["dci_completeness"] == pytest.approx(1 - math.log(2) / math.log(6), abs=0.05)


def test_gbt_hist_reenacts_gbt_on_a_rotated_code():
    # Every latent mixes every factor: the importances depend on which split wins at each node,
    # so only the same trees give the same matrix (LightGBM's own boosting is 0.016 off here on
    # 2,000 points, extra trees 0.03).
    rng = np.random.default_rng(3)
    f = rng.integers(0, [3, 6, 12], size=(800, 3))
    ft = rng.integers(0, [3, 6, 12], size=(400, 3))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    sizes = np.array([3, 6, 12])

    def code(x):
        return ((x - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)) @ q

    gbt, _, _ = dci._importance_matrix(code(f), f, code(ft), ft, "gbt", np.random.default_rng(0))
    hist, _, _ = dci._importance_matrix(code(f), f, code(ft), ft, "gbt-hist",
                                        np.random.default_rng(0))
    assert np.abs(hist - gbt).max() < 0.01
    assert dci._disentanglement(hist) == pytest.approx(dci._disentanglement(gbt), abs=0.005)


def test_gbt_hist_two_classes_and_bins():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    y = (x[:, 1] > 0.2).astype(int) * 5  # two classes, labels not 0 / 1
    importance, train, test = dci._fit_factor("gbt-hist", x, y, x, y, 0, 1)
    assert importance.sum() == pytest.approx(1.0) and importance.argmax() == 1
    assert train == 1.0 and test == 1.0
    assert dci.histogram_bins(5) == dci.GBT_HIST_BIN_BUDGET // 5
    assert dci.histogram_bins(200) == dci.GBT_HIST_MIN_BINS


def _gbt_hist_in_lightgbms_model(x, y, x_test, seed):
    """gbt-hist with every Newton step written into LightGBM's model: the training points'
    leaves from LightGBM's ``pred_leaf``, the test scores from its ``raw_score`` prediction."""
    import lightgbm

    classes, labels = np.unique(y, return_inverse=True)
    onehot = np.eye(len(classes))[labels]
    prior = onehot.mean(axis=0)
    binary = len(classes) == 2
    targets, init = (onehot[:, 1:], np.log(prior[1:] / prior[:1])) if binary \
        else (onehot, np.log(prior))
    trees, width = targets.shape[1], 2 ** dci.GBT_DEPTH
    raw = np.tile(init, (len(y), 1))
    params = dict(objective="none", num_class=trees, max_depth=dci.GBT_DEPTH, num_leaves=width,
                  learning_rate=dci.GBT_LEARNING_RATE, min_data_in_leaf=1,
                  min_sum_hessian_in_leaf=0.0, min_data_in_bin=1, lambda_l2=0.0,
                  max_bin=dci.histogram_bins(x.shape[1]), feature_pre_filter=False,
                  num_threads=1, deterministic=True, force_col_wise=True, seed=seed, verbose=-1)
    booster = lightgbm.Booster(params, lightgbm.Dataset(x, params=params))
    shrink = 1.0 if binary else (len(classes) - 1) / len(classes)
    for stage in range(dci.GBT_STAGES):
        p = dci._expit(raw) if binary else dci._softmax(raw)
        grad = (p - targets) if trees > 1 else (p - targets)[:, 0]
        if booster.update(fobj=lambda _r, _d: (grad, np.ones_like(grad))) \
                or booster.current_iteration() <= stage:
            break
        leaves = booster.predict(x, pred_leaf=True, start_iteration=stage,
                                 num_iteration=1).reshape(len(y), trees)
        for k in range(trees):
            for leaf in range(width):
                inside = leaves[:, k] == leaf
                denominator = np.sum((p[:, k] * (1 - p[:, k]))[inside])
                if abs(denominator) >= 1e-150:
                    step = shrink * np.sum((targets[:, k] - p[:, k])[inside]) / denominator \
                        * dci.GBT_LEARNING_RATE
                    raw[inside, k] += step
                    booster.set_leaf_output(stage * trees + k, leaf, step)
                elif inside.any():
                    booster.set_leaf_output(stage * trees + k, leaf, 0.0)
    gain = booster.feature_importance("gain")
    raw_test = init + booster.predict(x_test, raw_score=True).reshape(len(x_test), trees)

    def predict(scores):
        return classes[(scores[:, 0] > 0).astype(int)] if binary else classes[scores.argmax(1)]
    return gain / gain.sum(), predict(raw), predict(raw_test)


def test_gbt_hist_equals_its_steps_written_into_lightgbm():
    # gbt-hist reads each stage's trees and keeps the Newton steps itself; written into
    # LightGBM's model instead, the same importances and predictions come out. Covered: two and
    # more classes, continuous and discrete latents, and trees without a split (the third class
    # of the last factor is equally frequent on both sides of the only latent).
    rng = np.random.default_rng(8)
    f = rng.integers(0, [2, 5], size=(500, 2))
    x = np.column_stack([f @ rng.normal(size=(2, 3)) + rng.normal(size=(500, 3)), f[:, 1] % 2])
    x_test, y_test = x[:200] + 0.3, f[:200]
    one_latent = np.repeat([[0.0], [1.0]], 40, axis=0)
    y_one = np.array([0] * 20 + [1] * 10 + [2] * 10 + [0] * 10 + [1] * 20 + [2] * 10)
    for xs, y in [(x, f[:, 0]), (x, f[:, 1]), (x[:, :2], f[:, 1]), (one_latent, y_one)]:
        xt = x_test[:, :xs.shape[1]] if xs.shape[1] > 1 else one_latent
        ours = dci._histogram_gbt(xs, y, xt, 3)
        model = _gbt_hist_in_lightgbms_model(xs, y, xt, 3)
        np.testing.assert_allclose(ours[0], model[0], rtol=1e-12, atol=0)
        assert np.array_equal(ours[1], model[1]) and np.array_equal(ours[2], model[2])


def test_lasso_importance_of_a_diagonal_code_is_perfect():
    # each latent a (rescaled) factor: |w| is diagonal, so D = C = 1, and R^2 close to 1
    rng = np.random.default_rng(5)
    f = rng.integers(0, [4, 9, 20], size=(1000, 3))
    ft = rng.integers(0, [4, 9, 20], size=(500, 3))
    scale = np.array([3.0, -0.5, 10.0])
    importance, train, test = dci._importance_matrix(f * scale, f, ft * scale, ft, "lasso",
                                                     np.random.default_rng(0))
    off_diagonal = importance[~np.eye(3, dtype=bool)]
    assert np.all(off_diagonal == 0) and np.all(np.diag(importance) > 0.9)
    assert dci._disentanglement(importance) == pytest.approx(1.0)
    assert dci._completeness(importance) == pytest.approx(1.0)
    assert test == pytest.approx(1.0, abs=0.01)
    # a latent that mixes two factors equally shares its weight: disentanglement drops
    mixed = np.column_stack([f[:, 0] + f[:, 1] / 2.25, f[:, 2]])
    mixed_t = np.column_stack([ft[:, 0] + ft[:, 1] / 2.25, ft[:, 2]])
    importance, *_ = dci._importance_matrix(mixed, f, mixed_t, ft, "lasso",
                                            np.random.default_rng(0))
    assert dci._disentanglement(importance) < 0.8


def test_lasso_of_a_constant_code_is_zero():
    f = np.random.default_rng(6).integers(0, [3, 5], size=(200, 2))
    out = dci._compute_dci(np.zeros((200, 3)), f, np.zeros((100, 3)), f[:100], mode="lasso")
    assert out["disentanglement"] == 0.0 and out["completeness"] == 0.0
    assert out["informativeness_test"] == 0.0


def test_gbt_hist_of_a_constant_code_predicts_the_prior_as_gbt():
    f = np.random.default_rng(7).integers(0, [3, 5], size=(200, 2))
    hist = dci._compute_dci(np.zeros((200, 3)), f, np.zeros((100, 3)), f[:100], mode="gbt-hist")
    gbt = dci._compute_dci(np.zeros((200, 3)), f, np.zeros((100, 3)), f[:100], mode="gbt")
    assert hist["disentanglement"] == hist["completeness"] == 0.0
    assert hist["informativeness_test"] == gbt["informativeness_test"] > 0
