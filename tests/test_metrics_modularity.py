"""Modularity and explicitness (:mod:`dcign_eval.metrics.modularity`) on hand-made inputs."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from dcign_eval.metrics import modularity


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
