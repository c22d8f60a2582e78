"""Mutual Information Gap (MIG), in two declared variants.

Chen et al., "Isolating Sources of Disentanglement in Variational Autoencoders", NeurIPS 2018,
https://arxiv.org/abs/1802.04942 (Section 5).

- ``mig`` (:func:`compute_mig`): as disentanglement_lib computes it (unsupervised_study_v1:
  10,000 points, 20-bin histogram discretiser of the encoder means).
- ``mig_continuous`` (:func:`compute_mig_continuous`): the paper's own estimator (its code,
  rtqichen/beta-tcvae): the mutual information I(z_j; v_k) = H(z_j) - H(z_j | v_k) of latent
  samples z ~ q(z|x), the entropies estimated from the encoder's posterior q(z|x) = N(mu, sd^2):
  H(z_j) = E[-log q(z_j)] with q(z_j) = 1/N sum_n q(z_j | x_n) over the N sampled points, and
  H(z_j | v_k) = sum_v p(v) H(z_j | v_k = v) with the mixture over the points whose factor k is v.
  It needs the sd, so only models with an encoder posterior have it. Where the paper divides by
  log K_k (a uniform factor), this divides by the factor's entropy in the sample (the same on a
  uniform grid), as ``mig`` does; negative estimates of the information are taken as 0, as the
  paper's code does. Each entropy is an average over ``num_samples`` of the drawn points.

The histogram variant:

The latents are binned into 20 equal-width bins; for each factor, the gap between the largest and
second-largest mutual information with a latent, divided by the factor's entropy; the mean over
factors.

Caveats the reference shares: with 20 bins a factor with more than 20 values cannot be captured
fully, so a perfect code on factor sizes [3, 6, 40, 32, 32] scores about 0.896, not 1; equal-width
bins are fragile to outliers. Fixed from the reference: a code with one latent does not crash
(the missing second-best counts as 0), and a factor that takes a single value in the sample (zero
entropy, gap undefined) is left out of the mean rather than turning it into NaN; with no varying
factor the score is 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from dcign_eval.metrics import _utils
from trainer.errors import DcignError

#: Log-densities evaluated at once by the continuous estimator (memory of one chunk).
_CHUNK = 4_000_000


def compute_mig(data, represent, random_state, *, num_train: int = 10000, batch_size: int = 16,
                num_bins: int = 20, cache=None) -> dict:
    """MIG of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: points sampled.
        batch_size: factors are drawn in batches of this size.
        num_bins: histogram bins per latent.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``discrete_mig``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    codes, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    return {"discrete_mig": _compute_mig(codes, factors, num_bins)}


def _compute_mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """MIG from codes (N, D) and factor indices (N, F)."""
    codes, factors = _utils.check_codes_factors(codes, factors)
    mi = _utils.discrete_mutual_info(_utils.histogram_discretize(codes, num_bins), factors)
    return _mig_from_mutual_info(mi, _utils.discrete_entropy(factors))


def _mig_from_mutual_info(mutual_info: np.ndarray, entropy: np.ndarray) -> float:
    """Mean over factors of (top-1 MI - top-2 MI) / H(factor).

    Args:
        mutual_info: (D, F) mutual information (nats) of latents with factors.
        entropy: (F,) factor entropies (nats).
    """
    mutual_info = np.asarray(mutual_info, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    varying = entropy > 0
    if not varying.any():
        return 0.0
    gap = _utils.top_two_gap(mutual_info)
    return float(np.mean(gap[varying] / entropy[varying]))


def compute_mig_continuous(data, represent, random_state, *, posterior, num_train: int = 4000,
                           num_samples: int = 500, batch_size: int = 16, cache=None) -> dict:
    """Continuous MIG of an encoder's posterior on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: unused (the posterior gives the means); kept for the suite's common signature.
        random_state: np.random.Generator (or int seed).
        posterior: maps a batch of observations to (mu, sd) of q(z|x), each (N, D).
        num_train: points sampled; their posteriors are the mixture components.
        num_samples: drawn points the entropies are averaged over (at most ``num_train``).
        batch_size: factors are drawn in batches of this size.
        cache: the suite's cache of ``represent``'s codes, unused: the posterior gets its own.

    Returns:
        dict with ``continuous_mig``.
    """
    if not callable(posterior):
        raise DcignError(f"posterior must be callable (observations -> (mu, sd)), "
                         f"got {type(posterior).__name__}")
    rng = _utils.as_generator(random_state)
    num_samples = _utils.check_positive_int(num_samples, "num_samples")

    def stacked(observations):
        mu, sd = posterior(observations)
        return np.hstack([_utils.check_codes(mu, "posterior mean"),
                          _utils.check_codes(sd, "posterior sd")])

    cache = _utils.CodeCache(data, stacked)
    both, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    mu, sd = np.split(both, 2, axis=1)
    samples = mu + sd * rng.standard_normal(mu.shape)
    rows = np.sort(rng.choice(len(mu), size=min(num_samples, len(mu)), replace=False))
    return {"continuous_mig": _compute_mig_continuous(samples, mu, sd, factors, rows)}


def _compute_mig_continuous(samples: np.ndarray, mu: np.ndarray, sd: np.ndarray,
                            factors: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Continuous MIG from one posterior sample per point.

    Args:
        samples: (N, D) one draw of z ~ q(z|x_n) per point.
        mu, sd: (N, D) the posteriors q(z|x_n) = N(mu, sd^2) (sd > 0).
        factors: (N, F) factor indices of the points.
        rows: which samples the entropies average over (None: all N).

    Returns:
        mean over varying factors of (top-1 MI - top-2 MI) / H(factor).
    """
    mu, factors = _utils.check_codes_factors(mu, factors)
    samples = _utils.check_codes(samples, "samples")
    sd = _utils.check_codes(sd, "sd")
    if samples.shape != mu.shape or sd.shape != mu.shape:
        raise DcignError(f"samples {samples.shape}, mu {mu.shape} and sd {sd.shape} must have "
                         f"one shape")
    if np.any(sd <= 0):
        raise DcignError("the posterior sd must be positive")
    rows = np.arange(len(mu)) if rows is None else np.asarray(rows, dtype=np.int64)
    in_rows = np.zeros(len(mu), bool)
    in_rows[rows] = True
    marginal = _mixture_entropy(samples[in_rows], mu, sd)
    info = np.zeros((mu.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        conditional = np.zeros(mu.shape[1])
        for value in np.unique(factors[:, k]):
            members = factors[:, k] == value
            evaluated = members & in_rows
            if evaluated.any():
                weight = evaluated.sum() / in_rows.sum()  # p(v) among the evaluated samples
                conditional += weight * _mixture_entropy(samples[evaluated], mu[members],
                                                         sd[members])
        info[:, k] = np.clip(marginal - conditional, 0.0, None)
    return _mig_from_mutual_info(info, _utils.discrete_entropy(factors))


def _mixture_entropy(samples: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """(D,) -mean_s log q(z_sj), q(z_j) = 1/M sum_m N(z_j; mu_mj, sd_mj^2), per latent j.

    The (samples x components x latents) log-densities are single precision (half the time of
    double; the entropies are sums of their log-sum-exps, accumulated in double)."""
    num, dims = mu.shape
    total = np.zeros(dims)
    scale = (1.0 / sd).astype(np.float32)
    centre = mu.astype(np.float32)
    log_norm = (np.log(scale) - 0.5 * math.log(2 * math.pi)).astype(np.float32)  # (M, D)
    step = max(1, _CHUNK // max(num * dims, 1))
    for start in range(0, len(samples), step):
        z = samples[start:start + step, None, :].astype(np.float32)  # (S, 1, D)
        log_density = np.subtract(z, centre)
        log_density *= scale
        np.square(log_density, out=log_density)
        log_density *= -0.5
        log_density += log_norm  # (S, M, D)
        total -= np.sum(logsumexp(log_density, axis=1).astype(np.float64) - math.log(num),
                        axis=0)
    return total / len(samples)
