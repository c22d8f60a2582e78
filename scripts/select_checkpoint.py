#!/usr/bin/env python
"""Pick one of several checkpoints of a DC-IGN on a validation grid, not on the evaluation grid.

The named neurons' Spearman |rho| moves by a few hundredths from one checkpoint to the next, so
which checkpoint ships is a choice; making it on the grid that `dcign-eval metrics` reports
would be selecting on the test set. This script measures each candidate on a grid of *other*
held-out identities (test-split identities 10..19; the evaluation grid uses 0..9) and names the
one with the largest mean Spearman |rho| over azimuth, elevation and light.

    python scripts/select_checkpoint.py runs/dcign-1000 runs/dcign-2000 runs/dcign-3000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dcign_eval.metrics.paper import ANGLE_FACTORS, paper_measurements
from dcign_eval.metrics.suite import DEFAULT_GRID
from dcign_eval.protocol import load_model
from trainer.errors import ArgumentParser, run_main
from trainer.faces.world import GridSpec, render_grid

VALIDATION_IDENTITIES = slice(10, 20)  # of the test split; the evaluation grid has 0..9


def validation_grid(grid_dir: Path, size: int):
    spec = GridSpec.make(**{**DEFAULT_GRID, "n_identities": VALIDATION_IDENTITIES.stop})
    spec.identities = spec.identities[VALIDATION_IDENTITIES]
    return render_grid(grid_dir / f"val-grid-10id-{size}px", spec, size=size)


def main() -> None:
    p = ArgumentParser(description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run directories (checkpoints) to compare")
    p.add_argument("--grid-dir", type=Path, default=Path("data"))
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    models = [load_model(run) for run in args.runs]  # a bad run is refused before the render
    grid = validation_grid(args.grid_dir, args.size)
    rows = []
    for run, model in zip(args.runs, models):
        codes = model.encode(grid.images)
        m = paper_measurements(codes, grid.factors, model.latent_names)
        rows.append({"run": str(run), **{f: m[f"spearman_{f}"] for f in ANGLE_FACTORS},
                     "intrinsic_invariance": m["intrinsic_invariance"]})
    table = pd.DataFrame(rows)
    table["mean_spearman"] = table[list(ANGLE_FACTORS)].mean(axis=1)
    print(table.round(3).to_string(index=False))
    best = table.loc[int(np.argmax(table["mean_spearman"].to_numpy()))]
    print(f"selected: {best['run']} (mean Spearman {best['mean_spearman']:.3f})")


if __name__ == "__main__":
    run_main(main)
