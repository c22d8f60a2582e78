"""The report's first sentence, computed from the paper's measurements."""

import pandas as pd
import pytest

from dcign_eval.headline import headline, paper_result
from trainer.errors import DcignError


def metrics(dcign, baseline):
    rows = [(model, f"spearman_{f}", v) for model, values in (("d", dcign), ("b", baseline))
            for f, v in zip(("azimuth", "elevation", "light"), values)]
    return pd.DataFrame(rows, columns=["model", "metric", "value"]).assign(seconds=0.0)


def test_a_dcign_that_orders_every_factor_above_the_baseline_says_so():
    result = paper_result(metrics((0.97, 0.93, 0.99), (0.86, 0.37, 0.92)), "d", "b")
    assert result["reaches"].all() and result["beats"].all()
    sentence = headline(result)
    assert "every named neuron of the DC-IGN orders its factor" in sentence
    assert "azimuth 0.97 (baseline 0.86)" in sentence and "not" not in sentence


def test_each_shortfall_is_named_with_its_reason():
    # the quick demo before its recipe: azimuth and elevation low, light barely above
    result = paper_result(metrics((0.24, 0.15, 0.93), (0.86, 0.37, 0.92)), "d", "b")
    assert result["reaches"].tolist() == [False, False, True]
    assert result["beats"].tolist() == [False, False, True]
    sentence = headline(result)
    assert sentence.startswith("On held-out faces the DC-IGN does not yet show the paper's result")
    assert "azimuth (below 0.9 and not above the baseline) and elevation (below 0.9 and not " \
           "above the baseline) fall short" in sentence
    # reaching 0.9 is not enough when the baseline's best latent does better
    sentence = headline(paper_result(metrics((0.95, 0.93, 0.91), (0.80, 0.37, 0.92)), "d", "b"))
    assert "light (not above the baseline) falls short" in sentence


def test_without_a_baseline_only_the_target_counts():
    frame = metrics((0.95, 0.5, 0.99), (0, 0, 0))
    result = paper_result(frame, "d")
    assert result["beats"].all() and result["baseline"].isna().all()
    assert "elevation (below 0.9) falls short (azimuth 0.95, elevation 0.50" in headline(result)
    with pytest.raises(DcignError, match="lack spearman_azimuth"):
        paper_result(frame[frame.metric != "spearman_azimuth"], "d")


def with_intervals(frame, half):
    """``frame`` with a 95% interval of half-width ``half[model]`` around every value."""
    h = frame["model"].map(half)
    return frame.assign(low=frame["value"] - h, high=frame["value"] + h)


def test_with_intervals_beating_the_baseline_needs_them_apart():
    frame = metrics((0.97, 0.93, 0.99), (0.86, 0.37, 0.92))
    # narrow intervals: every neuron clear of the baseline, the figures written with them
    sentence = headline(paper_result(with_intervals(frame, {"d": 0.01, "b": 0.01}), "d", "b"))
    assert sentence.startswith("On held-out faces every named neuron of the DC-IGN orders")
    assert "their intervals apart" in sentence
    assert "azimuth 0.97 ± 0.01 (baseline 0.86 ± 0.01)" in sentence
    assert "± is half a 95% interval" in sentence
    # wide ones: light (0.99 against 0.92) is above the baseline only within the intervals
    result = paper_result(with_intervals(frame, {"d": 0.01, "b": 0.07}), "d", "b")
    assert result["above"].all()
    assert result["beats"].tolist() == [True, True, False]
    sentence = headline(result)
    assert sentence.startswith("On held-out faces the DC-IGN does not yet show the paper's result")
    assert "light (above the baseline only within the intervals) falls short" in sentence
    assert "light 0.99 ± 0.01 (baseline 0.92 ± 0.07)" in sentence


def test_without_interval_widths_the_values_decide_as_before():
    # one seed: low = high = value, no interval: the claim and the figures as without intervals
    frame = metrics((0.97, 0.93, 0.99), (0.86, 0.37, 0.92))
    result = paper_result(with_intervals(frame, {"d": 0.0, "b": 0.0}), "d", "b")
    assert result["beats"].all() and result["dcign_low"].isna().all()
    assert headline(result) == headline(paper_result(frame, "d", "b"))
    assert "±" not in headline(result)


def test_spearman_interval_over_the_grid_identities():
    import numpy as np

    from dcign_eval.metrics.paper import spearman_intervals

    rng = np.random.default_rng(0)
    identity = np.repeat(np.arange(6), 50)
    azimuth = np.tile(np.linspace(-90, 90, 50), 6)
    factors = pd.DataFrame({"identity": identity, "azimuth": azimuth})
    # latent 0 is the angle itself: |rho| 1 on every resample; latent 1 follows it by an offset
    # per identity, so which identities are drawn moves its rho
    codes = np.column_stack([azimuth, azimuth / 90 + 3 * rng.normal(size=6)[identity]])
    out = spearman_intervals(codes, factors, {"azimuth": 0}, resamples=200)
    assert out["azimuth"] == pytest.approx((1.0, 1.0))
    out = spearman_intervals(codes, factors, {"azimuth": 1}, resamples=200)
    low, high = out["azimuth"]
    assert 0 < low < high < 1 and high - low > 0.05
    assert spearman_intervals(codes, factors, {"azimuth": 1}, resamples=200) == out
