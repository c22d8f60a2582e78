"""Modularity and explicitness.

Ridgeway & Mozer, "Learning Deep Disentangled Embeddings With the F-Statistic Loss",
NeurIPS 2018, https://arxiv.org/abs/1802.05312 (Section 3), as disentanglement_lib computes them
(``modularity_explicitness``; unsupervised_study_v1: 10,000 train / 5,000 test points, 20-bin
histogram discretiser).

- Modularity: from the mutual information m_ij of binned latent i with factor j, each latent scores
  1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)) (0 if it carries no information);
  the unweighted mean over latents. A latent that informs about one factor only scores 1.
- Explicitness: codes standardised with the training mean and std; one logistic regression per
  factor on all latents; the macro ROC AUC of its ``predict_proba`` against the one-hot test labels;
  the mean over factors (``explicitness_score_test``; 0.5 is chance).

Fixed from the reference: a constant code crashed explicitness (dividing by a zero std sends NaN
into the logistic regression); here a constant latent is centred and left unscaled, so a constant
code scores modularity 0 and explicitness 0.5 (chance). With a single factor modularity's
denominator F - 1 is 0: a latent with any information about it is taken as modular (1). A class
present in only one of train and test is left out of the macro AUC (the reference raises); a factor
with a single value is left out of the mean (0 if none is left). The solver is pinned (lbfgs,
C=1, max_iter=100: today's scikit-learn defaults).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from dcign_eval.metrics import _utils


def compute_modularity_explicitness(data, represent, random_state, *, num_train: int = 10000,
                                    num_test: int = 5000, batch_size: int = 16,
                                    num_bins: int = 20, modularity: bool = True,
                                    explicitness: bool = True, cache=None) -> dict:
    """Modularity and explicitness of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: training points (modularity uses only these).
        num_test: test points of explicitness.
        batch_size: factors are drawn in batches of this size.
        num_bins: histogram bins per latent (modularity).
        modularity: compute the modularity score.
        explicitness: compute the explicitness scores.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``modularity_score`` and/or ``explicitness_score_train`` and
        ``explicitness_score_test``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    codes, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    codes_test, factors_test = _utils.generate_batch_factor_code(data, cache, num_test, rng,
                                                                 batch_size)
    scores = {}
    if modularity:
        scores["modularity_score"] = _compute_modularity(codes, factors, num_bins)
    if explicitness:
        scores.update(_compute_explicitness(codes, factors, codes_test, factors_test, rng))
    return scores


def _compute_modularity(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """Modularity from codes (N, D) and factor indices (N, F)."""
    codes, factors = _utils.check_codes_factors(codes, factors)
    mi = _utils.discrete_mutual_info(_utils.histogram_discretize(codes, num_bins), factors)
    return _modularity(mi)


def _modularity(mutual_info: np.ndarray) -> float:
    """Modularity of a (D, F) mutual-information matrix."""
    squared = np.square(np.asarray(mutual_info, dtype=np.float64))
    top = squared.max(axis=1)
    informative = top > 0
    if squared.shape[1] == 1:
        return float(np.mean(informative))
    delta = (squared.sum(axis=1) - top) / np.where(informative, top, 1.0) / (squared.shape[1] - 1)
    return float(np.mean(np.where(informative, 1.0 - delta, 0.0)))


def _standardise(train: np.ndarray, test: np.ndarray):
    """Standardise with the training mean / std; constant latents are only centred."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(_utils.constant_dims(train) | (std == 0), 1.0, std)
    return (train - mean) / std, (test - mean) / std


def _macro_auc(labels: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> float | None:
    """Macro one-vs-rest ROC AUC of ``scores`` (N, K) for ``labels`` over ``classes`` (the score
    columns), ties counted half (as sklearn's roc_auc_score); None if no class is scorable."""
    positive = labels[:, None] == classes[None, :]
    n_pos = positive.sum(axis=0)
    n_neg = len(labels) - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return None
    ranks = rankdata(scores[:, ok], axis=0)  # average ranks: ties count half
    pos = positive[:, ok]
    auc = ((ranks * pos).sum(axis=0) - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return float(np.mean(auc))


def _explicitness_per_factor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                             y_test: np.ndarray, seed: int):
    """(train AUC, test AUC) of a logistic regression on all latents, or None for a factor with
    a single value."""
    if len(np.unique(y_train)) < 2:
        return None
    model = LogisticRegression(solver="lbfgs", C=1.0, max_iter=100, random_state=seed)
    with warnings.catch_warnings(), _utils.single_threaded():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    auc_train = _macro_auc(y_train, model.classes_, model.predict_proba(x_train))
    auc_test = _macro_auc(y_test, model.classes_, model.predict_proba(x_test))
    if auc_train is None or auc_test is None:
        return None
    return auc_train, auc_test


def _compute_explicitness(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray,
                          factors_test: np.ndarray, random_state=None) -> dict:
    """Explicitness from training codes (N, D) / factors (N, F) and test codes / factors.

    Returns:
        dict with ``explicitness_score_train`` and ``explicitness_score_test``.
    """
    codes, factors = _utils.check_codes_factors(codes, factors)
    codes_test, factors_test = _utils.check_codes_factors(codes_test, factors_test, 1)
    rng = _utils.as_generator(random_state)
    x_train, x_test = _standardise(codes, codes_test)
    seeds = rng.integers(2**31 - 1, size=factors.shape[1])
    results = [_explicitness_per_factor(x_train, factors[:, j], x_test, factors_test[:, j],
                                        int(seeds[j])) for j in range(factors.shape[1])]
    results = [r for r in results if r is not None]
    if not results:
        return {"explicitness_score_train": 0.0, "explicitness_score_test": 0.0}
    return {"explicitness_score_train": float(np.mean([r[0] for r in results])),
            "explicitness_score_test": float(np.mean([r[1] for r in results]))}
