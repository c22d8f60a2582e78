"""Separated Attribute Predictability (SAP) score, discrete and continuous.

Kumar et al., "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", ICLR 2018, https://arxiv.org/abs/1711.00848 (Section 3), as disentanglement_lib
computes it (``sap_score``; unsupervised_study_v1: 10,000 train / 5,000 test points).

A score matrix S (latents x factors) says how well each single latent predicts each factor; SAP is
the mean over factors of the gap between the two best latents.

- Discrete (``sap``, the study's setting): S_ij = test accuracy of a linear SVM
  (LinearSVC, C=0.01, balanced class weights) trained on latent i alone to predict factor j.
  A 1-D linear classifier cannot separate many classes, so this tops out far below 1 for factors
  with many values (about 0.23 for a perfect code on sizes [3, 6, 40, 32, 32]).
- Continuous (``sap_continuous``): S_ij = squared Pearson correlation of latent i with factor j on
  the training points (0 for a latent with variance <= 1e-12).

Fixed from the reference: a factor that is constant in the sample scores 0 instead of dividing by
its zero variance; a code with one latent does not crash (the missing second-best counts as 0).
Discrete and continuous share one sample here (the reference draws one per configuration). The
SVM is pinned to the primal solver (what ``dual="auto"`` picks for one feature), and the D x F fits
run in threads (liblinear releases the GIL).
"""

from __future__ import annotations

import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from dcign_eval.metrics import _utils

#: Variance below which a latent scores 0 in the continuous score matrix (the reference's).
_MIN_VARIANCE = 1e-12


def compute_sap(data, represent, random_state, *, num_train: int = 10000, num_test: int = 5000,
                batch_size: int = 16, discrete: bool = True, continuous: bool = True,
                n_jobs: int = 2, cache=None) -> dict:
    """SAP scores of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: training points (the continuous score uses only these).
        num_test: test points of the discrete score.
        batch_size: factors are drawn in batches of this size.
        discrete: compute the discrete score (``SAP_score``).
        continuous: compute the continuous score (``SAP_continuous``).
        n_jobs: threads fitting the discrete score's SVMs.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``SAP_score`` and/or ``SAP_continuous``.
    """
    rng = _utils.as_generator(random_state)
    cache = _utils.as_cache(data, represent, cache)
    codes, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    scores = {}
    if discrete:
        codes_test, factors_test = _utils.generate_batch_factor_code(data, cache, num_test, rng,
                                                                     batch_size)
        scores["SAP_score"] = _compute_sap(codes, factors, codes_test, factors_test,
                                           continuous=False, random_state=rng, n_jobs=n_jobs)
    if continuous:
        scores["SAP_continuous"] = _compute_sap(codes, factors, continuous=True)
    return scores


def _compute_sap(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
                 factors_test: np.ndarray | None = None, *, continuous: bool = False,
                 random_state=None, n_jobs: int = 1) -> float:
    """SAP from training codes (N, D) and factors (N, F) (and test arrays for the discrete
    score)."""
    codes, factors = _utils.check_codes_factors(codes, factors)
    if continuous:
        matrix = _score_matrix_continuous(codes, factors)
    else:
        if codes_test is None or factors_test is None:
            raise ValueError("the discrete SAP score needs test codes and factors")
        codes_test, factors_test = _utils.check_codes_factors(codes_test, factors_test, 1)
        matrix = _score_matrix_discrete(codes, factors, codes_test, factors_test,
                                        _utils.as_generator(random_state), n_jobs)
    return float(np.mean(_utils.top_two_gap(matrix)))


def _score_matrix_continuous(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, F) squared correlations; 0 for a (near-)constant latent or a constant factor."""
    z = codes - codes.mean(axis=0)
    y = factors - factors.mean(axis=0)
    n = codes.shape[0]
    var_z = np.einsum("nd,nd->d", z, z) / (n - 1)
    var_y = np.einsum("nf,nf->f", y, y) / (n - 1)
    cov = z.T @ y / (n - 1)
    ok = (var_z > _MIN_VARIANCE)[:, None] & (var_y > 0)[None, :]
    denom = np.where(ok, var_z[:, None] * var_y[None, :], 1.0)
    return np.where(ok, cov**2 / denom, 0.0)


def _fit_one(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             seed: int) -> float:
    if len(np.unique(y)) < 2:  # nothing to separate: every latent predicts it perfectly
        return 1.0
    model = LinearSVC(C=0.01, class_weight="balanced", dual=False, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[:, None], y)
    return float(np.mean(model.predict(x_test[:, None]) == y_test))


def _score_matrix_discrete(codes, factors, codes_test, factors_test,
                           random_state: np.random.Generator, n_jobs: int = 1) -> np.ndarray:
    """(D, F) test accuracy of a LinearSVC on each single latent for each factor."""
    d, f = codes.shape[1], factors.shape[1]
    seeds = random_state.integers(2**31 - 1, size=(d, f))
    jobs = (delayed(_fit_one)(codes[:, i], factors[:, j], codes_test[:, i], factors_test[:, j],
                              int(seeds[i, j]))
            for i in range(d) for j in range(f))
    scores = Parallel(n_jobs=n_jobs, backend="threading")(jobs)
    return np.asarray(scores, dtype=np.float64).reshape(d, f)
