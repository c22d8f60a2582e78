#!/usr/bin/env python
"""Reconstruction MSE and SSIM, and the lineup, of several models on the same held-out faces.

`dcign-eval report` shows 8 faces; comparing checkpoints wants more. Each model encodes (to mu)
and decodes faces of identities never seen in training, at random angles, exactly as the report's
reconstruction sheet does (`dcign_eval.reconstruction.reconstructions`); then every reconstruction is
ranked against all the faces' identities rendered at its pose and light (`dcign_eval.lineup`,
the report's lineup: with the default 64 faces and seed 0, the same faces).

    python scripts/reconstruction_mse.py dcign vae runs/dcign/relative --faces 64 \
        [--csv out/reconstruction.csv]

``--csv`` also writes tidy rows (model, metric, value: ``reconstruction_mse`` and
``reconstruction_ssim``) for ``scripts/ship_model.py --stages``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from dcign_eval.intervals import with_interval
from dcign_eval.lineup import lineup, lineup_table
from dcign_eval.protocol import load_models
from dcign_eval.reconstruction import held_out_faces, reconstruction_table, reconstructions
from trainer.errors import ArgumentParser, DcignError, run_main
from trainer.io import atomic_write_text, check_writable_dir


def main() -> None:
    p = ArgumentParser(description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="run directories, shipped names or file.py:factory specs")
    p.add_argument("--faces", type=int, default=64, help="held-out faces, 1..64")
    p.add_argument("--seed", type=int, default=0,
                   help="which faces, and the bootstrap's draws (random_state)")
    p.add_argument("--csv", type=Path, help="also write tidy rows (model, metric, value) here")
    args = p.parse_args()
    if args.csv is not None:
        check_writable_dir(args.csv.parent, "--csv's folder")
        if args.csv.is_dir():
            raise DcignError(f"--csv {args.csv} is a folder, not a file")
    faces = held_out_faces(args.faces, random_state=args.seed)
    rec = reconstructions(load_models(args.models), faces)
    table = reconstruction_table(rec, random_state=args.seed)
    identified = lineup_table(lineup(rec), random_state=args.seed) if len(faces) > 1 else None
    print(shown(table, {"model": "model", "faces": "faces", "mse": "MSE", "ssim": "SSIM"}))
    if args.csv is not None:
        tidy = table.melt(id_vars=["model", "faces"], value_vars=["mse", "ssim"],
                          var_name="metric", value_name="value")
        tidy["metric"] = "reconstruction_" + tidy["metric"]
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.csv, tidy[["model", "metric", "value", "faces"]].to_csv(
            index=False))
    if identified is not None:
        print()
        print(shown(identified, {"model": "model", "lineup": "lineup",
                                 "identified": "identified", "in_top_5": "in_top_5",
                                 "mean_rank": "mean_rank", "mse_to_own_face": "own_face_mse",
                                 "nearest_other": "nearest_other"}))


def shown(table: pd.DataFrame, columns: dict[str, str]) -> str:
    """``columns`` of ``table`` as text, renamed; a figure with ``_low`` and ``_high`` written
    value ± half its 95% interval (4 decimals)."""
    return pd.DataFrame({label: with_interval(table, column, 4) if f"{column}_low" in table
                         else table[column] for column, label in columns.items()}
                        ).to_string(index=False)

if __name__ == "__main__":
    run_main(main)
