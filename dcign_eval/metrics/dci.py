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
  sum; its leaves then take scikit-learn's Newton step (times (K - 1) / K for K classes), so the
  next stage sees the same residuals. The steps are kept beside LightGBM's model rather than
  written into it: each stage's trees are read from the model's text and one compiled pass
  (numba) sends the training and test points down them, sums the leaves and advances the scores,
  where a LightGBM prediction per stage and a write per leaf took about as long as growing the
  trees on the bench's identity code (the same importances and predictions to the last bit; a
  test checks it against the steps written into LightGBM's model). What remains different is
  where splits may fall: histogram bins (``GBT_HIST_BIN_BUDGET`` / latents per latent, at
  least 255) instead of every midpoint. A code with few latents thus gets one bin per distinct
  value (exact splits: the late trees of the noisy sanity code split off one or two points, and
  255 bins moved its D by 0.08), while the scan cost of 200 latents stays at 255 bins each
  (0.01 from ``"gbt"`` on the shipped models). Also different: gradients in single precision,
  thresholds at bin edges rather than midpoints (test predictions only), and the order in which
  tied splits are taken.
  Measured on one sample of 2,000 training / 5,000 test points (seed 0; ``python
  bench/bench_metrics.py --agreement --num-train 2000 --models dcign vae``, docs/analyses.md has
  the table): within 0.003 of ``"gbt"`` on D, C and I of the identity, rotated, noisy, noise and
  duplicated codes at 6.5-7.5x less CPU, and within 0.010 on the shipped DC-IGN and VAE at
  24-28x less.
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

import re

import numba
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

    The Newton steps are kept here, not written into LightGBM's model: each stage's trees are read
    from the model (:func:`_stage_trees`), and :func:`_newton_stage` sends the training and test
    points down them by LightGBM's decision rule, sums each leaf's residuals and hessians in the
    order of the points and advances the raw scores by the leaves' steps (the test scores from 0,
    the prior added last, as LightGBM's prediction would sum them).
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
    x, x_test, targets = (np.ascontiguousarray(a, np.float64) for a in (x, x_test, targets))
    trees = targets.shape[1]
    raw = np.tile(init, (n, 1))
    raw_test = np.zeros((len(x_test), trees))
    params = dict(objective="none", num_class=trees, max_depth=GBT_DEPTH,
                  num_leaves=2 ** GBT_DEPTH, learning_rate=GBT_LEARNING_RATE,
                  min_data_in_leaf=1, min_sum_hessian_in_leaf=0.0, min_data_in_bin=1,
                  lambda_l2=0.0, max_bin=histogram_bins(x.shape[1]), feature_pre_filter=False,
                  num_threads=1, deterministic=True, force_col_wise=True, seed=seed,
                  verbose=-1)
    booster = lightgbm.Booster(params, lightgbm.Dataset(x, params=params))
    shrink = 1.0 if binary else (num_classes - 1) / num_classes
    # the gradients in LightGBM's layout (class after class) and precision, handed over uncopied
    gradient32 = np.empty((trees, n), np.float32)
    hessian32 = np.ones((trees, n), np.float32)
    handed = (gradient32.T, hessian32.T) if trees > 1 else (gradient32[0], hessian32[0])
    for stage in range(GBT_STAGES):
        p = _expit(raw) if binary else _softmax(raw)
        _residuals(p, targets, gradient32)
        if booster.update(fobj=lambda _raw, _data: handed) \
                or booster.current_iteration() <= stage:  # nothing left to split
            break
        _newton_stage(x, x_test, *_stage_trees(booster, stage, trees), p, targets, shrink,
                      GBT_LEARNING_RATE, raw, raw_test)
    gain = booster.feature_importance("gain").astype(np.float64)
    importances = gain / gain.sum() if gain.sum() > 0 else gain
    raw_test = init + raw_test

    def predict(scores):
        return classes[(scores[:, 0] > 0).astype(int)] if binary else classes[scores.argmax(1)]
    return importances, predict(raw), predict(raw_test)


def _stage_trees(booster, stage: int, trees: int):
    """The ``trees`` trees of boosting stage ``stage`` as arrays (trees, 2 ** GBT_DEPTH - 1) of
    their internal nodes, read from LightGBM's model text: split latent, threshold, left and
    right child (LightGBM's numbering: a child c >= 0 is node c, c < 0 is leaf ~c). A tree
    without a split gets one node sending every point to leaf 0; unused nodes are never reached.
    """
    text = booster.model_to_string(start_iteration=stage, num_iteration=1)
    fields = {key: [] for key in _TREE_FIELDS}
    for key, value in _TREE_FIELD_LINE.findall(text[:text.index("end of trees")]):
        fields[key].append(value)

    def values(key, dtype):  # one tree's nodes after the other's
        return np.array(" ".join(fields[key]).split(), dtype)

    splits = np.array(fields["num_leaves"], np.int64) - 1
    if len(splits) != trees:
        raise RuntimeError(f"LightGBM's stage {stage} has {len(splits)} trees, expected {trees}")
    if np.any(values("decision_type", np.int64) & ~2):  # only "x <= threshold goes left" here
        raise RuntimeError("LightGBM split on a category or a missing value (codes are finite)")
    nodes = 2 ** GBT_DEPTH - 1
    used = np.arange(nodes) < splits[:, None]
    feature, threshold = np.zeros((trees, nodes), np.int64), np.full((trees, nodes), np.inf)
    left, right = np.full((trees, nodes), -1, np.int64), np.full((trees, nodes), -1, np.int64)
    feature[used] = values("split_feature", np.int64)
    threshold[used] = values("threshold", np.float64)  # written with 17 digits: exact
    left[used] = values("left_child", np.int64)
    right[used] = values("right_child", np.int64)
    return feature, threshold, left, right


#: The fields of a tree in LightGBM's model text that :func:`_stage_trees` reads.
_TREE_FIELDS = ("num_leaves", "decision_type", "split_feature", "threshold", "left_child",
                "right_child")
_TREE_FIELD_LINE = re.compile(rf"^({'|'.join(_TREE_FIELDS)})=(.*)$", re.MULTILINE)


@numba.njit(cache=True)
def _residuals(p, targets, out):
    """out (trees, N), single precision, class after class = p - targets (N, trees)."""
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            out[k, i] = p[i, k] - targets[i, k]


@numba.njit(cache=True)
def _tree_leaf(x, i, feature, threshold, left, right, t):
    """Leaf of point x[i] in tree t of :func:`_stage_trees`' arrays: LightGBM's numerical
    decision, left when x <= threshold."""
    node = 0
    while node >= 0:
        if x[i, feature[t, node]] <= threshold[t, node]:
            node = left[t, node]
        else:
            node = right[t, node]
    return ~node


@numba.njit(cache=True)
def _newton_stage(x, x_test, feature, threshold, left, right, p, targets, shrink, learning_rate,
                  raw, raw_test):
    """One stage's Newton leaves: each tree's leaf k gets shrink * sum(y - p) / sum(p (1 - p))
    over its training points (0 where that is below 1e-150), times the learning rate, which is
    added to the raw scores (N, trees) of the training and test points in the leaf."""
    n, trees = p.shape
    width = feature.shape[1] + 1
    numerator = np.zeros((trees, width))
    denominator = np.zeros((trees, width))
    leaves = np.empty((n, trees), np.int64)
    for i in range(n):
        for t in range(trees):
            leaf = _tree_leaf(x, i, feature, threshold, left, right, t)
            leaves[i, t] = leaf
            numerator[t, leaf] += targets[i, t] - p[i, t]
            denominator[t, leaf] += p[i, t] * (1 - p[i, t])
    step = np.zeros((trees, width))
    for t in range(trees):
        for leaf in range(width):
            if abs(denominator[t, leaf]) >= 1e-150:
                step[t, leaf] = shrink * numerator[t, leaf] / denominator[t, leaf] * learning_rate
    for i in range(n):
        for t in range(trees):
            raw[i, t] += step[t, leaves[i, t]]
    for i in range(x_test.shape[0]):
        for t in range(trees):
            raw_test[i, t] += step[t, _tree_leaf(x_test, i, feature, threshold, left, right, t)]


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
    e = _minus_row_max(raw)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


@numba.njit(cache=True)
def _minus_row_max(raw):
    """raw minus the largest value of its row (the shift of a stable softmax), in one pass."""
    out = np.empty_like(raw)
    for i in range(raw.shape[0]):
        top = raw[i, 0]
        for k in range(1, raw.shape[1]):
            top = max(top, raw[i, k])
        for k in range(raw.shape[1]):
            out[i, k] = raw[i, k] - top
    return out


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
