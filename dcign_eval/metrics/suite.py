"""Measure trained models: the disentanglement metrics and the paper's measurements, on a factor
grid of held-out identities rendered once and reused (``dcign-eval metrics``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from dcign_eval.metrics import METRIC_KEYS, evaluate_timed, metrics_table
from dcign_eval.metrics.paper import PAPER_KEYS, paper_measurements
from trainer.faces import FaceWorld, GridSpec, render_grid

DEFAULT_GRID = dict(split="test", n_identities=10, azimuth_step=10, elevation_step=10,
                    light_step=20)


def evaluation_spec(n_identities: int = 10) -> GridSpec:
    """The held-out grid: identities x 19 azimuths x 7 elevations x 9 lights."""
    return GridSpec.make(**{**DEFAULT_GRID, "n_identities": n_identities})


def evaluation_world(grid_dir: str | Path, size: int, n_identities: int = 10,
                     progress: Callable[[int], None] | None = None) -> FaceWorld:
    """The held-out factor grid (rendered on first use, then reused) as ground-truth data."""
    spec = evaluation_spec(n_identities)
    # two analyses at once: the second waits for the first's render, then reuses it
    dataset = render_grid(Path(grid_dir) / f"eval-{n_identities}id-{size}px", spec, size=size,
                          progress=progress, wait=True)
    return FaceWorld.from_dataset(dataset)


def measure_model(model, world: FaceWorld, seed: int = 0, metrics: Sequence[str] | None = None,
                  **overrides) -> tuple[dict[str, float], dict[str, float]]:
    """(values, seconds) of the metrics (all if None; ``[]`` for none) and the paper's
    measurements for one loaded model."""
    values, seconds = ({}, {}) if metrics is not None and len(metrics) == 0 else \
        evaluate_timed(world, model.encode, metrics, seed=seed, **overrides)
    start = time.perf_counter()
    codes = model.encode(world.dataset.images)
    paper = paper_measurements(codes, world.dataset.factors, model.latent_names,
                               random_state=seed)
    elapsed = time.perf_counter() - start
    for key in PAPER_KEYS:
        values[key] = paper[key]
        seconds[key] = elapsed / len(PAPER_KEYS)
    for name in ("azimuth", "elevation", "light"):
        values[f"neuron_{name}"] = paper[f"neuron_{name}"]
    return values, seconds


def measure_models(models: dict[str, object], world: FaceWorld, seed: int = 0,
                   metrics: Sequence[str] | None = None, **overrides) -> pd.DataFrame:
    """Tidy frame (model, metric, value, seconds) over several loaded models."""
    results, seconds = {}, {}
    for name, model in models.items():
        results[name], seconds[name] = measure_model(model, world, seed, metrics, **overrides)
    df = metrics_table(results, seconds)
    order = {k: i for i, k in enumerate((*METRIC_KEYS, *PAPER_KEYS))}
    df["_order"] = df["metric"].map(lambda m: order.get(m, len(order)))
    return df.sort_values(["model", "_order"], kind="stable").drop(columns="_order").reset_index(
        drop=True)


def wide_table(df: pd.DataFrame) -> pd.DataFrame:
    """Metrics as rows, models as columns (for printing and the report)."""
    wide = df.pivot(index="metric", columns="model", values="value")
    order = list(dict.fromkeys(df["metric"]))
    return wide.loc[order, list(dict.fromkeys(df["model"]))]

