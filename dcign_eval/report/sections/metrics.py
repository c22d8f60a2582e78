"""Section 5, disentanglement metrics: one column per model, beside two reference codes computed
by the same functions (the true factors, a ceiling; a random code, a floor), with the time each
metric took. Results are cached by the models' fingerprints and the settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from dcign_eval import __version__
from dcign_eval.headline import headline, paper_result
from dcign_eval.metrics import DCI_MODE_LABELS
from dcign_eval.metrics.paper import ANGLE_FACTORS
from dcign_eval.metrics.suite import CEILING, FLOOR, measure_models, measure_references
from dcign_eval.protocol import Model
from dcign_eval.report.page import REPORT_VERSION, Section, html_table, table_link
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
    "dci_informativeness": ("DCI informativeness (test accuracy)", "higher"),
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


def metrics_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The metrics table of the page from :func:`dcign_eval.metrics.suite.measure_models`'s
    tidy frame: one row per metric; per model (and reference code) its value, per model the
    seconds it took; which direction is better. The ``neuron_*`` bookkeeping rows are left
    out."""
    df = df[~df["metric"].str.startswith("neuron_")]
    models = list(dict.fromkeys(df["model"]))
    values = df.pivot(index="metric", columns="model", values="value")
    seconds = df.pivot(index="metric", columns="model", values="seconds")
    order = list(dict.fromkeys(df["metric"]))
    out = pd.DataFrame({"metric": order,
                        "measure": [METRIC_LABELS.get(m, (m, ""))[0] for m in order],
                        "better": [METRIC_LABELS.get(m, ("", ""))[1] for m in order]})
    for label in models:
        out[label] = values.loc[order, label].to_numpy()
    for label in models:
        if label not in REFERENCES:
            out[f"seconds: {label}"] = seconds.loc[order, label].to_numpy()
    return out


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


def section(models: Sequence[Model], worlds: Mapping[int, object],
            codes: Mapping[str, np.ndarray], settings: ReportSettings, seed: int,
            results_cache: Path) -> Section:
    """``worlds``: image size -> evaluation grid; ``codes``: model name -> its grid codes."""
    overrides = {k: v for k, v in (("num_train", settings.metrics_num_train),
                                   ("num_eval", settings.metrics_num_eval)) if v}
    key = cache_key({"models": [(m.name, m.fingerprint) for m in models],
                     "grids": {size: w.dataset.manifest for size, w in worlds.items()},
                     "seed": seed, "metrics": settings.metrics, "dci": settings.dci_mode,
                     "overrides": overrides, "version": REPORT_VERSION, "package": __version__})
    path = results_cache / f"metrics-{key}.csv"
    cached = None
    with contextlib.suppress(OSError, ValueError, pd.errors.ParserError):
        cached = pd.read_csv(path)
        if list(cached.columns) != ["model", "metric", "value", "seconds"]:
            cached = None
    if cached is None:
        df = pd.concat([measure_models(models, worlds, seed, settings.metrics, codes=codes,
                                       dci_mode=settings.dci_mode, **overrides),
                        measure_references(worlds[models[0].image_size], seed,
                                           settings.metrics, dci_mode=settings.dci_mode,
                                           **overrides)], ignore_index=True)
        with contextlib.suppress(OSError):
            atomic_write_text(path, df.to_csv(index=False))
    else:
        df = cached
    comparison = metrics_comparison(df)
    return Section({"headline": first_sentence(models, df), "metrics": {
        "table": html_table(comparison.drop(columns="metric"),
                            digits={c: 2 for c in comparison.columns if c.startswith("seconds")}),
        "csv": table_link("metrics"), "cached": cached is not None,
        "references": list(REFERENCES),
        "num_train": settings.metrics_num_train or 10_000,
        "num_eval": settings.metrics_num_eval or 5_000,
        "dci": DCI_MODE_LABELS.get(settings.dci_mode, settings.dci_mode)}},
        tables={"metrics": df})
