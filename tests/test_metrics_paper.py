"""The paper's measurements (:mod:`dcign_eval.metrics.paper`): named-neuron fits and the
intrinsic block's invariance."""

import numpy as np
import pandas as pd
import pytest

from dcign_eval.metrics.paper import PAPER_KEYS, best_single_latent, paper_measurements


def grid_factors(n_id=4, seed=0):
    rng = np.random.default_rng(seed)
    n = n_id * 60
    return pd.DataFrame({"identity": np.repeat(np.arange(n_id), 60),
                         "azimuth": rng.uniform(-90, 90, n), "elevation": rng.uniform(-30, 30, n),
                         "light": rng.uniform(-80, 80, n)})


def test_named_neurons_that_are_their_factors_score_one():
    f = grid_factors()
    rng = np.random.default_rng(1)
    identity_code = rng.normal(size=(f.identity.max() + 1, 5))[f.identity]
    codes = np.column_stack([np.tanh(f.azimuth / 50), -f.elevation ** 3, f.light, identity_code])
    out = paper_measurements(codes, f, {"azimuth": 0, "elevation": 1, "light": 2})
    assert set(PAPER_KEYS) <= set(out)
    for name in ("azimuth", "elevation", "light"):
        assert out[f"spearman_{name}"] == pytest.approx(1.0)
        assert out[f"r2_{name}"] == pytest.approx(1.0)
    assert out["intrinsic_invariance"] == pytest.approx(0.0)  # block depends on identity only


def test_baseline_uses_its_best_single_latent_and_whole_code():
    f = grid_factors()
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(len(f), 6))
    codes[:, 4] = f.light + rng.normal(scale=5, size=len(f))
    assert best_single_latent(codes, f.light.to_numpy()) == 4
    out = paper_measurements(codes, f, {})
    assert out["neuron_light"] == 4 and out["spearman_light"] > 0.9
    assert out["spearman_azimuth"] < 0.3
    assert 0.8 < out["intrinsic_invariance"] < 1.2  # noise: same and other identities alike
