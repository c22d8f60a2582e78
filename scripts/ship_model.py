#!/usr/bin/env python
"""Install a trained run as one of the package's shipped models, with its one-page model card.

Copies what analysis needs (weights, config, state, loss history, lineage) from a run directory
into dcign_eval/models/NAME/ and writes MODEL_CARD.md from the run's own records: what the model
is, how to rebuild it (its recipe and every stage of its lineage), its figures (from a
`dcign-eval metrics` CSV, plus any measured elsewhere) and its limits.

    python scripts/ship_model.py runs/dcign dcign --metrics out/metrics/metrics.csv \
        [--stages out/stages/metrics.csv --stages out/stages/reconstruction.csv] \
        [--variants out/variants/metrics.csv] \
        [--recipe recipes/dcign.toml] [--about about.md] [--figures rows.md] [--limits limits.md]

RUN is a run directory or a recipe's output directory (its final stage). ``--figures`` holds
extra rows of the figures table (``| measure | value | command |``), ``--about`` and ``--limits``
a paragraph or a list each. ``--stages`` (repeatable) holds figures of each stage's own final
weights, tidy CSVs whose ``model`` is the stage's name:

    dcign-eval metrics --model runs/dcign/pretrain --model runs/dcign/paper ... --metric none \
        --out out/stages
    python scripts/reconstruction_mse.py runs/dcign/pretrain runs/dcign/paper ... \
        --csv out/stages/reconstruction.csv

For a run that records no lineage, ``--pretrain RUN`` (repeated,
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
from trainer.config import TrainConfig

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
        if t["intrinsic_strength"]:
            settings.append(f"intrinsic block's strength {t['intrinsic_strength']:g}")
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


#: the figures every card shows, from a `dcign-eval metrics` CSV: rows of (label, the label for
#: a model without named latents, its parts), each part (metric, its name in the label); a row
#: shows the parts it has, their values joined by " / "
CARD_METRICS = (
    ("Spearman \\|rho\\|, {} neuron vs its angle", "Spearman \\|rho\\|, best single latent vs {}",
     (("spearman_azimuth", "azimuth"), ("spearman_elevation", "elevation"),
      ("spearman_light", "light"))),
    ("within/between-identity distance, intrinsic block (lower is better)", None,
     (("intrinsic_invariance", ""),)),
    ("{}", None, (("mig", "MIG"), ("dci_disentanglement", "DCI disentanglement"),
                  ("factor_vae", "FactorVAE"))),
)


def metric_rows(values: dict[str, float], named: bool) -> list[str]:
    """The card's rows of figures from `dcign-eval metrics` (``values``: metric -> value); a model
    without named latents (``named`` false) is measured by its best single latent per angle."""
    rows = []
    for label, unnamed_label, parts in CARD_METRICS:
        present = [(metric, part) for metric, part in parts if metric in values]
        if not present:
            continue
        label = (label if named else unnamed_label or label).format(
            " / ".join(part for _, part in present))
        figures = " / ".join(f"{values[metric]:.3f}" for metric, _ in present)
        rows.append(f"| {label} | {figures} | `dcign-eval metrics` |")
    return rows


#: the columns of the card's stage table: (metric, column header, format)
STAGE_METRICS = (
    ("spearman_azimuth", "azimuth", ".3f"),
    ("spearman_elevation", "elevation", ".3f"),
    ("spearman_light", "light", ".3f"),
    ("intrinsic_invariance", "intrinsic ratio", ".3f"),
    ("reconstruction_mse", "MSE", ".4f"),
)


def stage_table(stages: list[dict], figures: pd.DataFrame,
                variants: pd.DataFrame | None = None) -> list[str]:
    """Markdown: the figures of each stage's final weights, one row per stage that ``figures``
    (tidy rows of model, metric, value; the model named as the stage) has, in lineage order;
    then one row per model of ``variants`` (the model a free-text label: a variant of the recipe,
    trained as far as its label says), in the order they first appear."""
    def by_model(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        table: dict[str, dict[str, float]] = {}
        for model, metric, value in zip(frame.model, frame.metric, frame.value):
            table.setdefault(model, {})[metric] = value
        return table

    measured = by_model(figures)
    rows = [(f"`{s['name']}`", measured[s["name"]]) for s in stages if s["name"] in measured]
    if not rows:
        return []
    variant_rows = list(by_model(variants).items()) if variants is not None else []
    rows += variant_rows
    columns = [c for c in STAGE_METRICS if any(c[0] in row for _, row in rows)]
    if not columns:
        return []
    lines = ["## What each stage added", "",
             "Each stage's own final weights on held-out identities: the Spearman |rho| of the "
             "azimuth, elevation and light neurons (a baseline: its best single latents), the "
             "intrinsic block's within/between-identity distance ratio (lower is better) and the "
             "mean reconstruction MSE of 64 held-out faces. A row against the row above is what "
             "that stage added to the stages before it." + (
                 " The rows after the stages are variants of the recipe, each trained as far as "
                 "its label says: what leaving a stage out, or changing it, costs."
                 if variant_rows else ""), "",
             "| stage | " + " | ".join(c[1] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, row in rows:
        cells = [format(row[m], fmt) if m in row else "" for m, _, fmt in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


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
         pretrain: list[Path] | tuple = (), stage_figures: pd.DataFrame | None = None,
         variants: pd.DataFrame | None = None) -> str:
    """The one-page model card: what the model is, how to rebuild it, its figures, its limits.

    The stages come from the run's lineage (:func:`trainer.checkpoint.read_lineage`; for a run
    that records none, the ``pretrain`` runs stand for its earlier stages); ``recipe`` is the
    recipe that rebuilds it (default: the one that made it, else ``recipes/NAME.toml``);
    ``stage_figures`` the figures of each stage's final weights and ``variants`` those of variants
    of the recipe (:func:`stage_table`).
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
              "Each stage starts from the one before unless it says otherwise. Data checksums: "
              f"train `{config['data'].get('train_checksum', '?')}`, test "
              f"`{config['data'].get('test_checksum', '?')}`.", "",
              "| stage | what | steps | min |", "|---|---|---|---|"]
    for i, s in enumerate(stages):
        start = s.get("start")
        branch = (f", from `{start['stage']}` at step {start['step']:,}"
                  if start and i > 0 and (stages[i - 1]["name"] != start["stage"]
                                          or stages[i - 1]["steps"] != start["step"]) else "")
        lines.append(f"| `{s['name']}` | {stage_line(s, stages[i - 1] if i else None)}{branch} "
                     f"| {s['steps']:,} | {s['seconds'] / 60:.1f} |")
    lines += ["", "## Figures", "",
              "Held-out identities, never seen in training. Final validation negative ELBO per "
              f"image (test split, no clamping): {info['final_val_neg_elbo']:.1f}.", "",
              "| measure | value | command |", "|---|---|---|"]
    if metrics is not None:
        rows = metrics[metrics.model == name] if name in set(metrics.model) else metrics
        values = dict(zip(rows.metric, rows.value))
        lines += metric_rows(values, bool(named))
    lines += [row for row in figures.strip().splitlines() if row.strip()]
    if stage_figures is not None:
        lines += [""] + stage_table(stages, stage_figures, variants)
    if limits:
        lines += ["", "## Limits", "", limits.strip()]
    return "\n".join(lines) + "\n"


def read_tidy(paths: list[Path]) -> pd.DataFrame:
    """Rows of model, metric, value from each CSV; a CSV without those columns is an error."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DcignError(f"{path} is not a CSV ({str(e).splitlines()[0]})") from None
        missing = [c for c in ("model", "metric", "value") if c not in frame.columns]
        if missing:
            raise DcignError(f"{path} has no column {missing[0]!r}: expected the tidy rows of "
                             "`dcign-eval metrics` or `reconstruction_mse.py --csv`")
        frames.append(frame[["model", "metric", "value"]])
    return pd.concat(frames, ignore_index=True)


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
    p.add_argument("--stages", type=Path, action="append", default=[],
                   help="tidy CSV (model, metric, value) of each stage's final weights, the "
                        "model named as the stage; repeat for more measures")
    p.add_argument("--variants", type=Path, action="append", default=[],
                   help="tidy CSV of variants of the recipe, the model a row label (e.g. "
                        "'without settle, after decoder'); rows after the stages'; needs --stages")
    args = p.parse_args()
    if args.variants and not args.stages:
        raise DcignError("--variants needs --stages: its rows go under the stages' figures")
    for path in (args.metrics, args.about, args.figures, args.limits, *args.stages,
                 *args.variants):
        if path is not None and not path.is_file():
            raise DcignError(f"{path} is not a file")
    metrics = read_tidy([args.metrics]) if args.metrics else None
    stage_figures = read_tidy(args.stages) if args.stages else None
    variants = read_tidy(args.variants) if args.variants else None
    args.run = resolve_run_dir(args.run)  # a recipe's output directory: its final stage
    load_checkpoint(args.run)  # refuse anything that is not a complete, valid run
    dest = SHIPPED_DIR / args.name
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES + tuple(f for f in LINEAGE_FILES if (args.run / f).is_file()):
        shutil.copy2(args.run / f, tmp / f)
    text = {k: getattr(args, k).read_text() if getattr(args, k) else ""
            for k in ("about", "figures", "limits")}
    (tmp / "MODEL_CARD.md").write_text(card(args.name, args.run, metrics, recipe=args.recipe,
                                            pretrain=args.pretrain,
                                            stage_figures=stage_figures, variants=variants,
                                            **text))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"shipped {args.run} as {dest}")


if __name__ == "__main__":
    run_main(main)
