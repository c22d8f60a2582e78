"""Measure trained models: the disentanglement metrics and the paper's measurements, on a factor
grid of held-out identities rendered once and reused (``dcign-eval metrics``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dcign_eval.cache import CodedGrid, ProgressFactory, encode_cached, identity
from dcign_eval.metrics import (METRIC_KEYS, POSTERIOR_METRICS, evaluate_timed, library_versions,
                                metric_settings, metrics_table)
from dcign_eval.metrics.paper import ANGLE_FACTORS, PAPER_KEYS, paper_measurements
from trainer.errors import DcignError
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


def evaluation_worlds(models: Sequence, grid_dir: str | Path, n_identities: int = 10,
                      progress: ProgressFactory | None = None) -> dict[int, FaceWorld]:
    """The held-out grid at every image size the models take: image size -> world."""
    out = {}
    for size in dict.fromkeys(int(m.image_size) for m in models):
        total = int(np.prod(evaluation_spec(n_identities).factor_sizes))
        bar = progress(total, f"evaluation grid, {size}x{size}") if progress else None
        if bar is None:
            out[size] = evaluation_world(grid_dir, size, n_identities)
            continue
        with bar as advance:
            out[size] = evaluation_world(grid_dir, size, n_identities, progress=advance)
    return out


def grid_codes(model, world: FaceWorld, *, cache_dir=None,
               progress: ProgressFactory | None = None) -> np.ndarray:
    """The model's codes of every grid image, row i the image of flat index i (cached)."""
    return encode_cached(model, world.dataset.images, cache_dir=cache_dir, progress=progress,
                         description=f"encoding the grid ({model.name})")


#: The settings column of a metric that needs the encoder's posterior, for a model without one.
NO_POSTERIOR_NOTE = "skipped: the model has no encoder posterior (encode_posterior)"


def grid_posterior(model, world: FaceWorld, *, cache_dir=None,
                   progress: ProgressFactory | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sd) of the model's posterior q(z|x) for every grid image (cached), as
    :func:`grid_codes`."""
    both = encode_cached(model, world.dataset.images, cache_dir=cache_dir, progress=progress,
                         description=f"encoding the grid's posteriors ({model.name})",
                         posterior=True)
    mu, sd = np.split(both, 2, axis=1)
    return mu, sd


def _columns(start: int, stop: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: rows[:, start:stop]


def measure_model(model, world: FaceWorld, seed: int = 0, metrics: Sequence[str] | None = None,
                  *, codes: np.ndarray | None = None, cache_dir=None,
                  **overrides) -> tuple[dict[str, float], dict[str, float]]:
    """(values, seconds) of the metrics (all if None; ``[]`` for none) and the paper's
    measurements for one model (:class:`dcign_eval.protocol.Model`).

    ``codes``: the model's :func:`grid_codes` if already at hand (else they are encoded through
    the cache, and the encoding time is charged to the paper's measurements). The metrics that
    need the encoder's posterior (continuous MIG) come out NaN for a model without one (see
    :data:`NO_POSTERIOR_NOTE`)."""
    start = time.perf_counter()
    if codes is None:
        codes = grid_codes(model, world, cache_dir=cache_dir)
    encoding = time.perf_counter() - start
    wanted = list(METRIC_KEYS if metrics is None else metrics)
    needs_posterior = [k for k in wanted if k in POSTERIOR_METRICS]
    data, represent = CodedGrid(world, codes), identity
    start = time.perf_counter()
    if needs_posterior and getattr(model, "has_posterior", False):
        # the grid's observations become [code | mu | sd]: the metrics read the code, the
        # continuous MIG the posterior
        mu, sd = grid_posterior(model, world, cache_dir=cache_dir)
        dims = codes.shape[1]
        data = CodedGrid(world, np.hstack([codes, mu, sd]))
        represent = _columns(0, dims)
        mean, spread = _columns(dims, 2 * dims), _columns(2 * dims, 3 * dims)
        overrides["posterior"] = lambda rows: (mean(rows), spread(rows))
        needs_posterior = []
    posterior_seconds = time.perf_counter() - start
    wanted = [k for k in wanted if k not in needs_posterior]
    values, seconds = ({}, {}) if not wanted else \
        evaluate_timed(data, represent, wanted, seed=seed, **overrides)
    for key in needs_posterior:  # skipped: no posterior
        values[key], seconds[key] = float("nan"), 0.0
    for key in POSTERIOR_METRICS:
        if key in seconds and key not in needs_posterior:
            seconds[key] += posterior_seconds
    start = time.perf_counter()
    paper = paper_measurements(codes, world.dataset.factors, model.latent_names,
                               random_state=seed)
    elapsed = time.perf_counter() - start + encoding
    for key in PAPER_KEYS:
        values[key] = paper[key]
        seconds[key] = elapsed / len(PAPER_KEYS)
    for name in ANGLE_FACTORS:
        values[f"neuron_{name}"] = paper[f"neuron_{name}"]
    return values, seconds


def measure_models(models: Sequence, worlds: dict[int, FaceWorld], seed: int = 0,
                   metrics: Sequence[str] | None = None, *, codes: dict | None = None,
                   cache_dir=None, **overrides) -> pd.DataFrame:
    """Tidy frame (model, metric, value, seconds) over several models, each measured on the grid
    of its image size (``worlds``: image size -> world, as :func:`evaluation_worlds`;
    ``codes``: model name -> its :func:`grid_codes`, when already at hand)."""
    results, seconds = {}, {}
    for model in models:
        results[model.name], seconds[model.name] = measure_model(
            model, worlds[int(model.image_size)], seed, metrics,
            codes=(codes or {}).get(model.name), cache_dir=cache_dir, **overrides)
    return _tidy(results, seconds)


def measure_models_seeds(models: Sequence, worlds: dict[int, FaceWorld], seed: int = 0,
                         seeds: int = 5, metrics: Sequence[str] | None = None, *,
                         codes: dict | None = None, cache_dir=None,
                         **overrides) -> pd.DataFrame:
    """:func:`measure_models` once per seed ``seed, seed + 1, ..., seed + seeds - 1`` (each seed
    draws the metrics' samples afresh; the grid and the codes stay), summarised by
    :func:`seed_intervals`: one row per (model, metric) with the mean and its 95% interval, and
    each metric's estimator and settings (:func:`~dcign_eval.metrics.metric_settings`) and the
    library versions next to it."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise DcignError(f"seeds must be an int >= 1, got {seeds!r}")
    if codes is None:  # encode once, not once per seed
        codes = {m.name: grid_codes(m, worlds[int(m.image_size)], cache_dir=cache_dir)
                 for m in models}
    runs = [measure_models(models, worlds, seed + k, metrics, codes=codes, cache_dir=cache_dir,
                           **overrides).assign(seed=seed + k) for k in range(int(seeds))]
    df = seed_intervals(pd.concat(runs, ignore_index=True))
    settings = metric_settings(**overrides)
    df["settings"] = df["metric"].map(lambda m: settings.get(m, ""))
    skipped = df["metric"].isin(POSTERIOR_METRICS) & df["value"].isna()
    df.loc[skipped, "settings"] = NO_POSTERIOR_NOTE
    df["versions"] = library_versions()
    return df


def seed_intervals(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds of each (model, metric) with a Student-t interval of the mean.

    Args:
        df: tidy rows (model, metric, value, seconds, seed), one per seed.
        level: the interval's coverage.

    Returns:
        model, metric, value (the mean), low, high, seeds (how many), seconds (the mean), in the
        order of ``df``. With one seed, or values equal over seeds, low = high = value. The
        ``neuron_*`` rows (a latent's index, not a measure) take the most frequent index.
    """
    rows = []
    for (model, metric), part in df.groupby(["model", "metric"], sort=False):
        values = part["value"].to_numpy(np.float64)
        n = len(values)
        if metric.startswith("neuron_"):
            mean = low = high = float(pd.Series(values).mode().iloc[0])
        else:
            mean = float(values.mean())
            half = 0.0 if n < 2 else float(stats.t.ppf(0.5 + level / 2, n - 1)
                                           * values.std(ddof=1) / np.sqrt(n))
            low, high = mean - half, mean + half
        rows.append({"model": model, "metric": metric, "value": mean, "low": low, "high": high,
                     "seeds": n, "seconds": float(part["seconds"].mean())})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "low", "high", "seeds",
                                       "seconds"])


def _tidy(results: dict, seconds: dict) -> pd.DataFrame:
    df = metrics_table(results, seconds)
    order = {k: i for i, k in enumerate((*METRIC_KEYS, *PAPER_KEYS))}
    models = {name: i for i, name in enumerate(dict.fromkeys(df["model"]))}  # as given
    df["_model"] = df["model"].map(models)
    df["_order"] = df["metric"].map(lambda m: order.get(m, len(order)))
    return df.sort_values(["_model", "_order"], kind="stable").drop(
        columns=["_model", "_order"]).reset_index(drop=True)


#: The reference codes' names in tables: what a perfect code and a code of nothing score.
CEILING, FLOOR = "true factors (ceiling)", "random code (floor)"
#: Latents of the random code (a typical small model's code size).
RANDOM_CODE_LATENTS = 10


class _ReferenceCode:
    """A code given as an array: the name and latent names the measurements need."""

    def __init__(self, name: str, latent_names: dict[str, int]):
        self.name = name
        self.latent_names = latent_names
        self.image_size = 0


def reference_codes(world: FaceWorld, seed: int = 0) -> dict[str, tuple[np.ndarray, dict]]:
    """The two reference codes of a grid: name -> (codes (N, D), latent names).

    * :data:`CEILING`: the true factors as a code -- azimuth, elevation and light (degrees, named)
      and the identity's grid index (the intrinsic block).
    * :data:`FLOOR`: :data:`RANDOM_CODE_LATENTS` standard-normal latents, nothing named,
      independent of the images (drawn from ``seed``).
    """
    factors = world.dataset.factors
    identity = pd.factorize(factors["identity"], sort=True)[0].astype(np.float64)
    true = np.column_stack([factors[name].to_numpy(np.float64) for name in ANGLE_FACTORS]
                           + [identity])
    rng = np.random.default_rng([int(seed), 97])
    random = rng.standard_normal((len(factors), RANDOM_CODE_LATENTS))
    return {CEILING: (true, {name: k for k, name in enumerate(ANGLE_FACTORS)}),
            FLOOR: (random, {})}


def measure_references(world: FaceWorld, seed: int = 0, metrics: Sequence[str] | None = None,
                       **overrides) -> pd.DataFrame:
    """The metrics and the paper's measurements of :func:`reference_codes`, by the same
    functions as a model's: a tidy frame (model, metric, value, seconds) with the reference
    names in the model column."""
    results, seconds = {}, {}
    for name, (codes, names) in reference_codes(world, seed).items():
        results[name], seconds[name] = measure_model(_ReferenceCode(name, names), world, seed,
                                                     metrics, codes=codes, **overrides)
    return _tidy(results, seconds)


def latents_used(models: Sequence, df: pd.DataFrame) -> pd.DataFrame:
    """Which latent stood for each angle in the paper's measurements: one row per model and
    factor, with the latent and whether the model names it or it is the best single latent."""
    rows = []
    for model in models:
        for name in ANGLE_FACTORS:
            found = df[(df["model"] == model.name) & (df["metric"] == f"neuron_{name}")]
            if not len(found):
                continue
            named = name in model.latent_names
            rows.append({"model": model.name, "factor": name,
                         "latent": int(found["value"].iloc[0]),
                         "neuron": "named" if named else "best single latent"})
    return pd.DataFrame(rows, columns=["model", "factor", "latent", "neuron"])


def wide_table(df: pd.DataFrame) -> pd.DataFrame:
    """Metrics as rows, models as columns (for printing and the report)."""
    wide = df.pivot(index="metric", columns="model", values="value")
    order = list(dict.fromkeys(df["metric"]))
    return wide.loc[order, list(dict.fromkeys(df["model"]))]

