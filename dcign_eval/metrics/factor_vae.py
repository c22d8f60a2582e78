"""FactorVAE disentanglement score.

Kim & Mnih, "Disentangling by Factorising", ICML 2018, https://arxiv.org/abs/1802.05983
(Section 4), as disentanglement_lib computes it (``factor_vae_score``; unsupervised_study_v1:
batch 64, 10,000 train / 5,000 eval points, 10,000 points for the global variances, latents with
std < 0.05 pruned).

Each latent is scaled by its global standard deviation; each point fixes one factor k over a
batch of 64 grid points and the active latent with the smallest local variance (relative to its
global variance) votes for k. A majority-vote classifier maps each latent to the factor it votes
for most; the score is that classifier's accuracy on the evaluation votes. A code whose latents are
all pruned scores 0.

Fixed from the reference: it reports ``num_active_dims`` as the total number of latents
(``len`` of a boolean mask); here it is the number of latents that survive pruning.
"""

from __future__ import annotations

import numpy as np

from dcign_eval.metrics import _utils

_CHUNK = 512


def compute_factor_vae(data, represent, random_state, *, batch_size: int = 64,
                       num_train: int = 10000, num_eval: int = 5000,
                       num_variance_estimate: int = 10000, prune_threshold: float = 0.05,
                       cache=None) -> dict:
    """FactorVAE score of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        batch_size: grid points per batch with one factor fixed.
        num_train: votes used to build the majority-vote classifier.
        num_eval: votes used to score it.
        num_variance_estimate: points used for the global variances.
        prune_threshold: latents with global std below this are ignored.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``train_accuracy``, ``eval_accuracy`` (the score) and ``num_active_dims``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    batch_size = _utils.check_positive_int(batch_size, "batch_size", minimum=2)
    n_var = _utils.check_positive_int(num_variance_estimate, "num_variance_estimate", minimum=2)
    codes = cache(_utils.sample_factors(data, n_var, rng, cache.factor_sizes))
    global_variances = np.var(codes, axis=0, ddof=1)
    active = _prune_dims(global_variances, prune_threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train = _sample_local_variances(data, cache, batch_size, num_train, rng)
    evals = _sample_local_variances(data, cache, batch_size, num_eval, rng)
    return _compute_factor_vae(*train, *evals, global_variances,
                               num_factors=len(cache.factor_sizes), threshold=prune_threshold)


def _prune_dims(variances: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of latents whose standard deviation is at least ``threshold``."""
    return np.sqrt(variances) >= threshold


def _sample_local_variances(data, cache, batch_size: int, num_points: int,
                            rng: np.random.Generator):
    """(num_points, D) variances (ddof=1) over batches with one factor fixed, and that factor."""
    num_points = _utils.check_positive_int(num_points, "num_points")
    sizes = cache.factor_sizes
    labels = rng.integers(len(sizes), size=num_points)
    out = []
    for start in range(0, num_points, _CHUNK):
        k = labels[start: start + _CHUNK]
        n = len(k)
        factors = _utils.sample_factors(data, n * batch_size, rng, sizes).reshape(n, batch_size, -1)
        rows = np.arange(n)
        factors[rows, :, k] = factors[rows, 0, k][:, None]  # fix factor k over the batch
        out.append(np.var(cache(factors), axis=1, ddof=1))
    return np.concatenate(out), labels


def _votes(local_variances: np.ndarray, labels: np.ndarray, global_variances: np.ndarray,
           active: np.ndarray, num_factors: int) -> np.ndarray:
    """(F, D) vote counts: factor held fixed x latent of smallest relative local variance."""
    active_idx = np.flatnonzero(active)
    ratio = local_variances[:, active_idx] / global_variances[active_idx]
    winner = active_idx[np.argmin(ratio, axis=1)]
    votes = np.zeros((num_factors, len(global_variances)), np.int64)
    np.add.at(votes, (labels, winner), 1)
    return votes


def _compute_factor_vae(train_local_variances: np.ndarray, train_labels: np.ndarray,
                        eval_local_variances: np.ndarray, eval_labels: np.ndarray,
                        global_variances: np.ndarray, num_factors: int,
                        threshold: float = 0.05) -> dict:
    """Majority-vote classifier from local variances.

    Args:
        train_local_variances, eval_local_variances: (P, D) per-batch variances.
        train_labels, eval_labels: (P,) the factor held fixed in each batch.
        global_variances: (D,) variance of each latent over random points.
        num_factors: F.
        threshold: pruning threshold on the global std.

    Returns:
        dict with ``train_accuracy``, ``eval_accuracy`` and ``num_active_dims``.
    """
    global_variances = np.asarray(global_variances, dtype=np.float64)
    active = _prune_dims(global_variances, threshold)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _votes(train_local_variances, train_labels, global_variances, active,
                         num_factors)
    eval_votes = _votes(eval_local_variances, eval_labels, global_variances, active, num_factors)
    classifier = np.argmax(train_votes, axis=0)  # latent -> the factor it votes for most
    columns = np.arange(train_votes.shape[1])
    return {"train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
            "num_active_dims": int(active.sum())}
