"""Time ``dcign-eval report`` cold: the default two models, then with more models beside them.

Goal: at most 3 minutes cold on 2 cores for the default two models (the shipped dcign and vae,
the standard preset: 5 seeds of the cheap metrics and an interval on every figure), at most 2
with ``--preset quick`` (one seed), and about a minute more for each further model.

Cold means nothing cached: each run gets a fresh code cache, evaluation grid and recognition
faces in a temporary directory, so the face world is rendered and every model encodes afresh. The time of every section is printed
for both runs, then the total for two models and the cost per extra model, in wall seconds and in
CPU seconds (this process and its workers): on a shared machine the wall time grows with the other
work, the CPU time much less.

    .venv/bin/python bench/bench_report.py                 # dcign + vae, then + the PCA example
    .venv/bin/python bench/bench_report.py --preset quick --two   # dcign + vae only, one seed
    .venv/bin/python bench/bench_report.py --extra examples/beta_vae.py:make_model \\
        --extra examples/pca_model.py:make_model --preset tiny
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pandas as pd  # noqa: E402

from dcign_eval.report import build_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished workers so far."""
    own, workers = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def cold_report(models: list[str], preset: str, seed: int) -> dict[str, float]:
    """Section seconds of one report of ``models`` with every cache empty, and its CPU seconds
    (key ``cpu``)."""
    start = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        tmp = Path(tmp)
        os.environ["DCIGN_EVAL_CACHE"] = str(tmp / "cache")
        result = build_report(models, out=tmp / "report", seed=seed, settings=preset,
                              grid_dir=tmp / "data", cache_dir=tmp / "cache",
                              recognition_cache=tmp / "recognition")
        return {**result.seconds, "cpu": cpu_seconds() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="the first models (default: dcign and vae)")
    parser.add_argument("--extra", action="append", default=None,
                        help="models added beside them (default: the PCA example)")
    parser.add_argument("--preset", default="standard",
                        help="report preset (standard, quick, full, tiny)")
    parser.add_argument("--two", action="store_true",
                        help="the first models only, no run with more models beside them")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base = args.model or ["dcign", "vae"]
    extra = args.extra or [f"{ROOT / 'examples' / 'pca_model.py'}:make_model"]
    goal = {"standard": 180, "quick": 120}.get(args.preset)

    print(f"cold report, preset {args.preset}, {os.cpu_count()} cores; load average (1, 5, 15 "
          f"minutes) before: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    two = cold_report(base, args.preset, args.seed)
    if args.two:
        print(pd.Series(two).drop("cpu").to_string(float_format=lambda v: f"{v:7.1f}"))
        print("load average (1, 5, 15 minutes) after: "
              + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
        print(f"{len(base)} models: {two['total']:.0f} s wall, {two['cpu']:.0f} s CPU"
              + (f" (goal <= {goal} s wall on 2 cores)" if goal else ""))
        return 0
    more = cold_report(base + extra, args.preset, args.seed)
    table = pd.DataFrame({f"{len(base)} models": pd.Series(two),
                          f"{len(base) + len(extra)} models": pd.Series(more)}).drop("cpu")
    table["extra"] = table.iloc[:, 1] - table.iloc[:, 0]
    print(table.to_string(float_format=lambda v: f"{v:7.1f}"))
    per_model = (more["total"] - two["total"]) / len(extra)
    per_model_cpu = (more["cpu"] - two["cpu"]) / len(extra)
    print("load average (1, 5, 15 minutes) after: "
          + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    print(f"{len(base)} models: {two['total']:.0f} s wall, {two['cpu']:.0f} s CPU"
          + (f" (goal <= {goal} s wall on 2 cores)" if goal else "")
          + f"; each extra model: {per_model:.0f} s wall, {per_model_cpu:.0f} s CPU "
          f"(goal about 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
