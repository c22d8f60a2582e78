"""Section 6, invariant face recognition: the feature sets of every model (its intrinsic block
and its full code) beside PCA of pixels and pixels; identification, verification, and the first
model's intrinsic block against each other feature at large pose changes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from dcign_eval import __version__
from dcign_eval.protocol import Model
from dcign_eval.recognition import ProbeGrid, run_recognition
from dcign_eval.report.page import REPORT_VERSION, Section, html_table, read_json
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
              "size": size, "seed": seed, "version": REPORT_VERSION,
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
                                 random_state=seed)
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
    verification = verification.rename(columns={"auc": "ROC AUC", "eer": "equal error rate",
                                                "n_same": "same pairs",
                                                "n_different": "different pairs"})
    comparison = pd.read_csv(target / "comparison.csv")
    comparison["other"] = comparison["other"].map(lambda f: rename.get(f, f))
    comparison = comparison.rename(columns={
        "other": "other feature", "accuracy_reference": "reference accuracy",
        "accuracy_other": "other accuracy", "only_reference": "only reference right",
        "only_other": "only other right", "p_value": "p (McNemar)", "n": "probes"})
    comparison = comparison.drop(columns=["reference", "difference"], errors="ignore")
    return Section({"recognition": {
            "reference": run.get("reference"),
            "accuracy": html_table(recognition_accuracy(summary, "accuracy")),
            "accuracy_large": html_table(recognition_accuracy(summary, "accuracy_large_pose")),
            "large_pose": large,
            "verification": html_table(verification),
            "comparison": html_table(comparison, digits={"p (McNemar)": 3}),
            "plots": [("recognition/accuracy_vs_azimuth.png",
                       "Identification accuracy against |azimuth| (distance from the frontal "
                       "gallery view)"),
                      ("recognition/accuracy_vs_light.png",
                       "Identification accuracy against light azimuth"),
                      ("recognition/verification_vs_azimuth.png",
                       "Verification ROC AUC against |azimuth|")],
            "params": run, "cached": cached, "csv": "recognition/summary.csv"}})


def recognition_accuracy(summary: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Identification accuracy wide: a row per feature set, a column per (classifier, protocol),
    from :func:`dcign_eval.recognition.summary_table`'s frame (``value``: ``accuracy`` or
    ``accuracy_large_pose``)."""
    frame = summary.assign(column=summary["classifier"] + ", " + summary["protocol"])
    wide = frame.pivot(index="feature", columns="column", values=value)
    wide = wide.loc[list(dict.fromkeys(frame["feature"])), list(dict.fromkeys(frame["column"]))]
    wide.columns.name = None
    return wide.reset_index()
