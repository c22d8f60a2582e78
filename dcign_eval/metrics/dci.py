"""Disentanglement, Completeness and Informativeness (DCI).

Eastwood & Williams, "A Framework for the Quantitative Evaluation of Disentangled
Representations", ICLR 2018, https://openreview.net/forum?id=By-7dz-AZ (Section 2), as
disentanglement_lib computes it (``dci``; unsupervised_study_v1: 10,000 train / 5,000 test points).

One classifier per factor predicts the factor from all latents; its feature importances fill
column j of the importance matrix R (latents x factors).

- Disentanglement = sum_i rho_i (1 - H_F(P_i.)), with P_i. row i of R normalised, H_F the entropy
  in base F (number of factors) and rho_i = row i's share of the total importance.
- Completeness = the same over columns, entropy base D (number of latents), weighted by each
  factor's share.
- Informativeness = mean test accuracy of the classifiers.

Three estimators of R (``DCI_MODES``), named in every result (``mode``):

- ``"lightgbm"``: LightGBM's gradient-boosted trees (Ke et al. 2017) set as the
  reference's (100 stages, learning rate 0.1, depth 3, one sample per leaf, no regularisation),
  with gain importances normalised to sum 1 per factor, as scikit-learn normalises its
  ``feature_importances_``. Histogram splits (255 bins) make it one to two orders of magnitude
  faster than ``"gbt"``. Its split gain is the Newton gain (hessian-weighted), where
  scikit-learn's is the squared-error gain on the residuals, so the two are close but not equal.
  Measured on one sample of 2,000 training / 5,000 test points (seed 0; ``python
  bench/bench_metrics.py --agreement --num-train 2000``): within 0.001 of ``"gbt"`` on D and C of
  the identity, rotated, noise and duplicated codes, 0.05 on the noisy code, and 0.03-0.05 on the
  shipped DC-IGN and VAE (extra-trees: 0.12-0.14 there), at 5-12x less CPU on the sanity codes
  and 24-30x on the shipped models' 200 latents.
- ``"gbt"`` (faithful, the reference's): scikit-learn's ``GradientBoostingClassifier`` with its
  defaults (100 stages, depth 3), impurity-based ``feature_importances_``. Exact but slow: about a
  minute for 10,000 points on the sanity factors, dominated by the 40-class factor, and tens of
  minutes on 200 latents.
- ``"extra-trees"`` (the default until an estimator within 0.02 of ``"gbt"`` on the shipped
  models is found; LightGBM is not yet): ``ExtraTreesClassifier`` (Geurts et al. 2006, extremely randomised trees;
  the DCI paper itself uses random-forest importances), 20 trees considering every latent at each
  split (``max_features=None``), ``min_samples_leaf=5``, impurity-based importances and accuracy.
  Cheapest, and the furthest from ``"gbt"`` on codes with many latents.

Latents that are exact copies of one another are one feature to a tree learner. scikit-learn
visits features in a random order, so in expectation copies share the importance equally;
LightGBM always takes the first. Every mode therefore fits on the distinct latents and gives each
copy an equal share of its group's importance.

The per-factor models are fitted in parallel (``n_jobs``): GBT and LightGBM factors in worker
processes, largest factor first; the extra-trees' trees in threads.

Conventions where the reference is undefined: a factor constant in the training sample gets a zero
importance column (its classifier is trivially exact); an all-zero R (constant code) gives
disentanglement = completeness = 0; with a single factor (or a single latent) the normalised
entropy has base 1 and is taken as 0, so disentanglement (completeness) is 1 for any importance.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier

from dcign_eval.metrics import _utils
from trainer.errors import DcignError

#: Estimators of the importance matrix.
DCI_MODES = ("lightgbm", "gbt", "extra-trees")
#: The estimator used unless told otherwise (the report's and the command line's).
DEFAULT_DCI_MODE = "extra-trees"

#: The extra-trees of the "extra-trees" mode.
EXTRA_TREES = 20
EXTRA_MIN_SAMPLES_LEAF = 5


def compute_dci(data, represent, random_state, *, num_train: int = 10000,
                num_test: int = 5000, batch_size: int = 16, mode: str = DEFAULT_DCI_MODE,
                n_jobs: int = 2,
                cache=None) -> dict:
    """DCI scores of ``represent`` on ``data``.

    Args:
        data: ground-truth data (factor_sizes, sample_factors, sample_observations_from_factors).
        represent: maps a batch of observations to codes (N, D).
        random_state: np.random.Generator (or int seed).
        num_train: training points of the classifiers.
        num_test: test points (informativeness).
        batch_size: factors are drawn in batches of this size.
        mode: "extra-trees" (default), "lightgbm" or "gbt" (the reference's, slow);
            see DCI_MODES.
        n_jobs: parallel workers.
        cache: a :class:`~dcign_eval.metrics._utils.CodeCache` to share encodings.

    Returns:
        dict with ``disentanglement``, ``completeness``, ``informativeness_train``,
        ``informativeness_test`` and ``mode``.
    """
    rng = _utils.as_generator(random_state)
    _check_mode(mode)
    cache = _utils.as_cache(data, represent, cache)
    codes, factors = _utils.generate_batch_factor_code(data, cache, num_train, rng, batch_size)
    codes_test, factors_test = _utils.generate_batch_factor_code(data, cache, num_test, rng,
                                                                 batch_size)
    return _compute_dci(codes, factors, codes_test, factors_test, mode=mode, random_state=rng,
                        n_jobs=n_jobs)


def _check_mode(mode: str) -> str:
    if mode not in DCI_MODES:
        raise DcignError(f"unknown DCI mode {mode!r}; expected one of {', '.join(DCI_MODES)}")
    return mode


def _compute_dci(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray,
                 factors_test: np.ndarray, *, mode: str = DEFAULT_DCI_MODE, random_state=None,
                 n_jobs: int = 1) -> dict:
    """DCI from training codes (N, D) / factors (N, F) and test codes / factors."""
    codes, factors = _utils.check_codes_factors(codes, factors)
    codes_test, factors_test = _utils.check_codes_factors(codes_test, factors_test, 1)
    if codes_test.shape[1] != codes.shape[1] or factors_test.shape[1] != factors.shape[1]:
        raise DcignError(f"test arrays {codes_test.shape} / {factors_test.shape} do not match "
                         f"training arrays {codes.shape} / {factors.shape}")
    rng = _utils.as_generator(random_state)
    importance, train_acc, test_acc = _importance_matrix(
        codes, factors, codes_test, factors_test, _check_mode(mode), rng, n_jobs)
    return {"disentanglement": _disentanglement(importance),
            "completeness": _completeness(importance),
            "informativeness_train": train_acc, "informativeness_test": test_acc,
            "mode": mode}


def _fit_factor(mode: str, x, y, x_test, y_test, seed: int, n_jobs: int):
    """(importances (D,), train accuracy, test accuracy) of one factor's classifier."""
    if len(np.unique(y)) < 2:  # a constant factor: trivially predicted, no latent needed
        return np.zeros(x.shape[1]), 1.0, float(np.mean(y_test == y[0]))
    if mode == "gbt":
        model = GradientBoostingClassifier(random_state=seed)
    elif mode == "lightgbm":
        model = _lightgbm_classifier(seed)
        model.fit(x, y)
        gain = model.booster_.feature_importance("gain").astype(np.float64)
        importances = gain / gain.sum() if gain.sum() > 0 else gain
        return (importances, float(np.mean(model.predict(x) == y)),
                float(np.mean(model.predict(x_test) == y_test)))
    else:
        model = ExtraTreesClassifier(n_estimators=EXTRA_TREES, max_features=None,
                                     min_samples_leaf=EXTRA_MIN_SAMPLES_LEAF, bootstrap=False,
                                     n_jobs=n_jobs, random_state=seed)
    model.fit(x, y)
    importances = np.abs(np.nan_to_num(model.feature_importances_))
    return (importances, float(np.mean(model.predict(x) == y)),
            float(np.mean(model.predict(x_test) == y_test)))


def _lightgbm_classifier(seed: int):
    """LightGBM set as scikit-learn's GradientBoostingClassifier defaults, on one thread: its
    OpenMP threads spin-wait, and on shared cores two of them ran slower than one."""
    import lightgbm  # slow to import (it loads its shared library); only this mode needs it

    return lightgbm.LGBMClassifier(
        n_estimators=100, learning_rate=0.1, max_depth=3, num_leaves=8, min_child_samples=1,
        min_child_weight=1e-3, reg_lambda=0.0, subsample=1.0, colsample_bytree=1.0,
        importance_type="gain", n_jobs=1, deterministic=True, force_col_wise=True,
        random_state=seed, verbose=-1)


def _distinct_columns(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the first of each group of identical columns, group of every column)."""
    _, first, group = np.unique(codes, axis=1, return_index=True, return_inverse=True)
    return first, group.reshape(-1)


def _importance_matrix(codes, factors, codes_test, factors_test, mode: str,
                       random_state: np.random.Generator, n_jobs: int = 1):
    """(D, F) importance matrix and mean train / test accuracy of the per-factor classifiers.

    Identical latents are fitted once; each copy gets an equal share of the importance."""
    first, group = _distinct_columns(codes)
    if len(first) < codes.shape[1]:
        importance, train_acc, test_acc = _importance_matrix(
            codes[:, first], factors, codes_test[:, first], factors_test, mode, random_state,
            n_jobs)
        copies = np.bincount(group)
        return importance[group] / copies[group][:, None], train_acc, test_acc
    num_factors = factors.shape[1]
    seeds = random_state.integers(2**31 - 1, size=num_factors)
    args = [(codes, factors[:, j], codes_test, factors_test[:, j], int(seeds[j]))
            for j in range(num_factors)]
    if mode in ("gbt", "lightgbm") and n_jobs != 1 and num_factors > 1:
        # Cost grows with the number of classes: start the largest factors first.
        order = np.argsort([-len(np.unique(factors[:, j])) for j in range(num_factors)],
                           kind="stable")
        fitted = Parallel(n_jobs=n_jobs)(delayed(_fit_factor)(mode, *args[j], 1) for j in order)
        results = [None] * num_factors
        for j, res in zip(order, fitted):
            results[j] = res
    else:
        results = [_fit_factor(mode, *a, n_jobs) for a in args]
    importance = np.stack([r[0] for r in results], axis=1)
    return (importance, float(np.mean([r[1] for r in results])),
            float(np.mean([r[2] for r in results])))


def _normalised_entropy(p: np.ndarray, axis: int, base: int) -> np.ndarray:
    """Entropy of the distributions along ``axis`` of non-negative weights ``p`` (normalised
    there; an all-zero one counts as uniform), in base ``base``; 0 when base is 1."""
    if base <= 1:
        return np.zeros(np.delete(np.asarray(p.shape), axis))
    p = p + 1e-11  # as the reference: all-zero rows become uniform, log(0) is avoided
    p = p / p.sum(axis=axis, keepdims=True)
    return -np.sum(p * np.log(p), axis=axis) / np.log(base)


def _disentanglement(importance: np.ndarray) -> float:
    """Disentanglement of a (D, F) importance matrix; 0 if it is all zero."""
    importance = np.asarray(importance, dtype=np.float64)
    total = importance.sum()
    if total <= 0:
        return 0.0
    per_code = 1.0 - _normalised_entropy(importance, axis=1, base=importance.shape[1])
    return float(np.sum(per_code * importance.sum(axis=1) / total))


def _completeness(importance: np.ndarray) -> float:
    """Completeness of a (D, F) importance matrix; 0 if it is all zero. It is disentanglement
    with the roles of codes and factors swapped."""
    return _disentanglement(np.asarray(importance).T)
