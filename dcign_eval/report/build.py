"""Assemble the report: load the models, run every section, write its tables and figures, render
the page and swap the folder into place.

The folder is built in a temporary directory next to ``out`` and renamed over it only once
complete, so a failed run leaves the old report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from dcign_eval.cache import default_cache_dir
from dcign_eval.metrics.suite import evaluation_worlds, grid_codes
from dcign_eval.protocol import Model, as_model, unique_names
from dcign_eval.report import page
from dcign_eval.report.provenance import provenance
from dcign_eval.report.sections import cards, metrics, recognition, reconstructions, scatter
from dcign_eval.report.sections import traversals
from dcign_eval.report.settings import ReportSettings, preset
from trainer.errors import DcignError
from trainer.io import (atomic_write_json, atomic_write_text, owned_temp_dir,
                        remove_orphaned_temp_dirs)

Log = Callable[[str], None]
#: How many models one page compares.
MAX_MODELS = 8
DEFAULT_MODELS = ("dcign", "vae")


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the page, every file beside it, the section times."""

    index: Path
    files: list[Path]
    seconds: dict[str, float]
    provenance: dict


class _Sections:
    """Times named sections (a section may be entered more than once: times add up)."""

    def __init__(self, log: Log | None):
        self.seconds: dict[str, float] = {}
        self.log = log

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.log:
            self.log(f"report: {name} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def load_report_models(models) -> list[Model]:
    """1 to :data:`MAX_MODELS` models (a spec for :func:`dcign_eval.protocol.load_model`, a
    loaded model, or a sequence of them), names made unique; the first is the one the page is
    about."""
    models = [models] if isinstance(models, (str, os.PathLike, Model)) else list(models)
    if not 1 <= len(models) <= MAX_MODELS:
        raise DcignError(f"the report compares 1 to {MAX_MODELS} models, got {len(models)}")
    return unique_names([as_model(m) for m in models])


def describe(model: Model) -> str:
    """How the page's header calls a model."""
    if model.latent_names:
        return "named latents: " + ", ".join(model.latent_names)
    return "no named latents"


def build_report(models: Sequence = DEFAULT_MODELS, out: str | os.PathLike = "reports/latest",
                 seed: int = 0, settings: ReportSettings | str = "standard", *,
                 grid_dir: str | os.PathLike = "data",
                 cache_dir: str | os.PathLike | None = None,
                 recognition_cache: str | os.PathLike | None = "out/recognition/cache",
                 command: str | None = None, log: Log | None = None) -> ReportResult:
    """Write the report folder ``out`` (``index.html``, figures, movies, tables, report.json).

    Args:
        models: 1 to 8 models: run directories, shipped names, ``file.py:factory`` or
            ``package.module:factory`` specs, or loaded models. The first is the one the page is
            about; every section shows every model.
        out: the report folder; an existing report there is replaced once the new one is
            complete; any other non-empty folder is refused.
        seed: seeds every random choice of the analyses.
        settings: a :class:`ReportSettings` or a preset name (standard, quick, full, tiny).
        grid_dir: where the metrics' evaluation grid is rendered once and reused (as
            ``dcign-eval metrics --grid-dir``).
        cache_dir: the cache of encoded codes and the report's result caches (metrics,
            recognition); default ``$DCIGN_EVAL_CACHE`` or ~/.cache/dcign-eval.
        recognition_cache: rendered recognition faces (``dcign-eval recognition``'s default
            ``out/recognition/cache``); None keeps them under ``cache_dir``.
        command: the command line, for the provenance.
        log: called with a line as each section starts.
    Returns:
        a :class:`ReportResult`.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)  # the recognition plots go through pyplot

    preset_name = settings if isinstance(settings, str) else None
    settings = preset(settings) if isinstance(settings, str) else settings
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DcignError(f"seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    out = Path(out)
    page.check_out(out)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    recognition_cache = Path(recognition_cache) if recognition_cache is not None \
        else cache_dir / "recognition"
    results_cache = cache_dir / "report"
    sections = _Sections(log)
    started = time.perf_counter()

    with sections("loading models"):
        models = load_report_models(models)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temp_dirs(out.parent, out.name)  # what a killed report left
        staging = owned_temp_dir(out.parent, out.name)
    except OSError as e:
        raise DcignError(f"cannot create the report folder next to {out}: {e.strerror}") \
            from None
    try:
        context = _build_sections(models, staging, seed, settings, sections,
                                  grid_dir=Path(grid_dir), cache_dir=cache_dir,
                                  recognition_cache=recognition_cache,
                                  results_cache=results_cache)
        with sections("page"):
            caches = {"evaluation grid": page.display_path(grid_dir),
                      "encoded codes": page.display_path(cache_dir / "codes"),
                      "report results (metrics, recognition)":
                          page.display_path(results_cache),
                      "recognition faces": page.display_path(recognition_cache)}
            seconds = dict(sections.seconds)
            seconds["total"] = time.perf_counter() - started
            prov = provenance(models, seed, settings, seconds, preset_name=preset_name,
                              command=command, caches=caches)
            context.update(provenance=prov,
                           section_times=page.html_table(pd.DataFrame(
                               {"section": list(seconds), "seconds": list(seconds.values())}),
                               digits={"seconds": 1}))
            html = page.render_page(context)
            atomic_write_text(staging / "index.html", html)
            atomic_write_json(staging / "report.json", {
                "format": page.REPORT_FORMAT, "version": page.REPORT_VERSION,
                "provenance": prov,
                "tables": sorted(str(p.relative_to(staging)) for p in
                                 (staging / "tables").glob("*.csv"))})
        files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
        page.check_links(staging, html)
        page.swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = dict(sections.seconds)
    seconds["total"] = time.perf_counter() - started
    return ReportResult(out / "index.html", [out / f for f in files], seconds, prov)


def _write(section: page.Section, root: Path) -> dict:
    """Write a section's tables and figures under ``root``; return its template values."""
    for name, frame in section.tables.items():
        atomic_write_text(root / page.table_link(name),
                          frame.to_csv(index=name in section.indexed))
    for name, figure in section.figures.items():
        page.save_figure(figure, root / page.figure_link(name))
    return section.context


def _build_sections(models: list[Model], root: Path, seed: int, settings: ReportSettings,
                    sections: _Sections, *, grid_dir: Path, cache_dir: Path,
                    recognition_cache: Path, results_cache: Path) -> dict:
    """Run every section into ``root``; returns the template's context (without provenance)."""
    subject = models[0]
    size = int(subject.image_size)
    ctx = {"title": f"DC-IGN report: {subject.name}",
           "models": [{"name": m.name, "source": m.source, "kind": describe(m)} for m in models],
           "settings": settings}

    with sections("model cards"):
        ctx.update(_write(cards.section(models, size), root))
    with sections("reconstructions"):
        ctx.update(_write(reconstructions.section(models, settings, seed), root))
    with sections("traversals and re-rendering fidelity"):
        ctx.update(_write(traversals.section(models, settings, root, cache_dir, seed), root))
    with sections("evaluation grid (render or load, encode)"):
        worlds = evaluation_worlds(models, grid_dir, settings.grid_identities)
        codes = {m.name: grid_codes(m, worlds[m.image_size], cache_dir=cache_dir)
                 for m in models}
        world = worlds[size]
        ctx["grid"] = {"path": str(world.dataset.path), "images": len(world.dataset.images),
                       "identities": settings.grid_identities,
                       "sizes": " x ".join(str(s) for s in world.factor_sizes)}
    with sections("inferred versus true"):
        ctx.update(_write(scatter.section(models, codes, world.dataset.factors,
                                          settings.scatter_points, seed), root))
    with sections("disentanglement metrics"):
        ctx.update(_write(metrics.section(models, worlds, codes, settings, seed, results_cache),
                          root))
    with sections("invariant recognition"):
        ctx.update(_write(recognition.section(models, root, seed, settings, size,
                                              recognition_cache, results_cache, cache_dir),
                          root))
    return ctx
