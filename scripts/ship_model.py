#!/usr/bin/env python
"""Install a trained run as one of the package's shipped models, with its model card.

Copies what analysis needs (weights, config, state, loss history) from a run directory into
dcign_eval/models/NAME/ and writes MODEL_CARD.md from the run's own records -- its whole lineage,
every stage it descends from, and the recipe that made it -- plus the figures of a
`dcign-eval metrics` CSV and notes on what was tried.

    python scripts/ship_model.py runs/dcign dcign --metrics out/metrics/metrics.csv \
        [--notes notes.md]

RUN is a run directory or a recipe's output directory (its final stage). For a run made before
runs recorded their lineage, ``--pretrain RUN`` (repeated, earliest first) names its earlier stages
and ``--command`` the commands that made them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
import torch

from trainer.checkpoint import (LINEAGE, LINEAGE_HISTORY, load_checkpoint, read_lineage,
                                resolve_run_dir)
from trainer.model import describe_own_sizes
from trainer.train import TrainConfig

SHIPPED = Path(__file__).resolve().parents[1] / "dcign_eval" / "models"
FILES = ("model.safetensors", "config.json", "state.json", "history.csv")
LINEAGE_FILES = (LINEAGE, LINEAGE_HISTORY)  # a run started from another (a recipe's stages)


def wall_seconds(history: pd.DataFrame) -> float:
    """Training wall time: the ``seconds`` clock restarts on every resume, so sum the segments."""
    s = history["seconds"].to_numpy()
    restarts = [i for i in range(1, len(s)) if s[i] < s[i - 1]]
    ends = [s[i - 1] for i in restarts] + [s[-1]]
    return float(sum(ends))


def summary(run: Path) -> dict:
    history = pd.read_csv(run / "history.csv")
    val = history[history.split == "test"]
    train = history[history.split == "train"].tail(500)
    return {"steps": int(json.loads((run / "state.json").read_text())["step"]),
            "wall_s": wall_seconds(history),
            "final_val_neg_elbo": float(val.neg_elbo.iloc[-1]) if len(val) else float("nan"),
            "final_train_neg_elbo_last500": float(train.neg_elbo.mean())}


def stage_kind(train: dict) -> str:
    """'monovariant mode', 'vae mode, decoder alone, encoder frozen', ... from a train config."""
    kind = f"{train['mode']} mode"
    if train.get("freeze_encoder"):
        kind += ", decoder alone, encoder frozen"
    if train.get("lr_schedule", "constant") != "constant":
        kind += f", {train['lr_schedule']} learning rate"
    return kind


def stage_line(record: dict) -> str:
    """One stage of a lineage, in words: mode, sizes, settings, steps, time, hardware."""
    t = TrainConfig.from_dict(record["train"]).to_dict()
    extra = "" if t["mode"] == "vae" else (
        f", ratio {':'.join(f'{r:g}' for r in t['ratio'])}, invariance strength "
        f"{t['invariance_strength']:g}"
        + (f" ({t['invariance_scale']})" if t["invariance_scale"] != "absolute" else "")
        + (f", unclamped share {t['unclamped_share']:g}" if t["unclamped_share"] else ""))
    model = record["model"]  # the network's shape: its model config, not the options' copy
    own = describe_own_sizes(model)
    code = f", {own}" if own else ""
    group = (f", {t['batches_per_step']} batches a step" if t["batches_per_step"] > 1 else "")
    return (f"{stage_kind(t)} (width {model['width']:g}{code}, KL weight {t['kl_weight']:g}{extra}"
            f"{group}): {record['steps']:,} steps, {record['images']:,} images, "
            f"{record['seconds'] / 60:.1f} min on {record['hardware']}")


def card(name: str, run: Path, metrics: pd.DataFrame | None, commands: list[str], notes: str,
         pretrain: list[Path]) -> str:
    """The model card: the run's whole lineage (:func:`trainer.checkpoint.read_lineage`; for a
    run made before runs recorded it, the ``pretrain`` runs stand for its earlier stages)."""
    config = json.loads((run / "config.json").read_text())
    info = summary(run)
    lineage = read_lineage(run)
    stages = lineage.stages
    if len(stages) == 1 and pretrain:
        stages = [read_lineage(p).stages[-1] for p in pretrain] + stages
    steps, images = sum(s["steps"] for s in stages), sum(s["images"] for s in stages)
    seconds = sum(s["seconds"] for s in stages)
    lines = [f"# Shipped model `{name}`", "",
             f"Load it with `dcign_eval.load_model(\"{name}\")`.", "",
             "## Training", "",
             f"- All stages: {len(stages)} ({steps:,} steps = {images:,} images), wall time "
             f"{seconds / 60:.1f} min.",
             f"- Last stage: {info['steps']:,} steps of batch {config['train']['batch_size']} "
             f"({stage_kind(config['train'])}).",
             f"- Final validation negative ELBO per image (test split, no clamping): "
             f"{info['final_val_neg_elbo']:.1f}; training, mean of the last 500 steps: "
             f"{info['final_train_neg_elbo_last500']:.1f}.",
             f"- Hardware: {', '.join(dict.fromkeys(s['hardware'] for s in stages))}; torch "
             f"{torch.__version__}; wall times are upper bounds when a machine was shared.",
             "- Data: manifest checksums: train "
             f"`{config['data'].get('train_checksum', '?')}`, test "
             f"`{config['data'].get('test_checksum', '?')}`.", ""]
    lines += ["Stages, in order (each starts from the one before unless it says otherwise):", ""]
    for i, s in enumerate(stages, 1):
        start = s.get("start")
        branch = (f" (from {start['stage']} at step {start['step']:,})"
                  if start and i > 1 and (stages[i - 2]["name"] != start["stage"]
                                          or stages[i - 2]["steps"] != start["step"]) else "")
        lines.append(f"{i}. `{s['name']}`{branch}: {stage_line(s)}")
    lines.append("")
    if lineage.recipe:
        lines += [f"Recipe (`{lineage.recipe_file}`):", "", "```toml",
                  lineage.recipe.rstrip("\n"), "```", ""]
    if commands:
        lines += ["Commands, in order:", "", "```"] + commands + ["```", ""]
    lines += ["## Config", "", "```json", json.dumps({k: config[k] for k in
                                                     ("model", "train", "latent_layout")},
                                                    indent=2), "```", ""]
    if metrics is not None:
        rows = metrics[metrics.model == name] if name in set(metrics.model) else metrics
        lines += ["## Measured (held-out identities; `dcign-eval metrics`)", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {r.metric} | {r.value:.3f} |" for r in rows.itertuples()]
        lines += [""]
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("name", choices=("dcign", "vae"))
    p.add_argument("--metrics", type=Path, help="metrics.csv from `dcign-eval metrics`")
    p.add_argument("--command", action="append", default=[], help="a training command, in order")
    p.add_argument("--notes", type=Path, help="markdown appended to the card")
    p.add_argument("--pretrain", type=Path, action="append", default=[],
                   help="a run this one descends from by --init-from; repeat, earliest first")
    args = p.parse_args()
    args.run = resolve_run_dir(args.run)  # a recipe's output directory: its final stage
    load_checkpoint(args.run)  # refuse anything that is not a complete, valid run
    dest = SHIPPED / args.name
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES + tuple(f for f in LINEAGE_FILES if (args.run / f).is_file()):
        shutil.copy2(args.run / f, tmp / f)
    metrics = pd.read_csv(args.metrics) if args.metrics else None
    notes = args.notes.read_text() if args.notes else ""
    (tmp / "MODEL_CARD.md").write_text(card(args.name, args.run, metrics, args.command, notes,
                                            args.pretrain))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"shipped {args.run} as {dest}")


if __name__ == "__main__":
    main()
