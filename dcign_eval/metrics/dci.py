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

Five estimators of R (``DCI_MODES``), named in every result (``mode``):

- ``"gbt-hist"`` (the default): scikit-learn's ``GradientBoostingClassifier`` (defaults: 100
  stages, learning rate 0.1, depth 3, one regression tree per class on the residuals y - p,
  leaves set by one Newton step) re-enacted on LightGBM's histogram tree learner (Ke et al.
  2017). Each tree is grown on the residuals with unit hessians, so LightGBM's split gain is the
  squared-error reduction scikit-learn's ``friedman_mse`` splits on and its ``feature_importances_``
  sum; its leaves are then overwritten by scikit-learn's Newton step (times (K - 1) / K for K
  classes), so the next stage sees the same residuals. What remains different is where splits
  may fall: histogram bins (``GBT_HIST_BIN_BUDGET`` / latents per latent, at least 255) instead of
  every midpoint. A code with few latents thus gets one bin per distinct value (exact splits: the
  late trees of the noisy sanity code split off one or two points, and 255 bins moved its D by
  0.08), while the scan cost of 200 latents stays at 255 bins each (0.01 from ``"gbt"`` on the
  shipped models). Also different: gradients in single precision, thresholds at bin edges
  rather than midpoints (test predictions only), and the order in which tied splits are taken.
  Measured on one sample of 2,000 training / 5,000 test points (seed 0; ``python
  bench/bench_metrics.py --agreement --num-train 2000 --models dcign vae``, docs/analyses.md has
  the table): within 0.003 of ``"gbt"`` on D, C and I of the identity, rotated, noisy, noise and
  duplicated codes at 4-5x less CPU, and within 0.010 on the shipped DC-IGN and VAE at 24-28x
  less.
- ``"gbt"`` (faithful, the reference's): scikit-learn's ``GradientBoostingClassifier`` with its
  defaults, impurity-based ``feature_importances_``. Exact but slow: about a minute for 10,000
  points on the sanity factors, dominated by the 40-class factor, and tens of minutes on the
  shipped models' 200 latents.
- ``"lightgbm"``: LightGBM's own multiclass boosting set as close to the reference as its options
  go (100 rounds, learning rate 0.1, depth 3, one sample per leaf, no regularisation), gain
  importances normalised per factor. Its split gain and leaves are hessian-weighted (Newton), so it
  drifts from ``"gbt"`` on codes with many latents (0.03-0.05 on the shipped models).
- ``"extra-trees"``: ``ExtraTreesClassifier`` (Geurts et al. 2006, extremely randomised trees;
  the DCI paper itself uses random-forest importances), 20 trees considering every latent at each
  split (``max_features=None``), ``min_samples_leaf=5``, impurity-based importances and accuracy.
  Cheap, and the furthest from ``"gbt"`` on codes with many latents (0.08 on a rotated code).
- ``"lasso"`` (the DCI paper's original, Eastwood & Williams 2018, Section 4): per factor a
  ``Lasso`` regression (alpha = 0.02 for every factor and model, as the paper's released code)
  of the factor index, standardised, on the standardised latents; importances |w|;
  informativeness = test R^2 (clipped at 0), where the paper reports the test NRMSE
  (R^2 = 1 - NRMSE^2). Linear: it sees only what a weighted sum of latents predicts.

Latents that are exact copies of one another are one feature to a tree learner. scikit-learn
visits features in a random order, so in expectation copies share the importance equally;
LightGBM always takes the first. Every mode therefore fits on the distinct latents and gives each
copy an equal share of its group's importance.

The per-factor models are fitted in parallel (``n_jobs``): the boosted factors in worker
processes, largest factor first; the extra-trees' trees in threads; Lasso in one process.

Conventions where the reference is undefined: a factor constant in the training sample gets a zero
importance column (its classifier is trivially exact); an all-zero R (constant code) gives
disentanglement = completeness = 0; with a single factor (or a single latent) the normalised
entropy has base 1 and is taken as 0, so disentanglement (completeness) is 1 for any importance.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier
from sklearn.linear_model import Lasso

from dcign_eval.metrics import _utils
from trainer.errors import DcignError

#: Estimators of the importance matrix.
DCI_MODES = ("gbt-hist", "gbt", "lightgbm", "extra-trees", "lasso")
#: The estimator used unless told otherwise (the report's and the command line's).
DEFAULT_DCI_MODE = "gbt-hist"
#: Modes that boost trees per factor (fitted in worker processes).
BOOSTED_MODES = ("gbt-hist", "gbt", "lightgbm")

#: scikit-learn's GradientBoostingClassifier defaults, which "gbt-hist" re-enacts.
GBT_STAGES, GBT_LEARNING_RATE, GBT_DEPTH = 100, 0.1, 3
#: "gbt-hist" histogram bins: this many over all latents, at least GBT_HIST_MIN_BINS per latent.
GBT_HIST_BIN_BUDGET, GBT_HIST_MIN_BINS = 50_000, 255

#: The extra-trees of the "extra-trees" mode.
EXTRA_TREES = 20
EXTRA_MIN_SAMPLES_LEAF = 5
#: The L1 weight of the "lasso" mode (Eastwood & Williams' released code: one for every factor).
LASSO_ALPHA = 0.02


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
        mode: the importance estimator, one of DCI_MODES: "gbt-hist" (default), "gbt" (the
            reference's, slow), "lightgbm", "extra-trees" or "lasso".
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
    """(importances (D,), train score, test score) of one factor's model: accuracy for the
    classifiers, R^2 for "lasso"."""
    if len(np.unique(y)) < 2:  # a constant factor: trivially predicted, no latent needed
        return np.zeros(x.shape[1]), 1.0, float(np.mean(y_test == y[0]))
    if mode == "lasso":
        return _lasso_importances(x, y, x_test, y_test, seed)
    if mode == "gbt-hist":
        importances, predict_train, predict_test = _histogram_gbt(x, y, x_test, seed)
        return (importances, float(np.mean(predict_train == y)),
                float(np.mean(predict_test == y_test)))
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


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays scaled by the training columns' mean and sd (a constant column: sd 1)."""
    mean, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mean) / sd, (test - mean) / sd


def _lasso_importances(x, y, x_test, y_test, seed: int):
    """|w| of a Lasso regression of the standardised factor on the standardised latents, and its
    train / test R^2 (clipped at 0)."""
    x, x_test = _standardise(x, x_test)
    target, target_test = _standardise(y.astype(np.float64)[:, None],
                                       y_test.astype(np.float64)[:, None])
    model = Lasso(alpha=LASSO_ALPHA, random_state=seed).fit(x, target[:, 0])

    def r2(features, truth):
        residual = np.sum((truth - model.predict(features)) ** 2)
        total = np.sum((truth - truth.mean()) ** 2)
        return max(0.0, 1.0 - residual / total) if total > 0 else float(residual == 0)

    return np.abs(model.coef_), r2(x, target[:, 0]), r2(x_test, target_test[:, 0])


def _histogram_gbt(x, y, x_test, seed: int):
    """scikit-learn's GradientBoostingClassifier (its defaults) grown on LightGBM's histogram
    trees: (importances (D,) summing to 1, train predictions, test predictions).

    Per stage and class, LightGBM grows a depth-3 tree on the gradients p - y with unit
    hessians: its gain G_L^2 / n_L + G_R^2 / n_R - G^2 / n is the squared-error reduction of the
    residuals, the quantity scikit-learn's trees split on and sum into ``feature_importances_``.
    Each leaf is then set to scikit-learn's Newton step, sum(y - p) / sum(p (1 - p)), times
    (K - 1) / K for K > 2 classes, times the learning rate; the raw scores start at the log
    class priors. A two-class factor boosts one tree per stage on the logit, as scikit-learn.
    """
    import lightgbm  # slow to import (it loads its shared library); only boosted modes need it

    classes, labels = np.unique(y, return_inverse=True)
    num_classes, n = len(classes), len(y)
    if _utils.constant_dims(x).all():  # no split anywhere: every stage predicts the prior
        majority = classes[np.bincount(labels).argmax()]
        return np.zeros(x.shape[1]), np.full(n, majority), np.full(len(x_test), majority)
    onehot = np.eye(num_classes)[labels]
    prior = np.clip(onehot.mean(axis=0), np.finfo(np.float64).eps, None)
    binary = num_classes == 2
    if binary:  # one tree per stage on the log-odds of the second class
        targets, init = onehot[:, 1:], np.log(prior[1:] / prior[:1])
    else:
        targets, init = onehot, np.log(prior)
    trees = targets.shape[1]
    raw = np.tile(init, (n, 1))
    params = dict(objective="none", num_class=trees, max_depth=GBT_DEPTH,
                  num_leaves=2 ** GBT_DEPTH, learning_rate=GBT_LEARNING_RATE,
                  min_data_in_leaf=1, min_sum_hessian_in_leaf=0.0, min_data_in_bin=1,
                  lambda_l2=0.0, max_bin=histogram_bins(x.shape[1]), feature_pre_filter=False,
                  num_threads=1, deterministic=True, force_col_wise=True, seed=seed,
                  verbose=-1)
    booster = lightgbm.Booster(params, lightgbm.Dataset(x, params=params))
    shrink = 1.0 if binary else (num_classes - 1) / num_classes
    for stage in range(GBT_STAGES):
        p = _expit(raw) if binary else _softmax(raw)
        gradient = p - targets
        grad = gradient if trees > 1 else gradient[:, 0]  # LightGBM: 1-D for one tree
        if booster.update(fobj=lambda _raw, _data: (grad, np.ones_like(grad))) \
                or booster.current_iteration() <= stage:  # nothing left to split
            break
        leaves = booster.predict(x, pred_leaf=True, start_iteration=stage, num_threads=1,
                                 num_iteration=1).reshape(n, trees).astype(np.int64)
        # every (tree, leaf) of the stage at once: slot = tree * leaves per tree + leaf
        width = 2 ** GBT_DEPTH
        slots = (leaves + np.arange(trees) * width).ravel()
        numerator = shrink * np.bincount(slots, -gradient.ravel(), trees * width)
        denominator = np.bincount(slots, (p * (1 - p)).ravel(), trees * width)
        step = np.divide(numerator, denominator, out=np.zeros(trees * width),
                         where=np.abs(denominator) >= 1e-150) * GBT_LEARNING_RATE
        step = step.reshape(trees, width)
        for k, size in enumerate(leaves.max(axis=0) + 1):
            for index in range(int(size)):
                booster.set_leaf_output(stage * trees + k, index, float(step[k, index]))
        raw += step[np.arange(trees), leaves]
    gain = booster.feature_importance("gain").astype(np.float64)
    importances = gain / gain.sum() if gain.sum() > 0 else gain
    raw_test = init + booster.predict(x_test, raw_score=True, num_threads=1).reshape(
        len(x_test), trees)

    def predict(scores):
        return classes[(scores[:, 0] > 0).astype(int)] if binary else classes[scores.argmax(1)]
    return importances, predict(raw), predict(raw_test)


def _lightgbm_classifier(seed: int):
    """LightGBM set as scikit-learn's GradientBoostingClassifier defaults, on one thread: its
    OpenMP threads spin-wait, and on shared cores two of them ran slower than one."""
    import lightgbm  # slow to import (it loads its shared library); only boosted modes need it

    return lightgbm.LGBMClassifier(
        n_estimators=GBT_STAGES, learning_rate=GBT_LEARNING_RATE, max_depth=GBT_DEPTH,
        num_leaves=2 ** GBT_DEPTH, min_child_samples=1, min_child_weight=1e-3, reg_lambda=0.0,
        subsample=1.0, colsample_bytree=1.0, importance_type="gain", n_jobs=1,
        deterministic=True, force_col_wise=True, random_state=seed, verbose=-1)


def histogram_bins(num_latents: int) -> int:
    """Bins per latent of "gbt-hist": GBT_HIST_BIN_BUDGET shared by the latents, at least
    GBT_HIST_MIN_BINS (LightGBM never makes more bins than a latent has distinct values)."""
    return max(GBT_HIST_MIN_BINS, GBT_HIST_BIN_BUDGET // max(int(num_latents), 1))


def _softmax(raw: np.ndarray) -> np.ndarray:
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _expit(raw: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-raw))


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
    if mode in BOOSTED_MODES and n_jobs != 1 and num_factors > 1:
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
