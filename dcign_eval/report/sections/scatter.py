"""Section 4, inferred versus true: each model's latent for azimuth, elevation and light against
the true angle on the evaluation grid (the paper's Figure 6 on held-out faces), one row of panels
per model, with Spearman rho and a monotone fit."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from dcign_eval.metrics.factor_fit import monotone_fit
from dcign_eval.metrics.paper import ANGLE_FACTORS as ANGLES
from dcign_eval.metrics.paper import best_single_latent
from dcign_eval.protocol import Model
from dcign_eval.report.page import Section, figure_link, html_table, table_link
from trainer.errors import DcignError


def factor_scatter(codes: Mapping[str, np.ndarray], factors: pd.DataFrame,
                   neurons: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Each model's latent for each angle against the true angle, tidy.

    Args:
        codes: model label -> (N, D) encoder means of the images whose factors are ``factors``.
        factors: (N,) rows of identity, azimuth, elevation, light (degrees).
        neurons: model label -> {factor: latent index} (a DC-IGN's named neurons; for a baseline
            its best single latent, as :func:`dcign_eval.metrics.paper.best_single_latent`).
    Returns:
        model, factor, latent, true (degrees), inferred (the latent's encoder mean); one row per
        (model, factor, image).
    """
    frames = []
    for label, z in codes.items():
        z = np.asarray(z)
        if z.ndim != 2 or len(z) != len(factors):
            raise DcignError(f"codes of {label} must be (N, D) with N = {len(factors)}, "
                             f"got {z.shape}")
        for name in ANGLES:
            k = int(neurons[label][name])
            frames.append(pd.DataFrame({"model": label, "factor": name, "latent": k,
                                        "true": factors[name].to_numpy(np.float64),
                                        "inferred": z[:, k].astype(np.float64)}))
    return pd.concat(frames, ignore_index=True)


def scatter_summary(scatter: pd.DataFrame, named: Mapping[str, bool] | None = None
                    ) -> pd.DataFrame:
    """Spearman rho (signed) and monotone-fit R^2 per (model, factor) over all points.

    ``named``: model label -> whether its latents are the model's named neurons (else the best
    single latent stands in).
    """
    rows = []
    for (label, name), part in scatter.groupby(["model", "factor"], sort=False):
        x, y = part["true"].to_numpy(), part["inferred"].to_numpy()
        rho = spearmanr(x, y).statistic if np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0
        rows.append({"model": label, "factor": name, "latent": int(part["latent"].iloc[0]),
                     "neuron": ("named" if (named or {}).get(label, False)
                                else "best single latent"),
                     "spearman": float(rho) if np.isfinite(rho) else 0.0,
                     "r2": monotone_fit(y, x)["r2"], "n": len(part)})
    return pd.DataFrame(rows, columns=["model", "factor", "latent", "neuron", "spearman", "r2",
                                       "n"])


def plot_factor_scatter(scatter: pd.DataFrame, summary: pd.DataFrame, max_points: int = 3000,
                        random_state: int = 0):
    """Inferred latent against the true angle: a row per model, a column per factor (the
    paper's Figure 6 on held-out faces), each titled with its latent and Spearman rho; the
    median per true angle in black."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(scatter["model"]))
    fig = Figure(figsize=(10.5, 2.9 * len(models) + 0.3), layout="constrained")
    axes = fig.subplots(len(models), len(ANGLES), squeeze=False)
    rng = np.random.default_rng([int(random_state), 37])
    for r, label in enumerate(models):
        for c, name in enumerate(ANGLES):
            ax = axes[r, c]
            part = scatter[(scatter["model"] == label) & (scatter["factor"] == name)]
            if len(part) > max_points:
                part = part.iloc[np.sort(rng.choice(len(part), max_points, replace=False))]
            spread = np.diff(np.unique(part["true"])).min() if part["true"].nunique() > 1 else 1
            jitter = rng.uniform(-0.25, 0.25, len(part)) * spread
            ax.scatter(part["true"] + jitter, part["inferred"], s=3, alpha=0.25,
                       color=f"C{r % 10}", rasterized=True, linewidths=0)
            full = scatter[(scatter["model"] == label) & (scatter["factor"] == name)]
            med = full.groupby("true")["inferred"].median()
            ax.plot(med.index, med.to_numpy(), "k-", lw=1.2)
            s = summary[(summary["model"] == label) & (summary["factor"] == name)].iloc[0]
            ax.set_title(f"{label}: z{s['latent']} vs {name}\nSpearman rho = "
                         f"{s['spearman']:+.3f}", fontsize=9)
            ax.set_xlabel(f"true {name} (degrees)", fontsize=8)
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel("inferred (encoder mean)", fontsize=8)
    return fig


def section(models: Sequence[Model], codes: Mapping[str, np.ndarray], factors: pd.DataFrame,
            scatter_points: int, seed: int) -> Section:
    """``codes``: model name -> its codes of the evaluation grid, whose rows are ``factors``."""
    neurons = {}
    for m in models:
        neurons[m.name] = {name: m.latent_names[name] if name in m.latent_names else
                           best_single_latent(codes[m.name], factors[name].to_numpy(float))
                           for name in ANGLES}
    scatter = factor_scatter({m.name: codes[m.name] for m in models}, factors, neurons)
    summary = scatter_summary(scatter, {m.name: all(a in m.latent_names for a in ANGLES)
                                        for m in models})
    return Section({"scatter": {"src": figure_link("inferred_vs_true"),
                                "table": html_table(summary),
                                "csv": table_link("inferred_vs_true")}},
                   tables={"inferred_vs_true": summary},
                   figures={"inferred_vs_true": plot_factor_scatter(scatter, summary,
                                                                    scatter_points, seed)})
