"""Disentanglement metrics, as google-research/disentanglement_lib computes them
(unsupervised_study_v1 defaults), with its defects fixed, plus the DC-IGN paper's own measurements.

One metric per module, each a thin sampling function over a pure array core:

============================  =======================================  ===========================
key                           module                                   paper
============================  =======================================  ===========================
beta_vae                      :mod:`.beta_vae`                         Higgins et al. 2017
factor_vae                    :mod:`.factor_vae`                       Kim & Mnih 2018
mig, mig_continuous           :mod:`.mig`                              Chen et al. 2018
sap, sap_continuous           :mod:`.sap`                              Kumar et al. 2018
dci_disentanglement,          :mod:`.dci`                              Eastwood & Williams 2018
dci_completeness,
dci_informativeness
modularity, explicitness      :mod:`.modularity`                       Ridgeway & Mozer 2018
irs                           :mod:`.irs`                              Suter et al. 2019
gaussian_total_correlation,   :mod:`.unsupervised`                     Locatello et al. 2019
mutual_info
============================  =======================================  ===========================

The paper's measurements (named-neuron monotone fits, intrinsic-block invariance) are in
:mod:`.factor_fit`; they take arrays, not a data set.

:func:`evaluate` samples through a code cache over the factor grid, so each distinct observation is
encoded once across all metrics. DCI's importances come by default from scikit-learn's
gradient-boosted trees re-enacted on LightGBM's histogram trees (``dci_mode="gbt-hist"``, within
0.02 of the reference's estimator and much faster); pass ``dci_mode="gbt"`` for the reference's
own, or ``"lightgbm"``, ``"extra-trees"`` or ``"lasso"`` (the DCI paper's original; see
:mod:`.dci`). MIG comes in two declared variants: ``mig`` (histogram of the means, the
reference's) and ``mig_continuous`` (entropies of the posterior's samples, the MIG paper's own;
only with ``posterior=``, see :mod:`.mig`).
"""

from __future__ import annotations

import inspect
import json
import math
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from dcign_eval.metrics import (beta_vae, dci, factor_vae, irs, mig, modularity, sap,
                                unsupervised)
from dcign_eval.metrics._utils import CodeCache, check_data
from dcign_eval.metrics.dci import DCI_MODES
from trainer.errors import DcignError

__all__ = ["evaluate", "evaluate_timed", "METRIC_KEYS", "DCI_MODES", "DEFAULT_DCI_MODE",
           "DCI_MODE_LABELS", "POSTERIOR_METRICS", "OVERRIDES", "metrics_table", "write_metrics", "metric_settings",
           "library_versions"]

#: Every key :func:`evaluate` can return, in report order.
METRIC_KEYS = ("beta_vae", "factor_vae", "mig", "mig_continuous", "sap", "sap_continuous", "dci_disentanglement",
               "dci_completeness", "dci_informativeness", "modularity", "explicitness", "irs",
               "gaussian_total_correlation", "mutual_info")

#: The DCI estimator :func:`evaluate` uses unless told otherwise (the report's).
DEFAULT_DCI_MODE = dci.DEFAULT_DCI_MODE

#: How a report names each DCI mode.
DCI_MODE_LABELS = {
    "gbt-hist": "DCI (scikit-learn's gradient boosting on LightGBM's histogram trees, within "
                "0.02 of disentanglement_lib's)",
    "gbt": "DCI (scikit-learn gradient-boosted trees, as disentanglement_lib)",
    "lightgbm": "DCI (LightGBM's own boosting, gain importances; not the reference's estimator)",
    "extra-trees": "DCI (extra-trees importances, not the reference's estimator)",
    "lasso": "DCI (Lasso regression weights, Eastwood & Williams 2018's original)",
}

#: The metrics that need the encoder's posterior q(z|x) (``posterior=``).
POSTERIOR_METRICS = ("mig_continuous",)

# computation -> (function, {metric key: key in the function's result}, overrides it takes
# as {override name: keyword}). The order fixes each computation's random stream.
_COMPUTATIONS: dict[str, tuple[Callable, dict[str, str], dict[str, str]]] = {
    "beta_vae": (beta_vae.compute_beta_vae, {"beta_vae": "eval_accuracy"},
                 {"num_train": "num_train", "num_eval": "num_eval"}),
    "factor_vae": (factor_vae.compute_factor_vae, {"factor_vae": "eval_accuracy"},
                   {"num_train": "num_train", "num_eval": "num_eval",
                    "num_variance_estimate": "num_variance_estimate",
                    "prune_threshold": "prune_threshold"}),
    "mig": (mig.compute_mig, {"mig": "discrete_mig"},
            {"num_train": "num_train", "num_bins": "num_bins"}),
    "sap": (sap.compute_sap, {"sap": "SAP_score", "sap_continuous": "SAP_continuous"},
            {"num_train": "num_train", "num_eval": "num_test", "n_jobs": "n_jobs"}),
    "dci": (dci.compute_dci, {"dci_disentanglement": "disentanglement",
                              "dci_completeness": "completeness",
                              "dci_informativeness": "informativeness_test"},
            {"num_train": "num_train", "num_eval": "num_test", "n_jobs": "n_jobs",
             "dci_mode": "mode"}),
    "modularity": (modularity.compute_modularity_explicitness,
                   {"modularity": "modularity_score", "explicitness": "explicitness_score_test"},
                   {"num_train": "num_train", "num_eval": "num_test", "num_bins": "num_bins"}),
    "irs": (irs.compute_irs, {"irs": "IRS"},
            {"num_train": "num_train", "num_bins": "num_bins", "diff_quantile": "diff_quantile"}),
    "unsupervised": (unsupervised.compute_unsupervised,
                     {"gaussian_total_correlation": "gaussian_total_correlation",
                      "mutual_info": "mutual_info_score"},
                     {"num_train": "num_train", "num_bins": "num_bins"}),
    # Last, so that adding it left the other computations' random streams as they were.
    "mig_continuous": (mig.compute_mig_continuous, {"mig_continuous": "continuous_mig"},
                       {"num_train": "num_train", "num_samples": "num_samples",
                        "posterior": "posterior"}),
}

#: Keyword overrides :func:`evaluate` accepts (besides ``cache`` and ``encode_batch_size``).
#: ``num_test`` is an alias of ``num_eval``.
OVERRIDES = tuple(sorted({name for *_, takes in _COMPUTATIONS.values() for name in takes}
                         | {"num_test", "cache", "encode_batch_size"}))


def _select(metrics) -> list[str]:
    if metrics is None:
        return list(METRIC_KEYS)
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise DcignError(f"unknown metric {unknown[0]!r}; "
                         f"expected some of {', '.join(METRIC_KEYS)}")
    if not metrics:
        raise DcignError("no metric requested")
    return [m for m in METRIC_KEYS if m in metrics]


def _check_overrides(overrides: dict) -> dict:
    overrides = dict(overrides)
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise DcignError(f"unknown override {unknown[0]!r}; "
                         f"expected some of {', '.join(OVERRIDES)}")
    if "num_test" in overrides:
        if "num_eval" in overrides and overrides["num_eval"] != overrides["num_test"]:
            raise DcignError("num_eval and num_test are the same setting; give one")
        overrides["num_eval"] = overrides.pop("num_test")
    overrides.setdefault("dci_mode", DEFAULT_DCI_MODE)
    if overrides["dci_mode"] not in DCI_MODES:
        raise DcignError(f"unknown dci_mode {overrides['dci_mode']!r}; expected one of "
                         f"{', '.join(DCI_MODES)}")
    return overrides


def metric_settings(**overrides) -> dict[str, str]:
    """Each metric key's estimator and settings as :func:`evaluate` runs it with ``overrides``:
    the sample sizes, bins, thresholds and (DCI) the importance estimator, as one string, e.g.
    ``{"mig": "estimator=histogram of the means, num_bins=20, num_train=10000", ...}``."""
    overrides = _check_overrides(overrides)
    out = {}
    for function, produces, takes in _COMPUTATIONS.values():
        defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        # threads change the time, not the value; the posterior is the model's, not a setting
        used = {keyword: overrides.get(o, defaults.get(keyword)) for o, keyword in takes.items()
                if keyword not in ("n_jobs", "posterior")}
        if "mode" in used:
            used["estimator"] = used.pop("mode")
            if used["estimator"] == "gbt-hist":
                used["bins"] = (f"max({dci.GBT_HIST_MIN_BINS}, "
                                f"{dci.GBT_HIST_BIN_BUDGET} / latents)")
            if used["estimator"] == "lasso":
                used["alpha"] = dci.LASSO_ALPHA
        if function is mig.compute_mig:
            used["estimator"] = "histogram of the means"
        if function is mig.compute_mig_continuous:
            used["estimator"] = "posterior samples"
        text = ", ".join(f"{k}={v}" for k, v in sorted(used.items()))
        for key in produces:
            out[key] = text
    return out


def library_versions() -> str:
    """The versions of the libraries the metrics compute with, e.g. ``"numpy=2.4.6, ..."``."""
    found = []
    for name in ("numpy", "scipy", "scikit-learn", "lightgbm"):
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=absent")
    return ", ".join(found)


def evaluate_timed(data, represent, metrics: Iterable[str] | str | None = None, seed: int = 0,
                   **overrides) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`evaluate`, also returning the seconds spent on each metric.

    A computation that yields several keys (SAP, DCI, modularity / explicitness, the unsupervised
    pair) shares its time equally among the keys requested, so the seconds sum to the wall time.
    Encoding time is charged to the metric that first asks for a grid point.

    Returns:
        (values, seconds), both keyed like :data:`METRIC_KEYS`.
    """
    explicit = metrics is not None
    keys = _select(metrics)
    overrides = _check_overrides(overrides)
    if overrides.get("posterior") is None:
        overrides.pop("posterior", None)
        wanted_posterior = [k for k in keys if k in POSTERIOR_METRICS]
        if explicit and wanted_posterior:
            raise DcignError(f"{wanted_posterior[0]} needs the encoder's posterior (posterior=)")
        keys = [k for k in keys if k not in POSTERIOR_METRICS]  # all metrics: those it can do
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DcignError(f"seed must be a non-negative int, got {seed!r}")
    check_data(data)
    names = list(_COMPUTATIONS)
    cache = CodeCache(data, represent,
                      encode_batch_size=overrides.get("encode_batch_size", 256),
                      random_state=np.random.SeedSequence(int(seed), spawn_key=(len(names),)),
                      enabled=overrides.get("cache", True))
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for index, name in enumerate(names):
        function, produces, takes = _COMPUTATIONS[name]
        wanted = [k for k in produces if k in keys]
        if not wanted:
            continue
        kwargs = {keyword: overrides[o] for o, keyword in takes.items() if o in overrides}
        if name == "sap":
            kwargs.update(discrete="sap" in wanted, continuous="sap_continuous" in wanted)
        if name == "modularity":
            kwargs.update(modularity="modularity" in wanted, explicitness="explicitness" in wanted)
        # Each computation draws from its own stream: its values do not depend on which other
        # metrics run.
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index,)))
        start = time.perf_counter()
        result = function(data, represent, rng, cache=cache, **kwargs)
        elapsed = time.perf_counter() - start
        for key in wanted:
            value = float(result[produces[key]])
            if not math.isfinite(value):  # every core guards its undefined cases; this is a bug
                raise RuntimeError(f"metric {key} came out {value}")
            values[key] = value
            seconds[key] = elapsed / len(wanted)
    order = {k: i for i, k in enumerate(METRIC_KEYS)}
    values = dict(sorted(values.items(), key=lambda kv: order[kv[0]]))
    seconds = dict(sorted(seconds.items(), key=lambda kv: order[kv[0]]))
    return values, seconds


def evaluate(data, represent, metrics: Iterable[str] | str | None = None, seed: int = 0,
             **overrides) -> dict[str, float]:
    """Disentanglement metrics of a representation on ground-truth data.

    Args:
        data: ground-truth data: ``factor_sizes``, ``sample_factors(n, random_state)`` and
            ``sample_observations_from_factors(factors, random_state)`` (see
            :mod:`dcign_eval.metrics.synthetic`; the face world implements the same).
        represent: maps a batch of observations to codes (N, D) (numpy array or torch tensor);
            it should be deterministic (e.g. the encoder mean), since each grid point is
            encoded once.
        metrics: keys from :data:`METRIC_KEYS` (one key or several); None = all.
        seed: seeds every random choice; the same seed gives the same values.
        **overrides: settings applied to every metric that has them: ``num_train``,
            ``num_eval`` (alias ``num_test``), ``num_variance_estimate``, ``num_bins``,
            ``prune_threshold``, ``diff_quantile``, ``n_jobs``, ``num_samples`` (continuous
            MIG), ``dci_mode`` (one of DCI_MODES, default "gbt-hist"), ``posterior`` (maps a batch
            of observations to (mu, sd) of q(z|x); without it ``mig_continuous`` is left out of
            "all metrics", and asking for it is an error), ``cache`` (False encodes every
            sampled point afresh) and ``encode_batch_size``.

    Returns:
        metric key -> value (finite floats), in :data:`METRIC_KEYS` order.

    Raises:
        DcignError: on bad arguments, or codes containing NaN or inf.
    """
    return evaluate_timed(data, represent, metrics, seed, **overrides)[0]


def metrics_table(results: dict[str, dict[str, float]],
                  seconds: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """A tidy frame of metric values: columns model, metric, value, seconds.

    Args:
        results: model name -> {metric key -> value} (as :func:`evaluate` returns).
        seconds: model name -> {metric key -> seconds} (as :func:`evaluate_timed` returns);
            missing entries give NaN seconds.

    Returns:
        One row per (model, metric), models in the given order, metrics in METRIC_KEYS order.
    """
    seconds = seconds or {}
    order = {k: i for i, k in enumerate(METRIC_KEYS)}
    rows = []
    for model, values in results.items():
        for metric in sorted(values, key=lambda k: order.get(k, len(order))):
            rows.append({"model": str(model), "metric": metric, "value": float(values[metric]),
                         "seconds": float(seconds.get(model, {}).get(metric, float("nan")))})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "seconds"])


def write_metrics(df: pd.DataFrame, out_dir) -> tuple[Path, Path]:
    """Write ``df`` (from :func:`metrics_table`) as ``metrics.csv`` and ``metrics.json`` (a list
    of row records) in ``out_dir``, each atomically.

    Returns:
        (csv path, json path).
    """
    from trainer.io import atomic_write_json, atomic_write_text

    missing = {"model", "metric", "value", "seconds"} - set(df.columns)
    if missing:
        raise DcignError(f"metrics table lacks column(s) {', '.join(sorted(missing))}")
    out_dir = Path(out_dir)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    atomic_write_text(csv_path, df.to_csv(index=False))
    records = json.loads(df.to_json(orient="records"))  # NaN -> null, numpy -> python
    atomic_write_json(json_path, records)
    return csv_path, json_path
