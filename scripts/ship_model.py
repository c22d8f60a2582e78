#!/usr/bin/env python
"""Install a trained run as one of the package's shipped models, with its one-page model card.

Copies what analysis needs (weights, config, state, loss history, lineage) from a run directory
into dcign_eval/models/NAME/ and writes MODEL_CARD.md from the run's own records: what the model
is, how to rebuild it (its recipe and every stage of its lineage), its figures (from a
`dcign-eval metrics` CSV, plus any measured elsewhere) and its limits.

    python scripts/ship_model.py runs/dcign dcign --metrics out/metrics/metrics.csv \
        [--recipe recipes/dcign.toml] [--about about.md] [--figures rows.md] [--limits limits.md]

RUN is a run directory or a recipe's output directory (its final stage). ``--figures`` holds
extra rows of the figures table (``| measure | value | command |``), ``--about`` and ``--limits``
a paragraph or a list each. For a run that records no lineage, ``--pretrain RUN`` (repeated,
earliest first) names its earlier stages.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from dcign_eval.models import SHIPPED
from trainer.checkpoint import (CONFIG, HISTORY, LINEAGE, LINEAGE_HISTORY, SHIPPED_DIR, STATE,
                                WEIGHTS, load_checkpoint, read_config, read_history, read_lineage,
                                read_state, resolve_run_dir)
from trainer.errors import ArgumentParser, DcignError, run_main
from trainer.model import describe_own_sizes
from trainer.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FILES = (WEIGHTS, CONFIG, STATE, HISTORY)
LINEAGE_FILES = (LINEAGE, LINEAGE_HISTORY)  # a run started from another (a recipe's stages)


def wall_seconds(history: pd.DataFrame) -> float:
    """Training wall time: the ``seconds`` clock restarts on every resume, so sum the segments."""
    s = history["seconds"].to_numpy()
    restarts = [i for i in range(1, len(s)) if s[i] < s[i - 1]]
    ends = [s[i - 1] for i in restarts] + [s[-1]]
    return float(sum(ends))


def summary(run: Path) -> dict:
    history = pd.DataFrame(read_history(run))
    val = history[history.split == "test"]
    train = history[history.split == "train"].tail(500)
    return {"steps": read_state(run)["step"],
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


def stage_line(record: dict, previous: dict | None = None) -> str:
    """One stage of a lineage, in words: mode and settings; the network's sizes when they are
    not the previous stage's."""
    t = TrainConfig.from_dict(record["train"]).to_dict()
    settings = [f"KL weight {t['kl_weight']:g}"]
    if t["mode"] != "vae":
        settings += [f"ratio {':'.join(f'{r:g}' for r in t['ratio'])}",
                     f"invariance strength {t['invariance_strength']:g}"
                     + (f" ({t['invariance_scale']})" if t["invariance_scale"] != "absolute"
                        else "")]
        if t["unclamped_share"]:
            settings.append(f"unclamped share {t['unclamped_share']:g}")
    if t["batches_per_step"] > 1:
        settings.append(f"{t['batches_per_step']} batches a step")
    model = record["model"]  # the network's shape: its model config, not the options' copy
    if previous is None or sizes(model) != sizes(previous["model"]):
        settings.insert(0, sizes(model))
    return f"{stage_kind(t)} ({', '.join(settings)})"


def sizes(model: dict) -> str:
    """'width 0.25, code maps 1' from a model config."""
    own = describe_own_sizes(model)
    return f"width {model['width']:g}" + (f", {own}" if own else "")


#: the figures every card shows, from a `dcign-eval metrics` CSV: (metric, what it measures)
CARD_METRICS = (
    ("spearman_azimuth", "Spearman \\|rho\\|, azimuth neuron vs azimuth"),
    ("spearman_elevation", "Spearman \\|rho\\|, elevation neuron vs elevation"),
    ("spearman_light", "Spearman \\|rho\\|, light neuron vs light"),
    ("intrinsic_invariance", "within/between-identity distance, intrinsic block (lower is better)"),
    ("mig", "MIG"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("factor_vae", "FactorVAE"),
)


def rebuild_stage(recipe: str, stage: str) -> str | None:
    """``stage`` when it is a stage of the recipe file ``recipe`` other than its last (the card
    then rebuilds it with ``--stage``); None otherwise, or when the file is not at hand."""
    from trainer.recipe import load_recipe

    path = ROOT / recipe
    if not path.is_file():
        return None
    parsed = load_recipe(path)
    names = [s.name for s in parsed.stages]
    return stage if stage in names and stage != parsed.final else None


def card(name: str, run: Path, metrics: pd.DataFrame | None, *, recipe: str | None = None,
         about: str = "", figures: str = "", limits: str = "",
         pretrain: list[Path] | tuple = ()) -> str:
    """The one-page model card: what the model is, how to rebuild it, its figures, its limits.

    The stages come from the run's lineage (:func:`trainer.checkpoint.read_lineage`; for a run
    that records none, the ``pretrain`` runs stand for its earlier stages); ``recipe`` is the
    recipe that rebuilds it (default: the one that made it, else ``recipes/NAME.toml``).
    """
    config = read_config(run)
    info = summary(run)
    lineage = read_lineage(run)
    stages = lineage.stages
    if len(stages) == 1 and pretrain:
        stages = [read_lineage(p).stages[-1] for p in pretrain] + stages
    steps, images = sum(s["steps"] for s in stages), sum(s["images"] for s in stages)
    seconds = sum(s["seconds"] for s in stages)
    model = config["model"]
    named = model.get("latent_names") or {}
    if named:
        layout = ", ".join(f"{k} {v}" for k, v in sorted(named.items(), key=lambda kv: kv[1]))
        kind = (f"A DC-IGN trained with monovariant batches: its latents are named ({layout}; "
                f"intrinsic {len(named)}..{model['latent_dim'] - 1})")
    elif name == "vae":
        kind = ("An entangled VAE, the DC-IGN's baseline. It has no named latents: its figure for "
                "a factor is its best single latent's (an optimistic choice for it), and for the "
                "intrinsic block its whole code's")
    else:
        kind = ("An entangled VAE with no named latents: its figure for a factor is its best "
                "single latent's, and for the intrinsic block its whole code's")
    megabytes = (run / WEIGHTS).stat().st_size / 1e6
    recipe = recipe or lineage.recipe_file or f"recipes/{name}.toml"
    hardware = ", ".join(dict.fromkeys(s["hardware"] for s in stages))
    lines = [f"# Shipped model `{name}`", "",
             f"{kind}. {model['image_size']}x{model['image_size']} grayscale faces, "
             f"{model['latent_dim']} latents, {sizes(model)}; {megabytes:.1f} MB of weights. "
             f"Load it with `dcign_eval.load_model(\"{name}\")`."]
    if about:
        lines += ["", about.strip()]
    plural = "s" if len(stages) > 1 else ""
    stage = rebuild_stage(recipe, stages[-1]["name"])
    command = (f"dcign-eval train --recipe {recipe} --stage {stage} --out runs/{name}" if stage
               else f"dcign-eval train --recipe {recipe} --out runs/{name}")
    lines += ["", "## How to rebuild it", "", "```", command, "```", ""]
    if stage:
        lines += [f"It is the recipe's stage `{stage}` (the run `runs/{name}/{stage}`), not its "
                  f"last.", ""]
    lines += [f"{len(stages)} stage{plural}, {steps:,} steps = {images:,} images, "
              f"{seconds / 60:.0f} min on {hardware} (upper bounds when the machine was shared). "
              "Each stage starts from the one before unless it says otherwise.", "",
              "| stage | what | steps | min |", "|---|---|---|---|"]
    for i, s in enumerate(stages):
        start = s.get("start")
        branch = (f", from `{start['stage']}` at step {start['step']:,}"
                  if start and i > 0 and (stages[i - 1]["name"] != start["stage"]
                                          or stages[i - 1]["steps"] != start["step"]) else "")
        lines.append(f"| `{s['name']}` | {stage_line(s, stages[i - 1] if i else None)}{branch} "
                     f"| {s['steps']:,} | {s['seconds'] / 60:.1f} |")
    lines += ["", "Data: train checksum "
              f"`{config['data'].get('train_checksum', '?')}`, test "
              f"`{config['data'].get('test_checksum', '?')}`.", "",
              "## Figures", "",
              "Held-out identities, never seen in training. Final validation negative ELBO per "
              f"image (test split, no clamping): {info['final_val_neg_elbo']:.1f}.", "",
              "| measure | value | command |", "|---|---|---|"]
    if metrics is not None:
        rows = metrics[metrics.model == name] if name in set(metrics.model) else metrics
        values = dict(zip(rows.metric, rows.value))
        for metric, label in CARD_METRICS:
            if metric in values:
                if not named and " vs " in label:  # a VAE's: its best single latent's
                    label = label.replace(label.split(", ")[-1].split(" vs ")[0],
                                          "best single latent")
                lines.append(f"| {label} | {values[metric]:.3f} | `dcign-eval metrics` |")
    lines += [row for row in figures.strip().splitlines() if row.strip()]
    if limits:
        lines += ["", "## Limits", "", limits.strip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = ArgumentParser(description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("name", choices=SHIPPED)
    p.add_argument("--metrics", type=Path, help="metrics.csv from `dcign-eval metrics`")
    p.add_argument("--recipe", help="the recipe that rebuilds it (default: the one that made "
                   "it, else recipes/NAME.toml)")
    p.add_argument("--about", type=Path, help="markdown: what the model is, beyond its shape")
    p.add_argument("--figures", type=Path, help="markdown rows of the figures table: "
                   "| measure | value | command |")
    p.add_argument("--limits", type=Path, help="markdown: what the model does not do")
    p.add_argument("--pretrain", type=Path, action="append", default=[],
                   help="a run this one descends from by --init-from; repeat, earliest first")
    args = p.parse_args()
    for path in (args.metrics, args.about, args.figures, args.limits):
        if path is not None and not path.is_file():
            raise DcignError(f"{path} is not a file")
    args.run = resolve_run_dir(args.run)  # a recipe's output directory: its final stage
    load_checkpoint(args.run)  # refuse anything that is not a complete, valid run
    dest = SHIPPED_DIR / args.name
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES + tuple(f for f in LINEAGE_FILES if (args.run / f).is_file()):
        shutil.copy2(args.run / f, tmp / f)
    metrics = pd.read_csv(args.metrics) if args.metrics else None
    text = {k: getattr(args, k).read_text() if getattr(args, k) else ""
            for k in ("about", "figures", "limits")}
    (tmp / "MODEL_CARD.md").write_text(card(args.name, args.run, metrics, recipe=args.recipe,
                                            pretrain=args.pretrain, **text))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"shipped {args.run} as {dest}")


if __name__ == "__main__":
    run_main(main)
