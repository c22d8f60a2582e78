"""MIG (:mod:`dcign_eval.metrics.mig`) on hand-made mutual information and codes."""

import numpy as np
import pytest

from dcign_eval.metrics import evaluate, mig
from dcign_eval.metrics.synthetic import SyntheticFactors
from trainer.errors import DcignError


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


def _posterior_of(mu, sd, rng):
    return mu + sd * rng.standard_normal(mu.shape), mu, sd


def test_continuous_mig_of_a_code_that_is_its_factors_is_near_its_maximum():
    rng = np.random.default_rng(0)
    f = rng.integers(0, [3, 6, 10], size=(1500, 3))
    samples, mu, sd = _posterior_of(f.astype(float), np.full(f.shape, 1e-3), rng)
    assert mig._compute_mig_continuous(samples, mu, sd, f) == pytest.approx(1.0, abs=0.01)
    # a wide posterior blurs the values together: the information drops
    samples, mu, sd = _posterior_of(f.astype(float), np.full(f.shape, 2.0), rng)
    assert mig._compute_mig_continuous(samples, mu, sd, f) < 0.5


def test_continuous_mig_of_constant_and_duplicated_codes_is_zero():
    rng = np.random.default_rng(1)
    f = rng.integers(0, [3, 6], size=(800, 2))
    samples, mu, sd = _posterior_of(np.zeros((800, 4)), np.ones((800, 4)), rng)
    assert mig._compute_mig_continuous(samples, mu, sd, f) == pytest.approx(0.0, abs=1e-9)
    z, mu, sd = _posterior_of(f.astype(float), np.full(f.shape, 1e-3), rng)
    both = [np.hstack([a, a]) for a in (z, mu, sd)]
    assert mig._compute_mig_continuous(*both, f) == pytest.approx(0.0, abs=1e-9)


def test_continuous_mig_averages_over_the_rows_asked_for():
    rng = np.random.default_rng(2)
    f = rng.integers(0, [4, 5], size=(1000, 2))
    samples, mu, sd = _posterior_of(f + rng.normal(0, 0.3, f.shape), np.full(f.shape, 0.2), rng)
    full = mig._compute_mig_continuous(samples, mu, sd, f)
    part = mig._compute_mig_continuous(samples, mu, sd, f, np.arange(0, 1000, 2))
    assert 0.3 < full < 1.0 and part == pytest.approx(full, abs=0.05) and part != full
    with pytest.raises(DcignError, match="positive"):
        mig._compute_mig_continuous(samples, mu, np.zeros_like(sd), f)
    with pytest.raises(DcignError, match="one shape"):
        mig._compute_mig_continuous(samples[:, :1], mu, sd, f)


def test_continuous_mig_through_evaluate_needs_a_posterior():
    data = SyntheticFactors([4, 6, 8])

    def posterior(x):
        return x, np.full(x.shape, 1e-3)

    kw = dict(num_train=600, num_samples=300)
    a = evaluate(data, lambda x: x, "mig_continuous", seed=0, posterior=posterior, **kw)
    b = evaluate(data, lambda x: x, "mig_continuous", seed=0, posterior=posterior, **kw)
    assert a == b and a["mig_continuous"] == pytest.approx(1.0, abs=0.02)
    assert "mig_continuous" not in evaluate(data, lambda x: x, ["mig"], num_train=300)
    everything = evaluate(data, lambda x: x, seed=0, num_train=300, num_eval=200,
                          dci_mode="extra-trees")
    assert "mig_continuous" not in everything and "mig" in everything
    with pytest.raises(DcignError, match="needs the encoder's posterior"):
        evaluate(data, lambda x: x, "mig_continuous", num_train=300)
