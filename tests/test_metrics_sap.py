"""SAP (:mod:`dcign_eval.metrics.sap`) on hand-made codes."""

import numpy as np
import pytest

from dcign_eval.metrics import sap


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
