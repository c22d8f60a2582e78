"""The DC-IGN paper's measurements of a model, on a factor grid of held-out identities.

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167, Section 4: scatter plots of the azimuth, elevation and light
latents against their true factors on test faces, and the claim that the intrinsic block is
invariant to pose and light. :func:`paper_measurements` turns both into numbers with the pure
functions of :mod:`.factor_fit`:

* ``spearman_<factor>`` / ``r2_<factor>``: the named neuron's encoder mean against the true
  factor over the whole grid (every other factor varying too, which is stricter than the paper's
  single-factor test batches). A baseline has no named neurons: its best single latent per factor
  (largest Spearman |rho| on the same grid) stands in, and ``neuron_<factor>`` says which.
* ``intrinsic_invariance``: mean within-identity over mean between-identity distance of the
  intrinsic block (latents 3..) of a DC-IGN, or of a baseline's whole code. Lower is better.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from dcign_eval.intervals import (LEVEL, RESAMPLES, bootstrap_weights, percentile_interval,
                                  weighted_spearman)
from dcign_eval.metrics import _utils
from dcign_eval.metrics.factor_fit import intrinsic_invariance, monotone_fit

ANGLE_FACTORS = ("azimuth", "elevation", "light")
#: Keys :func:`paper_measurements` returns, in report order.
PAPER_KEYS = tuple(f"{kind}_{f}" for f in ANGLE_FACTORS for kind in ("spearman", "r2")) + (
    "intrinsic_invariance",)


def best_single_latent(codes: np.ndarray, factor: np.ndarray) -> int:
    """The latent with the largest Spearman |rho| against ``factor`` (ties: lowest index)."""
    ranked_codes = np.apply_along_axis(rankdata, 0, codes)
    ranked_factor = rankdata(factor)
    rc = ranked_codes - ranked_codes.mean(0)
    rf = ranked_factor - ranked_factor.mean()
    denom = np.sqrt((rc ** 2).sum(0) * (rf ** 2).sum())
    rho = np.divide(rc.T @ rf, denom, out=np.zeros(codes.shape[1]), where=denom > 0)
    return int(np.argmax(np.abs(rho)))


def paper_measurements(codes, factors: pd.DataFrame, latent_names: dict[str, int],
                       max_points: int = 4000, random_state=0) -> dict[str, float]:
    """The paper's figures as numbers.

    Args:
        codes: (N, D) encoder means of the grid images.
        factors: (N,) rows of identity, azimuth, elevation, light (degrees) for those images.
        latent_names: the model's named latents ({} for a baseline).
        max_points: rows used for the O(N^2) invariance distances.
        random_state: seed or Generator choosing those rows.

    Returns:
        :data:`PAPER_KEYS` plus ``neuron_<factor>`` (the latent used for each factor).
    """
    codes = _utils.check_codes(codes)
    out: dict[str, float] = {}
    for name in ANGLE_FACTORS:
        values = factors[name].to_numpy(dtype=float)
        neuron = latent_names.get(name)
        if neuron is None:
            neuron = best_single_latent(codes, values)
        fit = monotone_fit(codes[:, neuron], values)
        out[f"spearman_{name}"] = fit["spearman"]
        out[f"r2_{name}"] = fit["r2"]
        out[f"neuron_{name}"] = float(neuron)
    block = codes[:, len(latent_names):] if latent_names else codes
    out["intrinsic_invariance"] = intrinsic_invariance(
        block, factors["identity"].to_numpy(), max_points=max_points, random_state=random_state)
    return out


def spearman_intervals(codes, factors: pd.DataFrame, neurons: Mapping[str, int],
                       resamples: int = RESAMPLES, random_state: int = 0,
                       level: float = LEVEL) -> dict[str, tuple[float, float]]:
    """The 95% interval of each neuron's Spearman |rho| with its factor, by the bootstrap over
    the grid's identities (:func:`dcign_eval.intervals.weighted_spearman`: each resample weighs
    the faces by their identity's draw count). The neuron is held fixed (a baseline's best single
    latent as chosen on the whole grid).

    Args:
        codes: (N, D) grid codes.
        factors: the grid's N rows with ``identity`` and the factor columns.
        neurons: factor -> latent index.
        resamples: bootstrap resamples.
        random_state: seed of the resamples.

    Returns:
        factor -> (low, high).
    """
    codes = np.asarray(codes)
    ids, inverse = np.unique(factors["identity"].to_numpy(), return_inverse=True)
    weights = bootstrap_weights(len(ids), resamples, [int(random_state), 29])[:, inverse]
    out = {}
    for factor, neuron in neurons.items():
        rho = weighted_spearman(codes[:, int(neuron)], factors[factor].to_numpy(), weights)
        low, high = percentile_interval(np.abs(rho), level)
        out[factor] = (float(low), float(high))
    return out
