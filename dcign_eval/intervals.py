"""95% intervals: the bootstrap over groups (held-out identities), percentile intervals, how a
figure and its interval are written, and whether two intervals are apart.

Recognition and verification resample the held-out identities with replacement (Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13, percentile interval): probes of one
identity are not independent, so the identity, not the probe, is the unit drawn. Each resample is
a weight per identity (how many times it was drawn), so a figure is recomputed from per-identity
sums without refitting anything. Reconstructions, the lineup and re-rendering fidelity resample
their held-out faces the same way: each model's per-face (or per-identity) figures are averaged on
the same resamples, so the interval of the mean difference between two models is the paired
bootstrap (:func:`paired_means`). The metrics' intervals over seeds (Student t) are
:func:`dcign_eval.metrics.suite.seed_intervals`; all are written by :func:`format_interval`.
"""

from __future__ import annotations

import math

from typing import Mapping

import numpy as np
import pandas as pd

from trainer.errors import DcignError

#: Coverage of every interval the package reports.
LEVEL = 0.95
#: Bootstrap resamples: the percentile ends of a 95% interval settle to about 0.01 of a
#: proportion's range by a thousand, and a resample costs a matrix product, not a refit.
RESAMPLES = 1000


def check_resamples(resamples) -> int:
    """``resamples`` as an int >= 0, or a DcignError."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 0:
        raise DcignError(f"resamples must be an integer >= 0 (0: no interval), got "
                         f"{resamples!r}")
    return int(resamples)


def bootstrap_weights(n_groups: int, resamples: int = RESAMPLES, random_state=0) -> np.ndarray:
    """How many times each of ``n_groups`` groups is drawn in each bootstrap resample.

    Args:
        n_groups: groups (e.g. held-out identities), >= 1.
        resamples: resamples (rows).
        random_state: anything ``numpy.random.default_rng`` takes; the same gives the same draws.

    Returns:
        (resamples, n_groups) float64 counts; each row sums to ``n_groups`` (``n_groups`` draws
        with replacement).
    """
    rng = np.random.default_rng(random_state)
    return rng.multinomial(int(n_groups), np.full(int(n_groups), 1.0 / n_groups),
                           size=check_resamples(resamples)).astype(np.float64)


def percentile_interval(samples, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap ``samples`` (..., resamples) along the last axis.

    NaN samples (a resample where the figure is undefined, e.g. no probe of a bin drawn) are left
    out; a row with none defined, or no resamples, gives NaN ends.
    """
    samples = np.asarray(samples, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    shape = samples.shape[:-1]
    low, high = np.full(shape, np.nan), np.full(shape, np.nan)
    if samples.shape[-1] == 0:
        return low, high
    defined = ~np.isnan(samples).all(axis=-1)
    if defined.any():
        q = np.nanquantile(samples[defined], [tail, 1.0 - tail], axis=-1)
        low[defined], high[defined] = q[0], q[1]
    return low, high


def _number(value: float, digits: int) -> str:
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def format_interval(value, low=None, high=None, digits: int = 3) -> str:
    """``value ± half-width`` of the interval [low, high], or the value alone when there is no
    interval (``low`` or ``high`` missing or NaN: one seed, no resamples).

    The half-width is (high - low) / 2: a bootstrap interval need not be centred on the value,
    so the tables beside the page keep both ends.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if low is None or high is None or not (math.isfinite(float(low))
                                           and math.isfinite(float(high))):
        return _number(value, digits)
    shown = _number(value, digits)
    half = (float(high) - float(low)) / 2
    # The half-width to the value's decimals (0.994 ± 0.000, not ± 3.04e-05), unless the value
    # itself is written in significant digits.
    return f"{shown} ± {_number(half, digits) if 'e' in shown else f'{half:.{digits}f}'}"


def with_interval(frame: pd.DataFrame, value: str, digits: int = 3) -> list[str]:
    """Column ``value`` written value ± half its interval (``<value>_low``, ``<value>_high``),
    or the value alone where there is none (no resamples)."""
    low = frame.get(f"{value}_low", pd.Series(float("nan"), index=frame.index))
    high = frame.get(f"{value}_high", pd.Series(float("nan"), index=frame.index))
    return [format_interval(v, lo, hi, digits) for v, lo, hi in zip(frame[value], low, high)]


def paired_means(values: Mapping[str, pd.DataFrame], resamples: int = RESAMPLES,
                 random_state=0, level: float = LEVEL) -> pd.DataFrame:
    """Per model the mean of each measure over the groups, with its percentile bootstrap interval
    over the groups, and the paired difference from the first model with its interval.

    Every model is measured on the same groups (e.g. held-out faces), so one set of resamples
    (:func:`bootstrap_weights`) serves all: a resample's difference of two models is the mean of
    the per-group differences on that resample, the paired bootstrap. The difference is
    *significant* when its interval excludes 0.

    Args:
        values: model label -> frame of one row per group and one column per measure; every
            frame the same index (the groups, in the same order) and the same columns.
        resamples: bootstrap resamples (0, or a single group: NaN ends).
        random_state: seed of the resamples.
        level: coverage.

    Returns:
        one row per model, in the order given: ``model``; per measure ``m``: ``m``, ``m_low``,
        ``m_high``; per measure ``m_difference`` (this model's mean minus the first model's; NaN
        for the first), ``m_difference_low``, ``m_difference_high``; ``resamples``.
    """
    resamples = check_resamples(resamples)
    models = list(values)
    if not models:
        raise DcignError("paired means need at least one model")
    first = values[models[0]]
    measures = [str(c) for c in first.columns]
    for label in models[1:]:
        other = values[label]
        if list(other.columns) != list(first.columns) or not other.index.equals(first.index):
            raise DcignError(f"{label} is not measured on the same groups and measures as "
                             f"{models[0]}: a paired comparison needs both")
    if len(first) == 0:
        raise DcignError("paired means need at least one group")
    stack = np.stack([values[label].to_numpy(np.float64) for label in models])  # (M, G, K)
    # One group has no spread to resample: no interval rather than one of no width.
    weights = bootstrap_weights(len(first), resamples if len(first) > 1 else 0,
                                random_state)  # rows sum to G
    both = np.concatenate([stack, stack - stack[:1]], axis=2)  # measures, then differences
    low, high = percentile_interval(np.einsum("rg,mgk->mkr", weights, both) / len(first), level)
    mean = both.mean(axis=1)
    k = len(measures)
    low[0, k:] = high[0, k:] = mean[0, k:] = np.nan  # the first model is the reference
    out = {"model": models}
    names = measures + [f"{m}_difference" for m in measures]
    for j, name in enumerate(names):
        out.update({name: mean[:, j], f"{name}_low": low[:, j], f"{name}_high": high[:, j]})
    return pd.DataFrame(out).assign(resamples=len(weights))


def difference_verdict(low, high, better: str = "higher") -> str:
    """What a paired difference's interval [low, high] says: ``significant: higher (better)``
    (or lower, or worse: ``better`` names the better direction, ``higher`` or ``lower``) when
    it excludes 0, ``not significant`` when it includes 0, ``not tested (no interval)`` without
    one (no resamples, or a single group)."""
    if better not in ("higher", "lower"):
        raise DcignError(f"better must be 'higher' or 'lower', got {better!r}")
    if low is None or high is None or not (math.isfinite(float(low))
                                           and math.isfinite(float(high))):
        return "not tested (no interval)"
    if low <= 0 <= high:
        return "not significant"
    direction = "higher" if low > 0 else "lower"
    return f"significant: {direction} ({'better' if direction == better else 'worse'})"


def weighted_median(values, weights) -> np.ndarray:
    """The median of ``values`` (N,) when value i is counted ``weights[r, i]`` times (integer
    counts), one per weight row: a bootstrap resample's median without building it. With an
    even total count, the mean of the two middle values (as ``numpy.median``). Returns (R,)."""
    values = np.asarray(values, np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(values, kind="stable")
    v, cumulative = values[order], np.cumsum(weights[:, order], axis=1)
    total = cumulative[:, -1:]
    # the 0-based positions of the two middle copies in the sorted resample
    lower, upper = np.floor((total - 1) / 2), np.floor(total / 2)

    def at(position: np.ndarray) -> np.ndarray:  # the value of that copy: fewer copies before it
        return v[np.minimum((cumulative <= position).sum(axis=1), len(v) - 1)]

    return (at(lower) + at(upper)) / 2


def intervals_apart(low_a, high_a, low_b, high_b) -> bool:
    """Whether [low_a, high_a] and [low_b, high_b] do not overlap (touching ends overlap)."""
    return bool(high_a < low_b or high_b < low_a)


def _weighted_midranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Midranks of ``values`` (N,) when value i is counted ``weights[r, i]`` times: the rank a
    copy would get among all copies, ties sharing their mean rank (as ``scipy.stats.rankdata``
    ranks the repeated sample). Returns (R, N)."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    group_weight = np.add.reduceat(weights[:, order], starts, axis=1)
    group_rank = np.cumsum(group_weight, axis=1) - group_weight + (group_weight + 1.0) / 2.0
    ranks = np.empty(weights.shape)
    ranks[:, order] = group_rank[:, np.repeat(np.arange(len(starts)),
                                              np.diff(np.r_[starts, len(v)]))]
    return ranks


def weighted_spearman(x, y, weights, chunk: int = 100) -> np.ndarray:
    """Spearman's rho of (x, y) with observation i counted ``weights[r, i]`` times, one rho per
    weight row: a bootstrap resample without building it (a row of ones: the plain rho).

    Args:
        x, y: (N,) values.
        weights: (R, N) non-negative counts.

    Returns:
        (R,) rho; NaN where a row leaves x or y constant.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    out = np.full(len(weights), np.nan)
    for first in range(0, len(weights), chunk):
        w = weights[first:first + chunk]
        rx, ry = _weighted_midranks(x, w), _weighted_midranks(y, w)
        total = w.sum(axis=1, keepdims=True)
        rx -= (w * rx).sum(axis=1, keepdims=True) / total
        ry -= (w * ry).sum(axis=1, keepdims=True) / total
        with np.errstate(invalid="ignore", divide="ignore"):
            out[first:first + len(w)] = (w * rx * ry).sum(axis=1) / np.sqrt(
                (w * rx * rx).sum(axis=1) * (w * ry * ry).sum(axis=1))
    return out
