"""BetaVAE disentanglement score.

Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017, https://openreview.net/forum?id=Sy2fzU9gl (Section 3), as
disentanglement_lib computes it (``beta_vae_sklearn``; unsupervised_study_v1: batch 64,
10,000 train / 5,000 eval points).

Each point picks a factor k, draws two batches of 64 grid points that share factor k's value and
takes the mean absolute difference of their codes; a logistic regression predicts k from that
feature vector, and the score is its accuracy on the evaluation points. A perfect code scores 1,
a code carrying no information scores chance (1 / number of factors).

Differences from the reference: the logistic regression's solver is pinned (lbfgs, C=1,
max_iter=100: today's scikit-learn defaults; the reference inherits whatever the installed version
defaults to); the batches are drawn vectorised from a ``np.random.Generator``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from dcign_eval.metrics import _utils

#: Points per chunk when sampling the batch pairs (bounds memory: chunk x batch x D codes).
_CHUNK = 512


def compute_beta_vae(data, represent, random_state, *, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000, cache=None) -> dict:
    """BetaVAE score of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        batch_size: grid points per batch of each pair.
        num_train: training points of the classifier.
        num_eval: evaluation points.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``train_accuracy`` and ``eval_accuracy`` (the score).
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    batch_size = _utils.check_positive_int(batch_size, "batch_size")
    train_x, train_y = _sample_points(data, cache, batch_size, num_train, rng)
    eval_x, eval_y = _sample_points(data, cache, batch_size, num_eval, rng)
    return _compute_beta_vae(train_x, train_y, eval_x, eval_y, rng)


def _sample_points(data, cache, batch_size: int, num_points: int, rng: np.random.Generator):
    """Features (num_points, D) and labels (num_points,) of the BetaVAE classifier."""
    num_points = _utils.check_positive_int(num_points, "num_points", minimum=2)
    sizes = cache.factor_sizes
    labels = rng.integers(len(sizes), size=num_points)
    features = []
    for start in range(0, num_points, _CHUNK):
        k = labels[start: start + _CHUNK]
        n = len(k)
        f1 = _utils.sample_factors(data, n * batch_size, rng, sizes).reshape(n, batch_size, -1)
        f2 = _utils.sample_factors(data, n * batch_size, rng, sizes).reshape(n, batch_size, -1)
        rows = np.arange(n)
        f2[rows, :, k] = f1[rows, :, k]  # both batches share factor k's values
        features.append(_features(cache(f1), cache(f2)))
    return np.concatenate(features), labels


def _features(codes1: np.ndarray, codes2: np.ndarray) -> np.ndarray:
    """Mean |codes1 - codes2| over the batch axis: (P, B, D) pairs -> (P, D) features."""
    return np.mean(np.abs(codes1 - codes2), axis=1)


def _compute_beta_vae(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray,
                      eval_y: np.ndarray, random_state) -> dict:
    """Train the logistic regression on (train_x, train_y), score it on (eval_x, eval_y).

    Args:
        train_x, eval_x: (P, D) features (mean absolute code differences).
        train_y, eval_y: (P,) index of the factor held fixed.
        random_state: Generator seeding the classifier.

    Returns:
        dict with ``train_accuracy`` and ``eval_accuracy``.
    """
    train_x = _utils.check_codes(train_x, "train features")
    eval_x = _utils.check_codes(eval_x, "eval features")
    train_y = np.asarray(train_y).reshape(-1)
    eval_y = np.asarray(eval_y).reshape(-1)
    if len(np.unique(train_y)) < 2:  # one factor: it is always the one held fixed
        return {"train_accuracy": 1.0, "eval_accuracy": 1.0}
    model = LogisticRegression(solver="lbfgs", C=1.0, max_iter=100,
                               random_state=_utils.sk_seed(_utils.as_generator(random_state)))
    with warnings.catch_warnings(), _utils.single_threaded():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    return {"train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
            "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y))}
