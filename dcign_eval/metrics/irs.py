"""Interventional Robustness Score (IRS).

Suter et al., "Robustly Disentangled Causal Mechanisms: Validating Deep Representations for
Interventional Robustness", ICML 2019, https://arxiv.org/abs/1811.00007, as disentanglement_lib
computes it (``irs``; unsupervised_study_v1: 10,000 points, factors binned into 20 histogram bins,
99th percentile of the deviations).

For each factor i and each of its (binned) values v: the 99th percentile, per latent, of
|z - E[z | factor_i = v]|; averaged over v; divided by the latent's largest deviation from its mean
max |z - E z|; IRS_matrix = 1 - that. A latent's score is its best factor's; the IRS is their
average weighted by the largest deviations. Constant latents are dropped first.

Fixed from the reference: it reports ``num_active_dims`` as the *sum of the latent values*
(``np.sum`` of the kept matrix: numbers like 538448, or negative); here it is the number of kept
latents. It keeps a latent when ``var > 0``, and floating-point rounding in the variance of an
all-equal latent makes that true, so 0 / 0 turned the score into NaN; here a latent is constant
when its range is (relatively) zero (``_utils.constant_dims``). No active latent gives 0.
"""

from __future__ import annotations

import numpy as np

from dcign_eval.metrics import _utils


def compute_irs(data, represent, random_state, *, num_train: int = 10000, batch_size: int = 16,
                diff_quantile: float = 0.99, num_bins: int = 20, cache=None) -> dict:
    """IRS of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: points sampled.
        batch_size: factors are drawn in batches of this size.
        diff_quantile: quantile of the within-value deviations (1.0 is the paper's maximum).
        num_bins: histogram bins for the factor values.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``IRS`` and ``num_active_dims``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    codes, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    result = _compute_irs(codes, factors, diff_quantile, num_bins)
    return {"IRS": result["avg_score"], "num_active_dims": result["num_active_dims"]}


def _compute_irs(codes: np.ndarray, factors: np.ndarray, diff_quantile: float = 0.99,
                 num_bins: int = 20) -> dict:
    """IRS from codes (N, D) and factor indices (N, F).

    Returns:
        dict with ``avg_score`` (the IRS), ``num_active_dims``, and over the active latents
        ``disentanglement_scores``, ``irs_matrix`` (latents x factors), ``parents`` and
        ``max_deviations``.
    """
    codes, factors = _utils.check_codes_factors(codes, factors)
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must be in [0, 1], got {diff_quantile}")
    active = codes[:, ~_utils.constant_dims(codes)]
    empty = {"avg_score": 0.0, "num_active_dims": 0, "disentanglement_scores": np.zeros(0),
             "irs_matrix": np.zeros((0, factors.shape[1])), "parents": np.zeros(0, np.int64),
             "max_deviations": np.zeros(0)}
    if active.shape[1] == 0:
        return empty
    result = _irs_scores(_utils.histogram_discretize(factors, num_bins), active, diff_quantile)
    result["num_active_dims"] = int(active.shape[1])
    return result


def _irs_scores(factor_bins: np.ndarray, latents: np.ndarray, diff_quantile: float) -> dict:
    """The IRS arithmetic on binned factors (N, F) and non-constant latents (N, D)."""
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    num_lat, num_gen = latents.shape[1], factor_bins.shape[1]
    cum_deviations = np.zeros((num_lat, num_gen))
    for i in range(num_gen):
        order = np.argsort(factor_bins[:, i], kind="stable")
        values, starts = np.unique(factor_bins[order, i], return_index=True)
        for group in np.split(order, starts[1:]):
            z = latents[group]
            diffs = np.abs(z - z.mean(axis=0))
            cum_deviations[:, i] += np.quantile(diffs, diff_quantile, axis=0)
        cum_deviations[:, i] /= len(values)
    irs_matrix = 1.0 - cum_deviations / max_deviations[:, None]
    scores = irs_matrix.max(axis=1)
    avg = np.average(scores, weights=max_deviations) if max_deviations.sum() > 0 \
        else float(np.mean(scores))
    return {"avg_score": float(avg), "disentanglement_scores": scores, "irs_matrix": irs_matrix,
            "parents": irs_matrix.argmax(axis=1), "max_deviations": max_deviations}
