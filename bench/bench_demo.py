#!/usr/bin/env python
"""The main job's figures and wall time: `dcign-eval demo --profile quick` run once, then the
paper's measurements of its DC-IGN and baseline (held-out identities) and the report's first
sentence, with the time of each step.

    python bench/bench_demo.py                    # out/bench-demo, data under data/
    python bench/bench_demo.py --fresh            # retrain: remove out/bench-demo/runs first

Rendered data and the report's caches are reused when present (as `make demo` reuses them); the
set-up of a fresh machine (`make setup`: the virtual environment) is not in the time. A finished
run in OUT/runs is reused too, so time a training with --fresh.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from dcign_eval.headline import TARGET, headline, paper_result
from dcign_eval.pipeline import format_seconds, run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench-demo"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the report's caches (default $DCIGN_EVAL_CACHE or ~/.cache)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--fresh", action="store_true", help="remove OUT/runs first")
    args = parser.parse_args(argv)

    if args.fresh:
        shutil.rmtree(args.out / "runs", ignore_errors=True)
    started = time.perf_counter()
    result = run_demo(args.profile, args.out, data_root=args.data_root, cache_dir=args.cache_dir,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - started

    metrics = pd.read_csv(result.report.parent / "tables" / "metrics.csv")
    dcign, baseline = (str(Path(result.runs[r])) for r in ("dcign", "vae"))
    models = list(dict.fromkeys(metrics["model"]))  # the report's labels, DC-IGN first
    check = paper_result(metrics, models[0], models[1] if len(models) > 1 else None)
    print(f"demo --profile {args.profile}: DC-IGN {dcign}, baseline {baseline}")
    print(f"Spearman |rho| on held-out identities (target {TARGET:g}; the baseline: its best "
          f"single latent)")
    print(check.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    invariance = metrics[metrics["metric"] == "intrinsic_invariance"]
    for row in invariance.itertuples():
        print(f"intrinsic within/between ratio, {row.model}: {row.value:.3f}")
    print(headline(check))
    for name, seconds in result.seconds.items():
        print(f"  {name}: {format_seconds(seconds)}")
    print(f"wall time: {format_seconds(wall)} (without the set-up of a fresh machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
