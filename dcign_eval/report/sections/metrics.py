"""Section 5, disentanglement metrics: one column per model, beside two reference codes computed
by the same functions (the true factors, a ceiling; a random code, a floor), with the time each
metric took. Results are cached by the models' fingerprints and the settings.

Intervals: a metric drawn over several seeds gets the Student-t 95% interval of its mean
(:func:`dcign_eval.metrics.suite.seed_intervals`); the paper's Spearman |rho|, computed on the
whole grid rather than a sample, gets a bootstrap interval over the grid's identities
(:func:`dcign_eval.metrics.paper.spearman_intervals`). Two models differ significantly on a metric when
their intervals do not overlap (:func:`difference_mark`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from dcign_eval import __version__
from dcign_eval.cache import CodedGrid, identity
from dcign_eval.headline import headline, paper_result
from dcign_eval.intervals import LEVEL, format_interval, intervals_apart
from dcign_eval.metrics import (DCI_MODE_LABELS, METRIC_KEYS, evaluate_timed,
                                library_versions, metric_settings)
from dcign_eval.metrics.paper import ANGLE_FACTORS, spearman_intervals
from dcign_eval.metrics.suite import (CEILING, FLOOR, measure_models, measure_references,
                                      reference_codes, seed_intervals)
from dcign_eval.protocol import Model
from dcign_eval.report.page import REPORT_VERSION, HtmlTable, Section, html_table, table_link
from dcign_eval.report.settings import ReportSettings
from trainer.errors import DcignError
from trainer.io import atomic_write_text

REFERENCES = (CEILING, FLOOR)


#: How the page names each measurement, and which direction is better.
METRIC_LABELS = {
    "beta_vae": ("BetaVAE score", "higher"), "factor_vae": ("FactorVAE score", "higher"),
    "mig": ("MIG", "higher"), "sap": ("SAP (discrete)", "higher"),
    "mig_continuous": ("MIG (continuous: posterior samples)", "higher"),
    "sap_continuous": ("SAP (continuous)", "higher"),
    "dci_disentanglement": ("DCI disentanglement", "higher"),
    "dci_completeness": ("DCI completeness", "higher"),
    "dci_informativeness": ("DCI informativeness (test accuracy; test R² with lasso)",
                            "higher"),
    "modularity": ("modularity", "higher"), "explicitness": ("explicitness", "higher"),
    "irs": ("IRS", "higher"),
    "gaussian_total_correlation": ("Gaussian total correlation", "lower"),
    "mutual_info": ("mean pairwise mutual information", "lower"),
    "spearman_azimuth": ("paper: Spearman |rho|, azimuth neuron", "higher"),
    "r2_azimuth": ("paper: monotone-fit R², azimuth neuron", "higher"),
    "spearman_elevation": ("paper: Spearman |rho|, elevation neuron", "higher"),
    "r2_elevation": ("paper: monotone-fit R², elevation neuron", "higher"),
    "spearman_light": ("paper: Spearman |rho|, light neuron", "higher"),
    "r2_light": ("paper: monotone-fit R², light neuron", "higher"),
    "intrinsic_invariance": ("paper: intrinsic block within / between identity distance",
                             "lower"),
}


def metric_label(metric: str, settings: str = "") -> str:
    """How the page names ``metric`` (:data:`METRIC_LABELS`, the key itself when unknown), for
    the estimator its tidy row's ``settings`` names: DCI informativeness is the per-factor
    classifiers' mean test accuracy, but the lasso estimator's mean test R²
    (:mod:`dcign_eval.metrics.dci`)."""
    if metric == "dci_informativeness" and "estimator=" in str(settings):
        lasso = "estimator=lasso" in str(settings)
        return f"DCI informativeness (test {'R²' if lasso else 'accuracy'})"
    return METRIC_LABELS.get(metric, (metric,))[0]


#: The tidy metrics table's columns (tables/metrics.csv).
COLUMNS = ["model", "metric", "value", "low", "high", "seeds", "interval", "seconds", "settings",
           "versions"]


def interval_label(seeds: int) -> str:
    """How a metric row's interval was obtained, for the ``interval`` column."""
    return f"Student t over {seeds} seeds" if seeds >= 2 else "none (one seed)"


def difference_mark(a: pd.Series, b: pd.Series) -> str:
    """Whether two rows of the tidy metrics table (one metric, two models) differ: significant
    when their 95% intervals do not overlap. Not tested when either row has no interval (one
    seed), or when both intervals have no width (a figure the seeds do not change)."""
    if not (has_interval(a) and has_interval(b)):
        return "not tested (one seed)"
    if a["low"] == a["high"] and b["low"] == b["high"]:
        return "not tested (no spread)"
    apart = intervals_apart(a["low"], a["high"], b["low"], b["high"])
    return "significant" if apart else "not significant"


def has_interval(row: pd.Series) -> bool:
    """Whether a tidy row's low and high are an interval: several seeds, or the bootstrap."""
    return row["seeds"] >= 2 or str(row["interval"]).startswith("bootstrap")


def _shown(row: pd.Series) -> str:
    """A tidy row's value as the page shows it: value ± half-width, or the value alone."""
    if not has_interval(row):
        return format_interval(row["value"])
    return format_interval(row["value"], row["low"], row["high"])


def metrics_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The metrics table of the page from the tidy frame (:data:`COLUMNS`): one row per metric;
    the measure as :func:`metric_label` names it; per model (and reference code) its value ± the
    half-width of its 95% interval (the value alone without one); for each model after the
    first, whether it differs significantly from the first (:func:`difference_mark`); which
    direction is better; per model the seconds it took. The ``neuron_*`` bookkeeping rows are
    left out."""
    df = df[~df["metric"].str.startswith("neuron_")]
    models = list(dict.fromkeys(df["model"]))
    rows = {(r["model"], r["metric"]): r for _, r in df.iterrows()}
    order = list(dict.fromkeys(df["metric"]))
    settings = df.drop_duplicates("metric").set_index("metric")["settings"] \
        if "settings" in df else pd.Series("", index=order)
    out = pd.DataFrame({"metric": order,
                        "measure": [metric_label(m, settings[m]) for m in order],
                        "better": [METRIC_LABELS.get(m, ("", ""))[1] for m in order]})
    for label in models:
        out[label] = [_shown(rows[label, m]) if (label, m) in rows else "" for m in order]
    compared = [label for label in models if label not in REFERENCES]
    for label in compared[1:]:
        out[f"{compared[0]} vs {label}"] = [
            difference_mark(rows[compared[0], m], rows[label, m])
            if (compared[0], m) in rows and (label, m) in rows else "" for m in order]
    seconds = df.pivot(index="metric", columns="model", values="seconds")
    for label in compared:
        out[f"seconds: {label}"] = seconds.loc[order, label].to_numpy()
    return out


def comparison_table(comparison: pd.DataFrame) -> HtmlTable:
    """:func:`metrics_comparison` for the template: seconds to 2 decimals, the value columns
    right-aligned."""
    table = html_table(comparison.drop(columns="metric"),
                       digits={c: 2 for c in comparison.columns if c.startswith("seconds")})
    values = [c for c in comparison.columns if c not in ("metric", "measure", "better")
              and " vs " not in c]
    table.numeric = [c in values for c in table.columns]
    return table


def first_sentence(models: Sequence[Model], df: pd.DataFrame) -> str | None:
    """The page's first sentence (:func:`dcign_eval.headline.headline`): does the first model,
    the one the page is about, show the paper's result against the first entangled model (one
    without named latents)? None when the first model names no face-world angles."""
    subject = models[0]
    if not all(f in subject.latent_names for f in ANGLE_FACTORS):
        return None
    baseline = next((m.name for m in models[1:] if not m.latent_names), None)
    try:
        return headline(paper_result(df, subject.name, baseline))
    except DcignError:  # a metric selection without the paper's measurements
        return None


def cache_key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def measure(models: Sequence[Model], worlds: Mapping[int, object],
            codes: Mapping[str, np.ndarray], settings: ReportSettings,
            seed: int) -> pd.DataFrame:
    """The tidy metrics frame (:data:`COLUMNS`) of ``models`` and the reference codes.

    Every metric is drawn with ``seed``; the ``settings.seeded_metrics`` (all when None) also with
    ``seed + 1`` .. ``seed + settings.metrics_seeds - 1``, the grid and codes kept, and summarised
    by :func:`dcign_eval.metrics.suite.seed_intervals`. The paper's Spearman |rho| rows then take
    the bootstrap interval over the grid's identities (:func:`spearman_rows`)."""
    overrides = {k: v for k, v in (("num_train", settings.metrics_num_train),
                                   ("num_eval", settings.metrics_num_eval)) if v}
    overrides["dci_mode"] = settings.dci_mode
    world = worlds[models[0].image_size]
    runs = [measure_models(models, worlds, seed, settings.metrics, codes=codes, **overrides),
            measure_references(world, seed, settings.metrics, **overrides)]
    runs = [frame.assign(seed=seed) for frame in runs]
    selected = METRIC_KEYS if settings.metrics is None else settings.metrics
    seeded = [m for m in (METRIC_KEYS if settings.seeded_metrics is None
                          else settings.seeded_metrics) if m in selected]
    # name -> (its grid, its codes): the models' and the reference codes'
    coded = {m.name: (worlds[m.image_size], codes[m.name]) for m in models}
    coded.update({n: (world, c) for n, (c, _) in reference_codes(world, seed).items()})
    for k in range(1, settings.metrics_seeds if seeded else 1):
        # Only the sampled metrics again: the paper's measurements and the codes do not change.
        for name, (grid, code) in coded.items():
            values, seconds = evaluate_timed(CodedGrid(grid, code), identity, seeded,
                                             seed=seed + k, **overrides)
            runs.append(pd.DataFrame({"model": name, "metric": list(values),
                                      "value": list(values.values()),
                                      "seconds": list(seconds.values()), "seed": seed + k}))
    df = seed_intervals(pd.concat(runs, ignore_index=True))
    df["interval"] = df["seeds"].map(interval_label)
    used = metric_settings(**overrides)
    df["settings"] = df["metric"].map(lambda m: used.get(m, ""))
    df["versions"] = library_versions()
    df = spearman_rows(df, coded, settings.grid_resamples, seed)
    return df[COLUMNS]


def spearman_rows(df: pd.DataFrame, coded: Mapping[str, tuple], resamples: int,
                  seed: int) -> pd.DataFrame:
    """``df`` with each ``spearman_<factor>`` row's low and high the 95% bootstrap interval over
    the grid's identities of the latent that row measured (``neuron_<factor>``); ``coded``: name
    -> (its evaluation grid, its codes)."""
    if resamples < 1:
        return df
    df = df.copy()
    for name, (grid, code) in coded.items():
        factors = grid.dataset.factors
        part = df[df["model"] == name].set_index("metric")
        neurons = {f: int(part.loc[f"neuron_{f}", "value"]) for f in ANGLE_FACTORS
                   if f"neuron_{f}" in part.index and f"spearman_{f}" in part.index}
        if not neurons:
            continue
        found = spearman_intervals(code, factors, neurons, resamples, seed)
        for factor, (low, high) in found.items():
            at = (df["model"] == name) & (df["metric"] == f"spearman_{factor}")
            df.loc[at, ["low", "high"]] = [low, high]
            df.loc[at, "interval"] = (f"bootstrap over the grid's "
                                      f"{factors['identity'].nunique()} identities")
    return df


def section(models: Sequence[Model], worlds: Mapping[int, object],
            codes: Mapping[str, np.ndarray], settings: ReportSettings, seed: int,
            results_cache: Path) -> Section:
    """``worlds``: image size -> evaluation grid; ``codes``: model name -> its grid codes."""
    key = cache_key({"models": [(m.name, m.fingerprint) for m in models],
                     "grids": {size: w.dataset.manifest for size, w in worlds.items()},
                     "seed": seed, "metrics": settings.metrics, "dci": settings.dci_mode,
                     "num_train": settings.metrics_num_train,
                     "num_eval": settings.metrics_num_eval, "seeds": settings.metrics_seeds,
                     "seeded": settings.seeded_metrics, "resamples": settings.grid_resamples,
                     "version": REPORT_VERSION, "package": __version__})
    path = results_cache / f"metrics-{key}.csv"
    cached = None
    with contextlib.suppress(OSError, ValueError, pd.errors.ParserError):
        cached = pd.read_csv(path)
        if list(cached.columns) != COLUMNS:
            cached = None
    if cached is None:
        df = measure(models, worlds, codes, settings, seed)
        with contextlib.suppress(OSError):
            atomic_write_text(path, df.to_csv(index=False))
    else:
        df = cached
    comparison = metrics_comparison(df)
    seeds = sorted(set(df.loc[~df["metric"].str.startswith("neuron_"), "seeds"]))
    return Section({"headline": first_sentence(models, df), "metrics": {
        "table": comparison_table(comparison),
        "csv": table_link("metrics"), "cached": cached is not None,
        "references": list(REFERENCES),
        "num_train": settings.metrics_num_train or 10_000,
        "num_eval": settings.metrics_num_eval or 5_000,
        "seeds": max(seeds), "one_seed": seeds == [1], "first_seed": seed,
        "level": f"{LEVEL:.0%}",
        "seeded": [metric_label(m, f"estimator={settings.dci_mode}")
                   for m in dict.fromkeys(df.loc[df["seeds"] >= 2, "metric"])],
        "grid_identities": int(worlds[models[0].image_size].dataset.factors["identity"]
                               .nunique()),
        "grid_resamples": settings.grid_resamples,
        "dci": DCI_MODE_LABELS.get(settings.dci_mode, settings.dci_mode)}},
        tables={"metrics": df})
