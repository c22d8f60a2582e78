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
