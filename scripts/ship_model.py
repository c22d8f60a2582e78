#!/usr/bin/env python
"""Install a trained run as one of the package's shipped models, with its model card.

Copies what analysis needs (weights, config, state, loss history) from a run directory into
dcign_eval/models/NAME/ and writes MODEL_CARD.md from the run's own records plus the figures of a
`dcign-eval metrics` CSV. The training commands and notes on what was tried are given by the
person shipping, since only they know the run's full lineage (e.g. pretraining).

    python scripts/ship_model.py RUN NAME --metrics out/metrics/metrics.csv \
        --command "dcign-eval train ..." [--command ...] [--notes notes.md] [--pretrain RUN ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import pandas as pd
import torch

from trainer.checkpoint import load_checkpoint
from trainer.model import describe_own_sizes

SHIPPED = Path(__file__).resolve().parents[1] / "dcign_eval" / "models"
FILES = ("model.safetensors", "config.json", "state.json", "history.csv")


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
    """'monovariant mode', 'vae mode, decoder alone, encoder frozen', ... from a train config
    (plus how the decoder was fed when not the ELBO's sampled codes)."""
    kind = f"{train['mode']} mode"
    if train.get("freeze_encoder"):
        kind += ", decoder alone, encoder frozen"
    if train.get("lr_schedule", "constant") != "constant":
        kind += f", {train['lr_schedule']} learning rate"
    if train.get("decoder_noise", 1.0) != 1.0:
        kind += (", decoded from the means" if train["decoder_noise"] == 0 else
                 f", sampling noise x{train['decoder_noise']:g}")
    return kind


def card(name: str, run: Path, metrics: pd.DataFrame | None, commands: list[str], notes: str,
         pretrain: list[Path]) -> str:
    config = json.loads((run / "config.json").read_text())
    info = summary(run)
    lines = [f"# Shipped model `{name}`", "",
             f"Load it with `dcign_eval.load_model(\"{name}\")`.", "",
             "## Training", "",
             f"- Steps: {info['steps']:,} of batch {config['train']['batch_size']} "
             f"({stage_kind(config['train'])}); wall time {info['wall_s'] / 60:.1f} min.",
             f"- Final validation negative ELBO per image (test split, no clamping): "
             f"{info['final_val_neg_elbo']:.1f}; training, mean of the last 500 steps: "
             f"{info['final_train_neg_elbo_last500']:.1f}.",
             f"- Hardware: {platform.machine()} CPU, {__import__('os').cpu_count()} cores, no GPU; "
             f"torch {torch.__version__}; runs shared the two cores with other work, so wall "
             f"times are upper bounds.",
             "- Data: `dcign-eval render monovariant --out data/monovariant` (the paper's 3000 "
             "train / 350 test batches per type, 64x64); manifest checksums: train "
             f"`{config['data'].get('train_checksum', '?')}`, test "
             f"`{config['data'].get('test_checksum', '?')}`.", ""]
    if pretrain:
        lines += ["- Initialised (`--init-from`), in order, from:"]
        total = info["steps"]
        for earlier in pretrain:
            p = summary(earlier)
            t = json.loads((earlier / "config.json").read_text())["train"]
            extra = "" if t["mode"] == "vae" else (
                f", ratio {':'.join(f'{r:g}' for r in t['ratio'])}, invariance strength "
                f"{t['invariance_strength']:g}"
                + (f" ({t['invariance_scale']})"
                   if t.get("invariance_scale", "absolute") != "absolute" else "")
                + (f", unclamped share {t['unclamped_share']:g}"
                   if t.get("unclamped_share") else ""))
            own = describe_own_sizes(t)
            code = f", {own}" if own else ""
            lines += [f"  - a run in {stage_kind(t)} (width {t['width']:g}{code}, "
                      f"beta {t['beta']:g}{extra}) of {p['steps']:,} steps "
                      f"({p['wall_s'] / 60:.1f} min) on the same data"]
            total += p["steps"]
        images = total * config["train"]["batch_size"]
        lines += [f"- Data budget, all stages: {total:,} steps = {images:,} images.", ""]
    lines += ["Commands, in order:", "", "```"] + commands + ["```", "",
              "## Config", "", "```json", json.dumps({k: config[k] for k in
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
    load_checkpoint(args.run)  # refuse anything that is not a complete, valid run
    dest = SHIPPED / args.name
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES:
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
