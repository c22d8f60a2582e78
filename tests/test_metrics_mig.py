"""MIG (:mod:`dcign_eval.metrics.mig`) on hand-made mutual information and codes."""

import numpy as np
import pytest

from dcign_eval.metrics import mig


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
