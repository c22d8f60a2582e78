"""The metrics' shared helpers (:mod:`dcign_eval.metrics._utils`): the discretiser, mutual
information, validation and the code cache, on hand-made inputs."""

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from dcign_eval.metrics import _utils
from dcign_eval.metrics.synthetic import SyntheticFactors, flat_index
from trainer.errors import DcignError


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
