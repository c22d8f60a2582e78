"""Section 1, model cards: each model's config, training curve and data set (side by side), and
the monovariant batches the subject was trained on."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dcign_eval.intervals import format_interval
from dcign_eval.metrics.suite import seed_intervals
from dcign_eval.models import LoadedModel
from dcign_eval.protocol import Model
from dcign_eval.report.page import Section, figure_link, html_table, read_json, table_link
from trainer.checkpoint import SHIPPED_DIR, read_history, read_lineage
from trainer.errors import CheckpointError, DatasetError, DcignError


def _lineage(run_dir):
    """The run's lineage (:func:`trainer.checkpoint.read_lineage`), or None when unreadable."""
    with contextlib.suppress(DcignError, OSError, ValueError, KeyError, TypeError):
        return read_lineage(run_dir, verify=False)
    return None


def _read_history(run_dir) -> pd.DataFrame | None:
    """The run's history across its whole lineage: every stage it descends from, steps counted
    from the first stage's start, with a ``stage`` column."""
    lineage = _lineage(run_dir)
    if lineage is not None and lineage.history:
        return pd.DataFrame(lineage.history)
    with contextlib.suppress(CheckpointError, OSError, ValueError):
        frame = pd.DataFrame(read_history(run_dir))
        if {"step", "split", "neg_elbo"} <= set(frame.columns):
            return frame
    return None


def _kind(config: dict) -> str:
    train = config.get("train", {})
    names = config.get("model", {}).get("latent_names", {})
    if train.get("mode") == "monovariant" or names:
        return "DC-IGN (monovariant training)"
    beta = float(train.get("kl_weight", train.get("beta", 1.0)))
    return "baseline: VAE" if beta == 1 else f"baseline: beta-VAE (beta {beta:g})"


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def outside_card(m: Model) -> dict[str, str]:
    """The card of a model that is not one of our runs: what the protocol tells of it."""
    named = ", ".join(f"{k} = z{v}" for k, v in m.latent_names.items())
    layout = f"{named or 'none named'}; intrinsic block: {len(m.intrinsic)} latents"
    return {"model": m.source, "role": "outside model", "kind": type(m.implementation).__name__,
            "image size": f"{m.image_size} px", "latents": str(m.latent_dim),
            "latent layout": layout,
            "decodes": "yes" if m.has_decode else "no (no reconstructions or traversals)",
            "fingerprint (its codes of a fixed probe batch)": m.fingerprint[:16]}


def tail_mean(values: pd.Series) -> str:
    """The mean of the last training batches' losses ± half its Student-t 95% interval
    (:func:`dcign_eval.metrics.suite.seed_intervals`, the batches as draws), and how many."""
    row = seed_intervals(pd.DataFrame({"model": "", "metric": "neg_elbo",
                                       "value": values.to_numpy(np.float64),
                                       "seconds": 0.0})).iloc[0]
    n = len(values)
    if n < 2:
        return f"{format_interval(row['value'], digits=1)} (one training batch)"
    return (f"{format_interval(row['value'], row['low'], row['high'], digits=1)} (mean of the "
            f"last {n} training batches)")


def model_card(m: Model) -> dict[str, str]:
    """One model's card: field -> value, from its config.json, state.json and history.csv (a
    model that is not one of our runs: :func:`outside_card`)."""
    if not isinstance(m.implementation, LoadedModel):
        return outside_card(m)
    config = getattr(m, "config", {}) or {}
    train, model_cfg = config.get("train", {}), config.get("model", {})
    path = getattr(m, "path", None)
    state = getattr(m, "state", None) or {}
    history = _read_history(path) if path else None
    n_params = sum(int(p.numel()) for p in m.model.parameters()) if hasattr(m, "model") else None
    layout = config.get("latent_layout") or {}
    named = ", ".join(f"{k} = z{v}" for k, v in layout.items()
                      if k not in ("intrinsic", "pretrained_latents"))
    if "intrinsic" in layout:
        named += f"; intrinsic = z{layout['intrinsic'][0]}..z{layout['intrinsic'][1]}"
    from trainer.model import describe_own_sizes  # torch, only once a model is loaded

    own = describe_own_sizes(model_cfg)
    card = {
        "model": m.source,
        "role": "DC-IGN" if m.latent_names else "entangled baseline",
        "kind": _kind(config),
        "image size": f"{model_cfg.get('image_size', m.image_size)} px",
        "latents": str(model_cfg.get("latent_dim", "")),
        "latent layout": named or "none named (entangled)",
        "width": f"{model_cfg.get('width', '')}" + (f" ({own})" if own else ""),
        "parameters": f"{n_params:,}" if n_params is not None else "unknown",
        "steps trained": f"{state.get('step', '?')} of {train.get('steps', '?')} "
                         f"({state.get('status', 'unknown')})",
        "batch size": str(train.get("batch_size", "")),
        "learning rate": f"{train.get('lr', '')}" + (
            f" ({train['lr_schedule']}, to 0)"
            if train.get("lr_schedule", "constant") != "constant" else ""),
        "KL weight (a beta-VAE's beta)": f"{train.get('kl_weight', train.get('beta', ''))}",
        "seed": str(train.get("seed", "")),
    }
    if train.get("mode") == "monovariant":
        ratio = train.get("ratio") or []
        card["batch-type ratio (az : el : light : intrinsic)"] = " : ".join(f"{r:g}"
                                                                             for r in ratio)
        card["invariance strength"] = f"{train.get('invariance_strength', '')}"
        if train.get("invariance_scale", "absolute") != "absolute":
            card["invariance strength"] += f" ({train['invariance_scale']})"
        if train.get("unclamped_share"):
            card["unclamped share (random batches, nothing clamped)"] = \
                f"{train['unclamped_share']:g}"
    if train.get("freeze_encoder"):
        batches = ("random batches, each face decoded from its own code"
                   if train.get("mode") == "vae" else "monovariant batches, clamped codes")
        card["last stage trained"] = f"the decoder alone, encoder frozen ({batches})"
    if train.get("init_from"):
        card["initialised from"] = str(train["init_from"])
    if layout.get("pretrained_latents"):  # not in the paper: which pretrained latent became which
        card["named latents from the pretraining"] = ", ".join(
            f"{k} = its z{v}" for k, v in layout["pretrained_latents"].items()) + \
            f" (by {train.get('named_latents', '?')}; renumbered, the same function)"
    lineage = _lineage(path) if path else None
    if lineage is not None and len(lineage.stages) > 1:
        card["stages (the last one's settings above)"] = " → ".join(
            f"{st['name']} ({st['mode']}, {st['steps']:,})" for st in lineage.stages)
        card["steps trained, all stages"] = (f"{lineage.steps:,} ({lineage.images:,} images, "
                                             f"{len(lineage.stages)} stages)")
    if history is not None and len(history):
        tr = history[history["split"] == "train"]
        te = history[history["split"] == "test"]
        if len(tr):
            tail = tr.tail(max(1, len(tr) // 100))
            card["final train neg-ELBO (per image)"] = tail_mean(tail["neg_elbo"])
        if len(te):
            card["final test neg-ELBO (per image)"] = (f"{te['neg_elbo'].iloc[-1]:.1f} "
                                                        "(one evaluation)")
        card["training time" + (", all stages" if lineage is not None
                                and len(lineage.stages) > 1 else "")] = _duration(
            float(history["seconds"].max()))
    card["weights sha256"] = m.fingerprint[:16]
    if state.get("torch_version"):
        card["saved by torch"] = str(state["torch_version"])
    return card


def model_cards(models: Sequence[Model]) -> pd.DataFrame:
    """Model cards side by side: one row per field, one column per model (its name)."""
    cards = {m.name: model_card(m) for m in models}
    fields_ = list(dict.fromkeys(k for card in cards.values() for k in card))
    return pd.DataFrame({label: [card.get(k, "") for k in fields_] for label, card in
                         cards.items()}, index=pd.Index(fields_, name="field"))


def training_curves(models: Sequence[Model], points: int = 400) -> pd.DataFrame:
    """Negative ELBO per image against step, tidy: model, split, stage, step, neg_elbo.

    Training rows (one per step, noisy) are averaged in ``points`` bins of steps; validation
    rows are kept as they are.
    """
    rows = []
    for m in models:
        path = getattr(m, "path", None)
        history = _read_history(path) if path else None
        if history is None or history.empty:
            continue
        if "stage" not in history.columns:
            history = history.assign(stage="")
        tr = history[history["split"] == "train"]
        if len(tr):  # bins never straddle two stages
            bins = np.minimum((tr["step"].to_numpy() - 1) * points // max(int(tr["step"].max()), 1),
                              points - 1)
            binned = tr.groupby([tr["stage"].to_numpy(), bins], sort=False).agg(
                step=("step", "mean"), neg_elbo=("neg_elbo", "mean"))
            binned["stage"] = binned.index.get_level_values(0)
            rows.append(binned.reset_index(drop=True).assign(model=m.name, split="train"))
        te = history[history["split"] == "test"]
        if len(te):
            rows.append(te[["step", "neg_elbo", "stage"]].assign(model=m.name, split="test"))
    columns = ["model", "split", "stage", "step", "neg_elbo"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows, ignore_index=True)[columns]


def stage_boundaries(models: Sequence[Model]) -> pd.DataFrame:
    """Each model's training stages on the step axis of :func:`training_curves`: model, stage,
    first_step, last_step (one row for a model trained in one stage)."""
    rows = []
    for m in models:
        path = getattr(m, "path", None)
        lineage = _lineage(path) if path else None
        if lineage is None:
            continue
        rows += [{"model": m.name, "stage": name, "first_step": first, "last_step": last}
                 for name, first, last in lineage.boundaries()]
    return pd.DataFrame(rows, columns=["model", "stage", "first_step", "last_step"])


def plot_training_curves(frame: pd.DataFrame, boundaries: pd.DataFrame | None = None):
    """Training curves (:func:`training_curves`): a line per model across all its stages,
    training solid (binned means), validation dashed with markers; log scale. ``boundaries``
    (:func:`stage_boundaries`): a dotted line where each later stage starts, named at the top."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (name, part) in enumerate(frame.groupby("model", sort=False)):
        color = f"C{i % 10}"
        stages = (boundaries[boundaries["model"] == name] if boundaries is not None
                  else pd.DataFrame())
        for row in stages.iloc[1:].itertuples():
            ax.axvline(row.first_step - 0.5, color=color, ls=":", lw=0.8, alpha=0.7)
            ax.annotate(row.stage, (row.first_step, 1), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=6, color=color)
        tr, te = part[part["split"] == "train"], part[part["split"] == "test"]
        ax.plot(tr["step"], tr["neg_elbo"], "-", color=color, lw=1.2, label=f"{name}: training")
        if len(te):
            ax.plot(te["step"], te["neg_elbo"], "--o", color=color, ms=3, lw=1,
                    label=f"{name}: held-out test batches")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("negative ELBO per image (nats)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def dataset_card(models: Sequence[Model]) -> pd.DataFrame:
    """The training data of each model: field -> value per model, from the run's config and,
    when the data set is on this machine, its manifest."""
    cards = {}
    for m in models:
        if not isinstance(m.implementation, LoadedModel):
            continue  # an outside model: its training data is its own business
        data = (getattr(m, "config", {}) or {}).get("data", {})
        path = data.get("path", "")
        card = {"path": str(path) or "unknown",
                "image size": f"{data.get('image_size', '')} px",
                "training images": f"{data.get('train_images', 0):,}",
                "test images (held-out identities)": f"{data.get('test_images', 0):,}",
                "training set sha256": str(data.get("train_checksum", ""))[:16]}
        manifest = read_json(Path(path) / "train" / "manifest.json") if path else {}
        params = manifest.get("params") or {}
        if params:
            batches = params.get("batches_per_type", {})
            ids = params.get("identities", {})
            card["batches per type (train / test)"] = (f"{batches.get('train', '?')} / "
                                                       f"{batches.get('test', '?')}")
            card["batch types"] = ", ".join(params.get("batch_types", []))
            card["images per batch"] = str(params.get("batch_size", ""))
            card["identities (train / held-out test)"] = (f"{ids.get('train', '?')} / "
                                                          f"{ids.get('test', '?')}")
            card["angle grid step"] = f"{params.get('step', '')} degrees"
            card["seed"] = str(manifest.get("seed", ""))
            card["generator"] = str(manifest.get("generator_version", ""))
            card["on this machine"] = _data_match(Path(path), data)
        else:
            card["on this machine"] = "no (the run's config is all the page knows)"
        cards[m.name] = card
    fields_ = list(dict.fromkeys(k for card in cards.values() for k in card))
    return pd.DataFrame({label: [card.get(k, "") for k in fields_] for label, card in
                         cards.items()}, index=pd.Index(fields_, name="field"))


def _data_match(path: Path, data: dict) -> str:
    """Whether the data set at ``path`` is the one the run was trained on (manifest sha256)."""
    from trainer.io import sha256_file

    try:
        same = [sha256_file(path / split / "manifest.json") == data.get(f"{split}_checksum")
                for split in ("train", "test")]
    except OSError:
        return "partly (a split is missing)"
    return "yes, the run's data (manifest checksums match)" if all(same) else \
        "a different data set at this path (manifest checksums differ from the run's)"


@dataclass
class MonovariantExamples:
    """A few training images of one batch of each type: ``factors`` (batch_type, identity,
    azimuth, elevation, light; ``n`` rows per type) and ``images`` (rows, S, S) uint8.
    ``source``: where they came from."""

    factors: pd.DataFrame
    images: np.ndarray
    source: str


def monovariant_examples(data_path, n: int = 10, size: int = 64) -> MonovariantExamples:
    """The first batch of each type of a monovariant training set (its first ``n`` images).

    When the set is not on this machine, batches drawn the same way (a one-batch-per-type spec)
    are rendered instead, and ``source`` says so.
    """
    from trainer.faces import BATCH_TYPES, MonovariantSpec, load_dataset, render_faces
    from trainer.faces.world import monovariant_factors

    with contextlib.suppress(DatasetError, DcignError, OSError, ValueError, KeyError):
        ds = load_dataset(Path(data_path) / "train", verify=False, expect_kind="monovariant")
        rows = []
        for btype in BATCH_TYPES:
            first = ds.factors.index[ds.factors["batch_type"] == btype]
            if len(first):
                batch = ds.factors.loc[first[0], "batch"]
                rows.extend(ds.factors.index[ds.factors["batch"] == batch][:n])
        factors = ds.factors.loc[rows].reset_index(drop=True)
        return MonovariantExamples(factors, np.asarray(ds.images[rows]),
                                   f"the training set at {data_path}")
    spec = MonovariantSpec(batches_per_type={"train": 1, "test": 1})
    factors = monovariant_factors(spec, "train")
    factors = factors.groupby("batch", sort=False).head(n).reset_index(drop=True)
    images = render_faces(factors["identity"].to_numpy(), factors["azimuth"].to_numpy(),
                          factors["elevation"].to_numpy(), factors["light"].to_numpy(), size=size)
    return MonovariantExamples(factors, images, "rendered for this page (the training set is not "
                                                "on this machine): batches drawn as it was")


def plot_monovariant_examples(examples: MonovariantExamples):
    """One row per batch type: the batch's images, the varied factor's value under each."""
    from matplotlib.figure import Figure

    from trainer.faces import VARIED

    types = list(dict.fromkeys(examples.factors["batch_type"]))
    n = int(examples.factors.groupby("batch_type").size().max())
    fig = Figure(figsize=(0.9 * n + 1.4, 1.05 * len(types) + 0.3), layout="constrained")
    axes = fig.subplots(len(types), n, squeeze=False)
    for r, btype in enumerate(types):
        rows = np.flatnonzero((examples.factors["batch_type"] == btype).to_numpy())
        varied = VARIED.get(btype, "")
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c >= len(rows):
                continue
            ax.imshow(examples.images[rows[c]], cmap="gray", vmin=0, vmax=255)
            value = examples.factors.iloc[rows[c]][varied] if varied else ""
            ax.set_xlabel(f"id {int(value) % 1_000_000}" if varied == "identity"
                          else f"{float(value):+.0f}°", fontsize=7, labelpad=1)
        axes[r, 0].set_ylabel(btype, fontsize=8)
    return fig


def training_notes(models: Sequence[Model]) -> dict | None:
    """How our models were trained, for the top of the page: each one's own steps and what it
    started from (a shipped model by name, with the stages behind it), and the deviations from
    the paper that the subject's recipe declares (its ``deviations``). None when the page's
    subject is not one of our runs."""
    import tomllib

    from trainer.recipe import recipe_deviations

    if not isinstance(models[0].implementation, LoadedModel):
        return None
    starts = []
    for m in models:
        if not isinstance(m.implementation, LoadedModel):
            continue
        train = m.config.get("train", {})
        line = f"{m.name}: {int(m.state.get('step', 0)):,} {train.get('mode', '?')} steps"
        lineage = _lineage(m.path)
        if train.get("init_from") and lineage is not None and len(lineage.stages) > 1:
            origin = Path(train["init_from"])
            shipped = origin.parent.resolve() == SHIPPED_DIR.resolve()
            before = " then ".join(f"{s['steps']:,} {s['mode']} steps"
                                   for s in lineage.stages[:-1])
            line += (f" from the shipped model {origin.name}" if shipped
                     else f" from {origin.name}") + f" ({before})"
        starts.append(line)
    deviations, recipe = (), None
    lineage = _lineage(models[0].path)
    if lineage is not None and lineage.recipe:
        recipe = lineage.recipe_file
        with contextlib.suppress(tomllib.TOMLDecodeError, DcignError):
            deviations = recipe_deviations(tomllib.loads(lineage.recipe))
    return {"starts": starts, "recipe": recipe, "deviations": list(deviations)}


def section(models: Sequence[Model], size: int) -> Section:
    """Cards, training curves, data sets and monovariant examples of ``models`` (the first is
    the page's subject; its training data gives the examples, at ``size`` pixels)."""
    cards = model_cards(models)
    curves = training_curves(models)
    data = dataset_card(models)
    data_path = (getattr(models[0], "config", {}) or {}).get("data", {}).get("path", "")
    examples = monovariant_examples(data_path, n=10, size=size)
    figures = {"monovariant_batches": plot_monovariant_examples(examples)}
    tables = {"model_cards": cards, "data_sets": data}
    if len(curves):
        figures["training_curves"] = plot_training_curves(curves, stage_boundaries(models))
        tables["training_curves"] = curves
    context = {"cards": html_table(cards, index=True), "cards_csv": table_link("model_cards"),
               "training": training_notes(models),
               "curve": figure_link("training_curves") if len(curves) else None,
               "data": html_table(data, index=True),
               "examples": {"src": figure_link("monovariant_batches"),
                            "source": examples.source}}
    return Section(context, tables, figures, indexed=("model_cards", "data_sets"))
