"""The ``dcign-eval`` command line. This module only wires: parse, call the library, print.

Every command's docstring is its --help. Bad input raises :class:`trainer.errors.DcignError`; it is
printed as one ``error: ...`` line and the process exits with status 2.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from trainer.errors import DcignError
from trainer.io import check_writable_dir

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate DC-IGN models on a rendered face world.")
render_app = typer.Typer(no_args_is_help=True, help="Render face-world data sets.")
app.add_typer(render_app, name="render")


# The options with a fixed set of values are Enums, so --help lists the choices and Typer refuses
# any other value (exit status 2). The values are the library's own (tests/test_cli.py checks
# them against it), written out here so that --help does not import the analyses.
def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)


Split = _choices("Split", ("train", "test"))  # training or held-out identities
Profile = _choices("Profile", ("quick", "full", "tiny"))  # dcign_eval.pipeline.PROFILES
Classifier = _choices("Classifier", ("1nn-cosine", "logistic", "linear-svc"))  # CLASSIFIERS
Metric = _choices("Metric", ("beta_vae", "factor_vae", "mig", "mig_continuous", "sap", "sap_continuous",
                             "dci_disentanglement", "dci_completeness", "dci_informativeness",
                             "modularity", "explicitness", "irs", "gaussian_total_correlation",
                             "mutual_info", "none"))  # dcign_eval.metrics.METRIC_KEYS and 'none'


def _parse_fixed(items: list[str]) -> dict[str, float]:
    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise DcignError(f"--fix takes FACTOR=DEGREES (e.g. light=0), got {item!r}")
    return fixed


@render_app.command("grid")
def render_grid_cmd(
    out: Path = typer.Option(Path("data/grid"), "--out", help="Directory of the data set."),
    identities: int = typer.Option(10, min=1, help="Number of identities."),
    split: Split = typer.Option("test", help="Identities of the training or held-out split."),
    azimuth_step: float = typer.Option(10.0, help="Azimuth grid step, degrees (range -90..90)."),
    elevation_step: float = typer.Option(10.0, help="Elevation grid step, degrees (-30..30)."),
    light_step: float = typer.Option(20.0, help="Light azimuth grid step, degrees (-80..80)."),
    fix: list[str] = typer.Option([], help="Pin a factor to one value, e.g. --fix light=0."),
    size: int = typer.Option(64, help="Image size in pixels (64 default, 150 the paper's)."),
    force: bool = typer.Option(False, help="Replace an existing set made with other parameters."),
    preview: Optional[Path] = typer.Option(None, help="Also write a contact sheet PNG here."),
) -> None:
    """Render every combination identity x azimuth x elevation x light (for evaluation).

    An existing complete set with the same parameters is reused.
    """
    import numpy as np

    from dcign_eval.console import progress_bar
    from trainer.faces import GridSpec, render_grid

    spec = GridSpec.make(split.value, identities, azimuth_step, elevation_step, light_step,
                         _parse_fixed(fix))
    total = int(np.prod(spec.factor_sizes))
    _check_size(size)
    with progress_bar(total, "rendering grid") as advance:
        ds = render_grid(out, spec, size=size, force=force, progress=advance)
    sizes = " x ".join(f"{n} {k}" for n, k in zip(spec.factor_sizes, ds.factors.columns))
    typer.echo(f"{ds.path}: {len(ds)} images ({sizes}), {size}x{size}")
    if preview:
        _preview(preview, spec.identities[:6], size)


@render_app.command("monovariant")
def render_monovariant_cmd(
    out: Path = typer.Option(Path("data/monovariant"), "--out", help="Directory (train/ and test/ inside)."),
    train_batches: int = typer.Option(3000, min=1, help="Training batches per batch type (paper: 3000)."),
    test_batches: int = typer.Option(350, min=1, help="Test batches per batch type (paper: 350)."),
    train_identities: int = typer.Option(500, min=20, help="Training identities."),
    test_identities: int = typer.Option(100, min=20, help="Held-out identities, disjoint from training."),
    step: float = typer.Option(2.5, help="Grid step of the angles, degrees."),
    seed: int = typer.Option(0, help="Seed of the batch draws."),
    size: int = typer.Option(64, help="Image size in pixels (64 default, 150 the paper's)."),
    force: bool = typer.Option(False, help="Replace an existing set made with other parameters."),
    preview: Optional[Path] = typer.Option(None, help="Also write a contact sheet PNG here."),
) -> None:
    """Render monovariant batches of 20 faces (AZ_VARIED, EL_VARIED, LIGHT_VARIED, SHAPE_VARIED).

    In each batch one factor varies and the others are fixed, as in the paper's training data.
    An existing complete set with the same parameters is reused.
    """
    from dcign_eval.console import progress_bar
    from trainer.faces import BATCH_SIZE, BATCH_TYPES, MonovariantSpec, render_monovariant

    _check_size(size)
    spec = MonovariantSpec(batches_per_type={"train": train_batches, "test": test_batches},
                           identities={"train": train_identities, "test": test_identities},
                           step=step, seed=seed)
    total = (train_batches + test_batches) * len(BATCH_TYPES) * BATCH_SIZE
    with progress_bar(total, "rendering monovariant batches") as advance:
        sets = render_monovariant(out, spec, size=size, force=force, progress=advance)
    for split, ds in sets.items():
        typer.echo(f"{ds.path}: {len(ds)} images in {len(ds) // BATCH_SIZE} batches, {size}x{size}")
    if preview:
        _preview(preview, sets["train"].factors["identity"].unique()[:6], size)


def _check_size(size: int) -> None:
    if not 8 <= size <= 1024:
        raise DcignError(f"--size must be in [8, 1024] pixels, got {size}")


def _preview(path: Path, identities, size: int) -> None:
    from dcign_eval.console import write_png
    from trainer.faces import preview_sheet

    write_png(path, preview_sheet(identities, size=size))
    typer.echo(f"preview: {path} (rows: identities; columns: azimuth, elevation, light sweeps)")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []}, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train a DC-IGN (monovariant) or the entangled VAE baseline.

    Takes the same options as `python -m trainer` (see `dcign-eval train --help`); for several
    GPUs run `torchrun --nproc_per_node N -m trainer` with the same options.
    """
    from trainer.__main__ import main as train_main

    raise typer.Exit(train_main(list(ctx.args), prog="dcign-eval train"))


class DciEstimator(str, Enum):
    """DCI's importance estimators (dcign_eval.metrics.dci.DCI_MODES; named here so that --help
    does not import scikit-learn)."""

    gbt_hist = "gbt-hist"
    gbt = "gbt"
    lightgbm = "lightgbm"
    extra_trees = "extra-trees"
    lasso = "lasso"


MODEL_HELP = ("A run directory, a shipped model (dcign, vae, vae-pretrain), "
              "path/to/file.py:factory or package.module:factory")


@app.command("metrics")
def metrics_cmd(
    model: list[str] = typer.Option(["dcign", "vae"], "--model", help=MODEL_HELP + "; repeat for "
                                    "several."),
    out: Path = typer.Option(Path("out/metrics"), "--out", help="Directory for metrics.csv/json."),
    identities: int = typer.Option(10, min=2, help="Held-out identities in the evaluation grid."),
    grid_dir: Path = typer.Option(Path("data"), "--grid-dir", help="Where the evaluation grid is "
                                  "rendered once and reused."),
    dci: DciEstimator = typer.Option(DciEstimator.gbt_hist, help="DCI importances: "
                                     "scikit-learn's gradient boosting on LightGBM's histogram "
                                     "trees (gbt-hist, default: within 0.02 of gbt, 20x+ "
                                     "faster), disentanglement_lib's scikit-learn gradient-boosted "
                                     "trees (gbt, faithful, slow), LightGBM's own boosting, extra "
                                     "trees, or Lasso weights (the DCI paper's original)."),
    num_train: Optional[int] = typer.Option(None, min=10, help="Training points per metric "
                                            "(default: disentanglement_lib's 10,000; the "
                                            "continuous MIG's own default is 4,000)."),
    num_eval: Optional[int] = typer.Option(None, min=10, help="Evaluation points per metric "
                                           "(default: 5,000)."),
    seed: int = typer.Option(0, min=0, help="Seed of every random choice."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds of the metrics' sampling (seed, "
                                        "seed + 1, ...): each value is their mean, with a 95% "
                                        "interval (from 2 seeds on). Default 5; 1 with --quick."),
    quick: bool = typer.Option(False, "--quick", help="The report's quick settings: one seed "
                               "and its smaller samples (--seeds, --num-train and --num-eval "
                               "still override)."),
    metric: list[Metric] = typer.Option([], "--metric", help="Only these disentanglement metrics "
                                     "(e.g. --metric mig); 'none' for the paper's measurements "
                                     "alone. Default: all."),
) -> None:
    """Disentanglement metrics and the paper's measurements of one or more models.

    Computes BetaVAE, FactorVAE, MIG, SAP, DCI, modularity/explicitness, IRS and the unsupervised
    scores as disentanglement_lib defines them, plus the paper's: Spearman |rho| and monotone-fit
    R^2 of each named neuron against its factor (a baseline's best single latent stands in) and
    the intrinsic block's within/between-identity distance ratio. Everything is measured on a
    factor grid of identities never seen in training, rendered at each model's image size. Each
    value is the mean over --seeds draws of the metrics' samples, with a Student-t 95% interval.
    Writes a tidy metrics.csv and metrics.json (model, metric, value, low, high, seeds, seconds,
    settings, versions) and prints a table, and which latent stood for each angle (the model's
    named latent, or its best single latent).
    """
    from dcign_eval.console import progress_bar
    from dcign_eval.metrics import DCI_MODE_LABELS, write_metrics
    from dcign_eval.metrics.suite import (evaluation_worlds, latents_used, measure_models_seeds,
                                          wide_table)
    from dcign_eval.protocol import load_models

    check_writable_dir(out)  # before the work, not after it
    check_writable_dir(grid_dir, "--grid-dir")
    from dcign_eval.report.settings import metrics_preset

    models = load_models(model)
    worlds = evaluation_worlds(models, grid_dir, identities, progress=progress_bar)
    preset = metrics_preset("quick" if quick else "full")
    overrides = {k: v for k, v in (("num_train", num_train or preset["num_train"]),
                                   ("num_eval", num_eval or preset["num_eval"])) if v}
    selected = None if not metric else [m.value for m in metric if m.value != "none"]
    df = measure_models_seeds(models, worlds, seed=seed, seeds=seeds or preset["seeds"],
                              metrics=selected, dci_mode=dci.value, **overrides)
    csv_path, json_path = write_metrics(df, out)
    typer.echo(wide_table(df).to_string(float_format=lambda v: f"{v:.3f}"))
    typer.echo("latents standing for each angle:")
    for name, part in latents_used(models, df).groupby("model", sort=False):
        typer.echo(f"  {name}: " + ", ".join(f"{r.factor} = z{r.latent} ({r.neuron})"
                                             for r in part.itertuples()))
    typer.echo(f"DCI estimator: {DCI_MODE_LABELS[dci.value]}")
    typer.echo(f"wrote {csv_path} and {json_path}")


@app.command("diagnose")
def diagnose_cmd(
    model: list[str] = typer.Option(["dcign"], "--model", help=MODEL_HELP + "; repeat for "
                                    "several (e.g. --model dcign --model vae). Models without "
                                    "named latents get the code budget only."),
    out: Path = typer.Option(Path("out/diagnose"), "--out", help="Directory for "
                             "diagnostics.csv and code_budget.csv."),
    identities: int = typer.Option(10, min=2, help="Held-out identities in the evaluation grid."),
    grid_dir: Path = typer.Option(Path("data"), "--grid-dir", help="Where the evaluation grid is "
                                  "rendered once and reused."),
) -> None:
    """Why each named neuron's Spearman |rho| is what it is, and where each code's information goes
    (the grid of `dcign-eval metrics`).

    Per named neuron: the grid-wide |rho|; its mean |rho| inside cells where only its factor
    changes (precision); the |rho| it would reach with every cell's offset removed; how much its
    gain (slope on its factor) varies from cell to cell (gain_cv, 0 = alike); the share of its
    variance that identity and the other angles explain (eta^2, 0 = invariant); and the spread of
    its means against the encoder's own noise (posterior sd); and whether it orders its factor at
    all or only says how far it is from some value (a U-shaped neuron: R^2 of a monotone fit on
    the factor against one on |factor - fold_at|). Writes diagnostics.csv.

    Per model, the code budget: KL(q(z|x) || N(0, I)) in nats per image, the information the code
    carries, split into each named neuron and the intrinsic block (an entangled model: its whole
    code), with the latents above 0.1 nat counted as active. Writes code_budget.csv. A model
    without an encoder posterior (no encode_posterior) has no budget and no posterior_sd.
    """
    import pandas as pd

    from dcign_eval.console import progress_bar
    from dcign_eval.metrics.factor_fit import (GRID_FACTORS, code_budget, describe_shape,
                                               neuron_diagnostics)
    from dcign_eval.metrics.suite import evaluation_worlds, grid_codes
    from dcign_eval.protocol import load_models
    from trainer.io import atomic_write_text

    check_writable_dir(out)  # before the work, not after it
    check_writable_dir(grid_dir, "--grid-dir")
    models = load_models(model)
    worlds = evaluation_worlds(models, grid_dir, identities, progress=progress_bar)
    rows, budget, notes = [], [], []
    for m in models:
        world = worlds[m.image_size]
        if m.has_posterior:
            mu, sd = m.encode_posterior(world.dataset.images)
        else:
            mu, sd = grid_codes(m, world, progress=progress_bar), None
        for factor, k in m.latent_names.items():
            if factor not in GRID_FACTORS[1:]:
                continue  # a name of the model's own, not a face-world angle
            rows.append({"model": m.name, "neuron": factor, **neuron_diagnostics(
                mu[:, k], None if sd is None else sd[:, k], world.dataset.factors, factor)})
            note = describe_shape(factor, rows[-1])
            if note:
                notes.append(f"{m.name}: {note}")
        if sd is not None:
            budget += [{"model": m.name, **r} for r in code_budget(mu, sd, m.latent_names)]
    written = []
    if rows:
        table = pd.DataFrame(rows)
        table = table[["model", "neuron", "spearman", "within_cell", "offset_free", "gain_cv",
                       *[f"eta2_{c}" for c in GRID_FACTORS], "monotone_r2", "folded_r2",
                       "fold_at", "u_shaped", "code_sd", "posterior_sd"]]
        written.append(out / "diagnostics.csv")
        atomic_write_text(written[-1], table.to_csv(index=False))
        typer.echo(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
        for note in notes:
            typer.echo(note)
        typer.echo("")
    if budget:
        budget = pd.DataFrame(budget)
        written.append(out / "code_budget.csv")
        atomic_write_text(written[-1], budget.to_csv(index=False))
        typer.echo("code budget, KL nats per image:")
        typer.echo(budget.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if not written:
        typer.echo("nothing to diagnose: no named latents and no encoder posterior")
        return
    typer.echo(f"wrote {' and '.join(str(p) for p in written)}")


@app.command("recognition")
def recognition_cmd(
    model: list[str] = typer.Option(["dcign", "vae"], "--model", help=MODEL_HELP + "; repeat "
                                    "for several, 'none' for none. The first is the reference "
                                    "of the paired comparison."),
    identities: int = typer.Option(100, help="Held-out identities (never seen in training), >= 2."),
    out: Path = typer.Option(Path("out/recognition"), "--out", help="Output directory."),
    seed: int = typer.Option(0, min=0, help="Seed of every random choice."),
    size: Optional[int] = typer.Option(None, help="Image size of the pixel and PCA features "
                                                  "(default: the first model's, 64 without "
                                                  "models); each model sees its own size."),
    azimuth_step: float = typer.Option(15.0, help="Probe azimuth grid step, degrees (-90..90)."),
    elevation_step: float = typer.Option(15.0, help="Probe elevation grid step, degrees."),
    light_step: float = typer.Option(20.0, help="Probe light azimuth grid step, degrees."),
    probes_per_azimuth: int = typer.Option(4, min=0, help="(elevation, light) pairs drawn per "
                                                          "identity and azimuth; 0: all."),
    pca_components: int = typer.Option(200, min=0, help="PCA-of-pixels dimensions (fitted on "
                                                        "training identities); 0: no PCA."),
    classifier: list[Classifier] = typer.Option([], help="Classifier(s), repeatable (default: "
                                                         "all three)."),
    cache: Optional[Path] = typer.Option(None, help="Cache of rendered faces (default: "
                                                    "OUT/cache)."),
    resamples: int = typer.Option(1000, min=0, help="Bootstrap resamples of the held-out "
                                  "identities behind each figure's 95% interval; 0: none."),
) -> None:
    """Invariant face recognition: identify held-out faces across pose and light.

    Gallery: each identity frontal (one-view), or frontal plus azimuth -90, -45, 45, 90
    (several-views). Probes: the other views of the grid.

    Features: each model's intrinsic block (its latents not named, or its own intrinsic) and full
    code, PCA of pixels, pixels. Classifiers: 1-NN cosine, logistic regression, linear SVM.
    Verification: ROC AUC, EER. Every figure gets a 95% interval by bootstrap over the held-out
    identities (the fitted predictions resampled, nothing refitted).

    Writes tidy CSVs (a feature column naming the model) and plots to --out and prints a
    summary; codes are cached in $DCIGN_EVAL_CACHE.
    """
    from dcign_eval.console import progress_bar
    from dcign_eval.protocol import load_models
    from dcign_eval.recognition import CLASSIFIERS, ProbeGrid, run_recognition

    specs = [m for m in model if m.strip().lower() not in ("", "none")]
    check_writable_dir(out)  # before the work, not after it
    if cache is not None:
        check_writable_dir(cache, "--cache")
    grid = ProbeGrid(azimuth_step, elevation_step, light_step,
                     probes_per_azimuth=probes_per_azimuth or None)
    if size is not None:
        _check_size(size)
    result = run_recognition(load_models(specs), out=out, n_identities=identities, size=size,
                             grid=grid, classifiers=tuple(c.value for c in classifier) or CLASSIFIERS,
                             pca_components=pca_components or None, cache_dir=cache,
                             random_state=seed, resamples=resamples, progress=progress_bar)
    _print_recognition(result)


def _print_recognition(result) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from dcign_eval.intervals import format_interval

    p = result.params
    console = Console()
    large = f"|az|>={p['large_pose']:g}"

    def table(title: str, columns: tuple[str, ...], rows) -> None:
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for col in columns:
            t.add_column(col, no_wrap=True)
        for row in rows:
            t.add_row(*row)
        console.print(t)

    table(f"Identification of {p['n_identities']} held-out identities ({p['n_probes']} probes; "
          f"chance {p['chance']:.3f})", ("feature", "classifier", "protocol", "accuracy", large),
          [(r.feature, r.classifier, r.protocol,
            format_interval(r.accuracy, r.accuracy_low, r.accuracy_high),
            format_interval(r.accuracy_large_pose, r.accuracy_large_pose_low,
                            r.accuracy_large_pose_high))
           for r in result.summary.itertuples()])
    table("Verification, same vs different (cosine)", ("feature", "ROC AUC", "EER"),
          [(r.feature, format_interval(r.auc, r.auc_low, r.auc_high),
            format_interval(r.eer, r.eer_low, r.eer_high))
           for r in result.verification_summary.itertuples()])
    if p["interval"]["resamples"]:
        typer.echo(f"± : half the 95% interval, {p['interval']['resamples']} bootstrap "
                   f"resamples of the held-out identities")
    if len(result.comparison):
        table(f"Accuracy at {large}: {p['reference']} vs other (paired McNemar)",
              ("classifier", "protocol", "other", "ref.", "other", "difference", "p", "ref. is"),
              [(r.classifier, r.protocol, r.other, f"{r.accuracy_reference:.3f}",
                f"{r.accuracy_other:.3f}",
                format_interval(r.difference, r.difference_low, r.difference_high),
                f"{r.p_value:.1e}" if r.p_value < 1e-3 else f"{r.p_value:.3f}",
                "n.s." if r.verdict == "no significant difference" else r.verdict)
               for r in result.comparison.itertuples()])
    for role, path in result.files.items():
        typer.echo(f"{role}: {path}")


@app.command("traverse")
def traverse_cmd(
    neuron: str = typer.Option("light", help="azimuth, elevation, light, a latent index, or all."),
    model: str = typer.Option("dcign", help=MODEL_HELP + "; it must decode."),
    identity: int = typer.Option(1_000_000, help="Face-world identity of the source face "
                                                 "(held-out identities start at 1,000,000)."),
    azimuth: float = typer.Option(0.0, help="Source face azimuth, degrees (-90..90)."),
    elevation: float = typer.Option(0.0, help="Source face elevation, degrees (-30..30)."),
    light: float = typer.Option(0.0, help="Source light azimuth, degrees (-80..80)."),
    image: Optional[Path] = typer.Option(None, help="Use this PNG/JPEG as the source face "
                                                    "instead (grayscale, cropped, resized)."),
    faces: int = typer.Option(1, help="Face-world faces in the movie, identities from "
                                      "--identity on, shown in a grid."),
    frames: int = typer.Option(32, help="Frames in the sweep."),
    fps: float = typer.Option(12.0, help="Frames per second of the GIF and MP4."),
    range_: Optional[tuple[float, float]] = typer.Option(
        None, "--range", metavar="LO HI", help="Sweep range in latent units (default: the "
                                               "latent's 1st..99th percentile on a face grid)."),
    from_deg: Optional[float] = typer.Option(None, "--from", help="Sweep start in degrees "
                                                                 "(named neurons; with --to)."),
    to_deg: Optional[float] = typer.Option(None, "--to", help="Sweep end in degrees."),
    out: Path = typer.Option(Path("out/traverse"), "--out", help="Output directory."),
    fidelity: bool = typer.Option(False, help="Also score re-rendering at new angles on "
                                              "held-out faces (a CSV and a plot per neuron)."),
    fidelity_identities: int = typer.Option(8, help="Held-out faces per target angle."),
) -> None:
    """Latent-traversal movies: sweep one latent of a face and decode (the paper's Figs. 4-6).

    Writes a GIF, an MP4 and a PNG contact sheet per neuron into --out and prints their paths.

    A face-world face stands beside its true render at each frame's calibrated angle.

    The calibration's codes are cached in $DCIGN_EVAL_CACHE (default ~/.cache/dcign-eval).
    """
    from dcign_eval import load_model
    from dcign_eval import traverse as tv

    tv.parse_neuron(neuron)
    if (from_deg is None) != (to_deg is None):
        raise DcignError("--from and --to go together (degrees, e.g. --from -60 --to 60)")
    check_writable_dir(out)  # before the work, not after it
    loaded = load_model(model)
    if not loaded.has_decode:
        raise DcignError(f"{loaded.name} has no decode; a traversal decodes each frame")
    factors = tv.fidelity_factors(loaded, neuron) if fidelity else []
    stem = tv.model_stem(loaded.name)
    results = tv.traverse_to_files(
        loaded, neuron, out_dir=out, stem=stem, image=image, identity=identity, azimuth=azimuth,
        elevation=elevation, light=light, faces=faces, frames=frames, fps=fps,
        value_range=range_, degree_range=None if from_deg is None else (from_deg, to_deg),
        progress=True)
    for r in results:
        typer.echo(r.neuron.note)
        typer.echo(r.describe())
        for path in r.paths.values():
            typer.echo(f"  {path}")
    if fidelity:
        frame = tv.rerender_fidelity(loaded, tv.calibrate(loaded), factors, model_name=stem,
                                     n_identities=fidelity_identities, progress=True)
        typer.echo("re-rendering fidelity (held-out faces; mean over target angles):")
        for name, part in frame.groupby("neuron", sort=False):
            typer.echo(f"  {name}: MSE {part['mse'].mean():.4f} (reconstruction "
                       f"{part['recon_mse'].mean():.4f}), SSIM {part['ssim'].mean():.3f} "
                       f"(reconstruction {part['recon_ssim'].mean():.3f})")
        for path in tv.write_fidelity(frame, out, stem).values():
            typer.echo(f"  {path}")


@app.command("report")
def report_cmd(
    model: list[str] = typer.Option(["dcign", "vae"], "--model", help=MODEL_HELP + "; repeat "
                                    "for 1 to 8 models, the first the one the page is about."),
    out: Path = typer.Option(Path("reports/latest"), "--out", help="The report folder "
                             "(index.html with figures and movies beside it)."),
    seed: int = typer.Option(0, min=0, help="Seed of every random choice."),
    quick: bool = typer.Option(False, "--quick", help="One seed of the metrics, no interval "
                               "on them (about two minutes cold on a 2-core CPU). Default: "
                               "5 seeds of the cheap metrics, an interval on every figure "
                               "(at most 3 minutes cold)."),
    full: bool = typer.Option(False, "--full", help="The other commands' defaults, every "
                              "metric over 5 seeds (much longer)."),
    grid_dir: Path = typer.Option(Path("data"), "--grid-dir", help="Where the evaluation grid "
                                  "is rendered once and reused (as dcign-eval metrics)."),
    recognition_cache: Path = typer.Option(Path("out/recognition/cache"), "--recognition-cache",
                                           help="Rendered recognition faces (as dcign-eval "
                                                "recognition)."),
) -> None:
    """Write one HTML page comparing 1 to 8 models side by side: model cards, reconstructions
    and their lineup (is each nearest its own identity?), traversals (one slider over every
    model's frames at the same angle; GIF and MP4 to download) and re-rendering fidelity, inferred-versus-true scatter plots, the disentanglement metrics beside the true
    factors (ceiling) and a random code (floor), the recognition tables and plots, and
    provenance.

    The folder (index.html, figures/, traverse/, recognition/, tables/, report.json) uses
    relative links only, so it can be moved or committed. Codes and results are cached in
    $DCIGN_EVAL_CACHE (default ~/.cache/dcign-eval), so a second report of the same models is
    fast.
    """
    import shlex

    from dcign_eval.pipeline import format_seconds
    from dcign_eval.report import build_report, check_out

    if quick and full:
        raise DcignError("--quick and --full contradict each other; give one")
    check_out(out)  # before the work, not after it
    check_writable_dir(grid_dir, "--grid-dir")
    check_writable_dir(recognition_cache, "--recognition-cache")
    result = build_report(model, out=out, seed=seed,
                          settings="quick" if quick else "full" if full else "standard",
                          grid_dir=grid_dir,
                          recognition_cache=recognition_cache,
                          command=shlex.join(["dcign-eval", *sys.argv[1:]]),
                          log=lambda line: typer.echo(line, err=True))
    for name, seconds in result.seconds.items():
        typer.echo(f"  {name}: {format_seconds(seconds)}")
    typer.echo(f"wrote {result.index}")


@app.command("demo")
def demo_cmd(
    profile: Profile = typer.Option("quick", help="quick (recipes/quick.toml, about 7 minutes "
                                                  "on a 2-core CPU), full (the shipped models "
                                                  "rebuilt from recipes/dcign.toml and vae.toml, "
                                                  "hours) or tiny (seconds)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Runs and report go here (default "
                                                           "out/demo, out/demo-full for full)."),
    data_root: Path = typer.Option(Path("data"), "--data-root", help="Where the data sets are "
                                                                     "rendered once and reused."),
    seed: int = typer.Option(0, min=0, help="Seed of the report's random choices."),
) -> None:
    """The main job: render the face world, train a DC-IGN and a VAE baseline, evaluate them and
    write the report (OUT/report/index.html).

    Finished training runs are reused and unfinished ones resumed, so an interrupted demo picks
    up where it stopped.
    """
    from dcign_eval.pipeline import format_seconds, run_demo

    profile = profile.value
    out = out or Path("out/demo-full" if profile == "full" else "out/demo")
    check_writable_dir(out)  # before the work, not after it
    check_writable_dir(data_root, "--data-root")
    result = run_demo(profile, out, data_root=data_root, seed=seed,
                      log=lambda line: typer.echo(line, err=True))
    for name, seconds in result.seconds.items():
        typer.echo(f"  {name}: {format_seconds(seconds)}")
    typer.echo(f"report: {result.report}")


def main() -> None:
    """Entry point: run the app, turning DcignError into a one-line message and exit status 2."""
    try:
        app()
    except DcignError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
