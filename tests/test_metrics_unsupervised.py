"""The unsupervised scores (:mod:`dcign_eval.metrics.unsupervised`) on hand-made codes."""

import numpy as np
import pytest

from dcign_eval.metrics import _utils, unsupervised


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
