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


@pytest.mark.parametrize("mode", ["lightgbm", "extra-trees"])
def test_dci_estimators_agree_with_gbt_on_a_small_sample(mode):
    tolerance = 0.02 if mode == "lightgbm" else 0.05
    small = SyntheticFactors([3, 6, 8])
    sizes = np.array(small.factor_sizes)

    def duplicated(x):
        z = (x - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)
        return np.hstack([z, z])

    keys = ["dci_disentanglement", "dci_completeness", "dci_informativeness"]
    for represent in (identity, duplicated):
        gbt = evaluate(small, represent, keys, seed=0, dci_mode="gbt", num_train=1000,
                       num_eval=500)
        fast = evaluate(small, represent, keys, seed=0, dci_mode=mode, num_train=1000,
                        num_eval=500)
        for k in keys:
            assert fast[k] == pytest.approx(gbt[k], abs=tolerance), (represent.__name__, k)
    assert gbt["dci_completeness"] == pytest.approx(1 - math.log(2) / math.log(6), abs=0.05)
