"""dcign_eval.intervals: bootstrap weights, percentile intervals, the weighted Spearman and median,
the paired bootstrap of means, and how a figure and its interval are written."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from dcign_eval.intervals import (bootstrap_weights, difference_verdict, format_interval,
                                  intervals_apart, paired_means, percentile_interval,
                                  weighted_median, weighted_spearman)
from trainer.errors import DcignError


def test_bootstrap_weights_draw_every_group_count_with_a_fixed_seed():
    w = bootstrap_weights(7, 300, random_state=[3, 19])
    assert w.shape == (300, 7) and (w.sum(axis=1) == 7).all() and (w >= 0).all()
    np.testing.assert_array_equal(w, bootstrap_weights(7, 300, random_state=[3, 19]))
    assert not np.array_equal(w, bootstrap_weights(7, 300, random_state=[4, 19]))
    # each group is drawn once per resample on average
    assert w.mean() == pytest.approx(1.0)
    assert bootstrap_weights(7, 0).shape == (0, 7)
    with pytest.raises(DcignError, match="resamples must be an integer >= 0"):
        bootstrap_weights(7, -1)


def test_percentile_interval_leaves_undefined_resamples_out():
    samples = np.array([np.arange(101.0), np.r_[np.full(50, np.nan), np.zeros(51)],
                        np.full(101, np.nan)])
    low, high = percentile_interval(samples)
    assert (low[0], high[0]) == pytest.approx((2.5, 97.5))
    assert (low[1], high[1]) == (0.0, 0.0)
    assert np.isnan(low[2]) and np.isnan(high[2])
    low, high = percentile_interval(np.zeros((2, 0)))
    assert np.isnan(low).all() and np.isnan(high).all()


def test_weighted_spearman_is_the_spearman_of_the_repeated_sample():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        x = np.round(rng.normal(size=n), 1)  # ties in both
        y = np.round(x + rng.normal(size=n), 0)
        counts = rng.integers(0, 4, n)
        counts[:2] = 1
        copies = np.repeat(np.arange(n), counts)
        rho = weighted_spearman(x, y, np.stack([np.ones(n), counts]))
        assert rho[0] == pytest.approx(spearmanr(x, y).statistic)
        assert rho[1] == pytest.approx(spearmanr(x[copies], y[copies]).statistic)
    # a resample that leaves x constant has no rho
    assert np.isnan(weighted_spearman([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [[0, 3, 0]])[0])


def test_format_interval_writes_value_plus_minus_half_width():
    assert format_interval(0.912, 0.89, 0.93) == "0.912 ± 0.020"
    assert format_interval(0.91, 0.89, 0.93, digits=2) == "0.91 ± 0.02"
    # an asymmetric interval: half its width (the CSV keeps both ends)
    assert format_interval(0.9, 0.7, 1.0) == "0.900 ± 0.150"
    # below the value's decimals the half-width is written to them, not in scientific notation
    assert format_interval(0.994, 0.99399, 0.99401) == "0.994 ± 0.000"
    # no interval: the value alone
    assert format_interval(0.5) == "0.500"
    assert format_interval(0.5, float("nan"), float("nan")) == "0.500"
    assert format_interval(417.699, 400.0, 430.0, digits=1) == "417.7 ± 15.0"
    assert format_interval(float("nan")) == ""


def test_intervals_apart_only_when_they_do_not_overlap():
    assert intervals_apart(0.8, 0.9, 0.5, 0.7)
    assert intervals_apart(0.5, 0.7, 0.8, 0.9)
    assert not intervals_apart(0.5, 0.8, 0.7, 0.9)
    assert not intervals_apart(0.5, 0.7, 0.7, 0.9)  # touching ends overlap


def test_weighted_median_is_the_median_of_the_repeated_sample():
    rng = np.random.default_rng(2)
    for n in (2, 5, 8):
        values = np.round(rng.normal(size=n), 1)  # ties
        weights = bootstrap_weights(n, 40, random_state=n)
        expected = [np.median(np.repeat(values, row.astype(int))) for row in weights]
        np.testing.assert_allclose(weighted_median(values, weights), expected)
        assert weighted_median(values, np.ones(n))[0] == pytest.approx(np.median(values))


def test_paired_means_compare_each_model_with_the_first_on_the_same_resamples():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"error": rng.normal(1.0, 0.3, 40), "score": rng.normal(0.5, 0.2, 40)})
    worse = base.assign(error=base["error"] + 0.1 + rng.normal(0, 0.05, 40))
    table = paired_means({"a": base, "same": base.copy(), "worse": worse}, 300, 7)
    again = paired_means({"a": base, "same": base.copy(), "worse": worse}, 300, 7)
    pd.testing.assert_frame_equal(table, again)  # deterministic for a seed
    assert not table.equals(paired_means({"a": base, "same": base, "worse": worse}, 300, 8))
    t = table.set_index("model")
    for model in t.index:
        for m in ("error", "score"):  # the interval holds the mean
            assert t.loc[model, f"{m}_low"] <= t.loc[model, m] <= t.loc[model, f"{m}_high"]
    assert t.loc["a", "error"] == pytest.approx(base["error"].mean())
    assert t[["error_difference", "error_difference_low"]].loc["a"].isna().all()
    # a model against itself: no difference, not significant
    assert (t.loc["same", "error_difference_low"], t.loc["same", "error_difference_high"]) \
        == (0.0, 0.0)
    assert difference_verdict(0.0, 0.0, "lower") == "not significant"
    # the paired interval sees a shift the two models' own intervals cannot tell apart
    assert t.loc["worse", "error_difference_low"] > 0
    assert not intervals_apart(t.loc["a", "error_low"], t.loc["a", "error_high"],
                               t.loc["worse", "error_low"], t.loc["worse", "error_high"])
    assert difference_verdict(t.loc["worse", "error_difference_low"],
                              t.loc["worse", "error_difference_high"], "lower") \
        == "significant: higher (worse)"
    # fewer groups, a wider interval
    few = paired_means({"a": base[:8]}, 300, 7).iloc[0]
    assert few["error_high"] - few["error_low"] > t.loc["a", "error_high"] - t.loc["a", "error_low"]
    # no resamples, or a single group: the value alone
    none = paired_means({"a": base, "worse": worse}, 0).iloc[1]
    assert np.isnan(none["error_low"]) and none["resamples"] == 0
    assert difference_verdict(none["error_difference_low"], none["error_difference_high"]) \
        == "not tested (no interval)"
    assert np.isnan(paired_means({"a": base[:1]}, 100).iloc[0]["error_low"])
    with pytest.raises(DcignError, match="same groups"):
        paired_means({"a": base, "b": base[:10]})


def test_difference_verdict_reads_the_direction():
    assert difference_verdict(0.1, 0.3, "higher") == "significant: higher (better)"
    assert difference_verdict(-0.3, -0.1, "higher") == "significant: lower (worse)"
    assert difference_verdict(-0.3, -0.1, "lower") == "significant: lower (better)"
    assert difference_verdict(-0.1, 0.1) == "not significant"
    assert difference_verdict(float("nan"), 0.1) == "not tested (no interval)"
    with pytest.raises(DcignError, match="better"):
        difference_verdict(0.1, 0.2, "up")
