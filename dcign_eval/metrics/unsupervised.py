"""Unsupervised scores: Gaussian total correlation and mean pairwise mutual information.

As disentanglement_lib's ``unsupervised_metrics`` (used in Locatello et al., "Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations", ICML 2019,
https://arxiv.org/abs/1811.12359; unsupervised_study_v1: 10,000 points, 20-bin histogram
discretiser). Neither needs the factors.

- Gaussian total correlation: the KL divergence between a Gaussian with the codes' covariance C
  and the product of its marginals, 0.5 (sum_i log C_ii - log det C) (nats; 0 for independent
  latents). The total correlation of Watanabe (1960) as used by beta-TCVAE
  (https://arxiv.org/abs/1802.04942) and FactorVAE (https://arxiv.org/abs/1802.05983).
- Mutual information: the mean over ordered pairs of distinct latents of the mutual information of
  the binned latents (nats).

Fixed from the reference (where it returns inf or NaN): constant latents are left out (their log
variance is -inf); exactly dependent latents (a duplicated code) make C singular and the total
correlation infinite, so the eigenvalues of the correlation matrix are floored at ``EIGEN_FLOOR``
(1e-6): each redundant latent then adds at most 0.5 log(1e6) ~ 6.9 nats, and a code whose
correlation spectrum stays above the floor gets exactly the reference's value. Fewer than two
(non-constant) latents score 0 on both.
"""

from __future__ import annotations

import numpy as np

from dcign_eval.metrics import _utils

#: Floor on the eigenvalues of the latents' correlation matrix (see module docstring).
EIGEN_FLOOR = 1e-6


def compute_unsupervised(data, represent, random_state, *, num_train: int = 10000,
                         batch_size: int = 16, num_bins: int = 20, cache=None) -> dict:
    """Unsupervised scores of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: points sampled.
        batch_size: factors are drawn in batches of this size.
        num_bins: histogram bins per latent (mutual information).
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``gaussian_total_correlation`` and ``mutual_info_score``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    codes, _ = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    return {"gaussian_total_correlation": _compute_gaussian_total_correlation(codes),
            "mutual_info_score": _compute_mutual_info(codes, num_bins)}


def _gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation of a Gaussian with covariance ``cov`` (D, D), constant latents dropped
    and the correlation spectrum floored at EIGEN_FLOOR."""
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    var = np.diag(cov)
    keep = var > 0
    if keep.sum() < 2:
        return 0.0
    cov = cov[np.ix_(keep, keep)]
    sd = np.sqrt(np.diag(cov))
    corr = cov / sd[:, None] / sd[None, :]
    eig = np.linalg.eigvalsh((corr + corr.T) / 2)
    # 0.5 (sum log diag C - log det C) = -0.5 log det(correlation)
    return float(max(0.0, -0.5 * np.sum(np.log(np.maximum(eig, EIGEN_FLOOR)))))


def _compute_gaussian_total_correlation(codes: np.ndarray) -> float:
    """Gaussian total correlation of codes (N, D)."""
    codes = _utils.check_codes(codes, min_rows=2)
    active = codes[:, ~_utils.constant_dims(codes)]
    if active.shape[1] < 2:
        return 0.0
    return _gaussian_total_correlation(np.cov(active, rowvar=False))


def _compute_mutual_info(codes: np.ndarray, num_bins: int = 20) -> float:
    """Mean mutual information (nats) between distinct binned latents of codes (N, D)."""
    codes = _utils.check_codes(codes, min_rows=2)
    d = codes.shape[1]
    if d < 2:
        return 0.0
    binned = _utils.histogram_discretize(codes, num_bins)
    mi = _utils.discrete_mutual_info(binned, binned)
    np.fill_diagonal(mi, 0.0)
    return float(mi.sum() / (d * d - d))
