"""Section 6, invariant face recognition: the feature sets of every model (its intrinsic block
and its full code) beside PCA of pixels and pixels; identification, verification, and the first
model's intrinsic block against each other feature at large pose changes.

Every figure is shown value ± half its 95% bootstrap interval over the held-out identities
(:mod:`dcign_eval.recognition`); differences between feature sets are judged by the paired
McNemar test on the same probes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from dcign_eval import __version__
from dcign_eval.intervals import LEVEL, with_interval
from dcign_eval.protocol import Model
from dcign_eval.recognition import ProbeGrid, run_recognition
from dcign_eval.report.page import REPORT_VERSION, HtmlTable, Section, html_table, read_json
from dcign_eval.report.sections.metrics import cache_key
from dcign_eval.report.settings import ReportSettings
from trainer.io import atomic_write_json, default_mode

RECOGNITION_FILES = ("summary.csv", "verification_summary.csv", "comparison.csv",
                     "recognition.csv", "verification.csv", "accuracy_vs_azimuth.png",
                     "accuracy_vs_light.png", "verification_vs_azimuth.png")


def section(models: Sequence[Model], root: Path, seed: int, settings: ReportSettings,
            size: int, recognition_cache: Path, results_cache: Path, cache_dir: Path) -> Section:
    """Run (or take from the cache) the recognition experiment; copy its CSVs and plots into
    ``root/recognition``; return the template's tables. Each model gives its feature sets (its
    intrinsic block, its full code); the first model's intrinsic block is the reference of the
    paired comparison."""
    grid = ProbeGrid(*settings.probe_steps, probes_per_azimuth=settings.probes_per_azimuth)
    params = {"models": [(m.name, m.fingerprint) for m in models],
              "n_identities": settings.recognition_identities, "grid": grid.params(),
              "classifiers": list(settings.classifiers), "pca": [settings.pca_components,
                                                                  settings.pca_identities,
                                                                  settings.pca_images],
              "size": size, "seed": seed, "resamples": settings.recognition_resamples,
              "version": REPORT_VERSION,
              "package": __version__}
    cached_dir = results_cache / f"recognition-{cache_key(params)}"
    target = root / "recognition"
    cached = all((cached_dir / name).is_file() for name in RECOGNITION_FILES)
    if not cached:
        work = root / ".recognition-run"
        result = run_recognition(models, out=work,
                                 n_identities=settings.recognition_identities, size=size,
                                 grid=grid, classifiers=settings.classifiers,
                                 pca_components=settings.pca_components or None,
                                 pca_identities=settings.pca_identities,
                                 pca_images=settings.pca_images,
                                 cache_dir=recognition_cache, code_cache_dir=cache_dir,
                                 random_state=seed, resamples=settings.recognition_resamples)
        # Labels, not this machine's paths: the folder may be committed.
        run = dict(result.params, files=None,
                   models={m.name: {"image size": m.image_size} for m in models})
        atomic_write_json(work / "run.json", run)
        with contextlib.suppress(OSError):
            results_cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".recognition-", dir=results_cache))
            os.chmod(tmp, default_mode(directory=True))
            for name in RECOGNITION_FILES + ("run.json",):
                shutil.copy2(work / name, tmp / name)
            shutil.rmtree(cached_dir, ignore_errors=True)
            os.replace(tmp, cached_dir)
        source = work
    else:
        source = cached_dir
    target.mkdir(parents=True, exist_ok=True)
    for name in RECOGNITION_FILES + ("run.json",):
        shutil.copy2(source / name, target / name)
    shutil.rmtree(root / ".recognition-run", ignore_errors=True)
    run = read_json(target / "run.json")
    rename = {"pca": "PCA of pixels", "pixels": "pixels"}
    summary = pd.read_csv(target / "summary.csv")
    summary["feature"] = summary["feature"].map(lambda f: rename.get(f, f))
    large = float(run.get("large_pose", 60))
    verification = pd.read_csv(target / "verification_summary.csv")
    verification["feature"] = verification["feature"].map(lambda f: rename.get(f, f))
    verification = pd.DataFrame({
        "model": verification["model"].fillna(""), "feature": verification["feature"],
        "ROC AUC": with_interval(verification, "auc"),
        "equal error rate": with_interval(verification, "eer"),
        "same pairs": verification["n_same"], "different pairs": verification["n_different"]})
    comparison = pd.read_csv(target / "comparison.csv")
    comparison["other"] = comparison["other"].map(lambda f: rename.get(f, f))
    comparison = pd.DataFrame({
        "classifier": comparison["classifier"], "protocol": comparison["protocol"],
        "other feature": comparison["other"],
        "reference accuracy": comparison["accuracy_reference"],
        "other accuracy": comparison["accuracy_other"],
        "difference": with_interval(comparison, "difference"), "probes": comparison["n"],
        "only reference right": comparison["only_reference"],
        "only other right": comparison["only_other"], "p (McNemar)": comparison["p_value"],
        "significant (p < 0.05)": comparison["verdict"].map(
            lambda v: "no" if v == "no significant difference" else f"yes: {v}"),
        "difference's interval": [bootstrap_mark(lo, hi) for lo, hi in
                                  zip(comparison["difference_low"],
                                      comparison["difference_high"])]})
    resamples = int(run.get("interval", {}).get("resamples", 0))
    return Section({"recognition": {
            "reference": run.get("reference"),
            "accuracy": _right_aligned(html_table(recognition_accuracy(summary, "accuracy")),
                                       1),
            "accuracy_large": _right_aligned(html_table(recognition_accuracy(
                summary, "accuracy_large_pose")), 1),
            "large_pose": large,
            "verification": _right_aligned(html_table(verification), 2),
            "comparison": html_table(comparison, digits={"p (McNemar)": 3}),
            "resamples": resamples, "level": f"{LEVEL:.0%}",
            "plots": [("recognition/accuracy_vs_azimuth.png",
                       "Identification accuracy against |azimuth| (distance from the frontal "
                       "gallery view)"),
                      ("recognition/accuracy_vs_light.png",
                       "Identification accuracy against light azimuth"),
                      ("recognition/verification_vs_azimuth.png",
                       "Verification ROC AUC against |azimuth|")],
            "params": run, "cached": cached, "csv": "recognition/summary.csv"}})


def bootstrap_mark(low: float, high: float) -> str:
    """Whether a difference's bootstrap interval over identities excludes 0 (empty without one).
    McNemar counts probes as independent, which probes of one identity are not: where the
    interval includes 0 and McNemar says significant, the test is the optimistic one."""
    if pd.isna(low) or pd.isna(high):
        return ""
    return "excludes 0" if low > 0 or high < 0 else "includes 0"


def _right_aligned(table: HtmlTable, first: int) -> HtmlTable:
    """``table`` with its columns from ``first`` on aligned as numbers (value ± half-width)."""
    table.numeric = [i >= first for i in range(len(table.columns))]
    return table


def recognition_accuracy(summary: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Identification accuracy wide: a row per feature set, a column per (classifier, protocol),
    each cell the accuracy ± half its 95% interval, from
    :func:`dcign_eval.recognition.summary_table`'s frame (``value``: ``accuracy`` or
    ``accuracy_large_pose``)."""
    frame = summary.assign(column=summary["classifier"] + ", " + summary["protocol"],
                           shown=with_interval(summary, value))
    wide = frame.pivot(index="feature", columns="column", values="shown")
    wide = wide.loc[list(dict.fromkeys(frame["feature"])), list(dict.fromkeys(frame["column"]))]
    wide.columns.name = None
    return wide.reset_index()
