"""IRS (:mod:`dcign_eval.metrics.irs`) against the reference's arithmetic."""

import numpy as np
import pytest

from dcign_eval.metrics import _utils, irs


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
