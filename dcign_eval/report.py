"""The report: one HTML page with everything a researcher would show (``dcign-eval report``).

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167. The page gathers the analyses of a DC-IGN and its entangled
baseline: model cards (config, training curve, data set), reconstructions of held-out faces and
their lineup (:mod:`dcign_eval.lineup`: is each one nearest its own identity?), a
traversal movie of each named neuron beside the true renders with the re-rendering fidelity plot,
inferred-versus-true scatter plots of azimuth, elevation and light (the paper's figure) with
Spearman rho, the disentanglement metrics with the time each took, the invariant recognition
tables and plots, and provenance (package version, git commit, seeds, hardware, time per section).

Read top to bottom:

* :class:`ReportSettings` and :data:`PRESETS` (``quick``: the default, about two minutes on a
  2-core CPU with warm caches; ``full``: the other commands' defaults; ``tiny``: tests).
* Sections, each a function returning data (pandas frames, arrays) and a separate function that
  draws it: :func:`model_cards`, :func:`training_curves` / :func:`plot_training_curves`,
  :func:`dataset_card`, :func:`monovariant_examples` / :func:`plot_monovariant_examples`,
  :func:`reconstructions` / :func:`plot_reconstructions`, :func:`factor_scatter` /
  :func:`plot_factor_scatter`, :func:`metrics_comparison`, :func:`provenance`.
* :func:`build_report` runs every section, times it, reuses the other commands' caches (the
  metrics grid under ``data/``, the traverse calibration cache, the recognition cache) plus its
  own result caches, and writes ``DIR/index.html`` with figures and movies beside it (relative
  links only, so the folder can be moved or committed). The folder is built in a temporary
  directory next to ``DIR`` and swapped into place, so a failed run leaves the old report.

The page is a Jinja2 template (``templates/report.html.j2``) rendered with autoescape on: every
string from a config, a path or a table is escaped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from dcign_eval.lineup import lineup, lineup_table, plot_lineup
from trainer.errors import DatasetError, DcignError
from trainer.io import atomic_write_bytes, atomic_write_json, atomic_write_text, default_mode

REPORT_FORMAT = "dcign-report"
REPORT_VERSION = 1
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
ROLES = ("dcign", "baseline")
ANGLES = ("azimuth", "elevation", "light")
#: held-out identities of the reconstructions: after the calibration (0..) and fidelity (100..)
#: faces of :mod:`dcign_eval.traverse`, so no section reuses another's faces.
RECONSTRUCTION_FIRST_IDENTITY = 300

Log = Callable[[str], None]


# -- settings --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportSettings:
    """How much of each analysis the report computes.

    Attributes:
        grid_identities: held-out identities of the evaluation grid (metrics and scatter plots;
            19 azimuths x 7 elevations x 9 lights each, as ``dcign-eval metrics``).
        metrics_num_train, metrics_num_eval: points per disentanglement metric (None:
            disentanglement_lib's 10,000 / 5,000).
        dci_mode: "fast" (extra-trees importances) or "gbt" (the reference's estimator).
        metrics: which disentanglement metrics (None: all; () none, the paper's measurements only).
        recognition_identities: held-out identities of the recognition experiment.
        probe_steps: probe grid steps (azimuth, elevation, light) in degrees.
        probes_per_azimuth: (elevation, light) probes per identity and azimuth (None: all).
        pca_components, pca_identities, pca_images: the PCA-of-pixels baseline (0: none).
        classifiers: recognition classifiers.
        traverse_faces, traverse_frames, fps: the traversal movies.
        calibration_identities: held-out identities of the traverse calibration.
        fidelity_identities: held-out faces per target angle in the re-rendering fidelity.
        reconstruction_faces: held-out faces shown reconstructed.
        lineup_faces: held-out faces (and identities) of the reconstruction lineup.
        scatter_points: points drawn per panel of the scatter plots (rho uses them all).
    """

    grid_identities: int = 10
    metrics_num_train: int | None = 3000
    metrics_num_eval: int | None = 1500
    dci_mode: str = "fast"
    metrics: tuple[str, ...] | None = None
    recognition_identities: int = 50
    probe_steps: tuple[float, float, float] = (15.0, 15.0, 20.0)
    probes_per_azimuth: int | None = 4
    pca_components: int = 200
    pca_identities: int = 500
    pca_images: int = 2000
    classifiers: tuple[str, ...] = ("1nn-cosine", "logistic", "linear-svc")
    traverse_faces: int = 2
    traverse_frames: int = 32
    fps: float = 12.0
    calibration_identities: int = 4
    fidelity_identities: int = 4
    reconstruction_faces: int = 8
    lineup_faces: int = 64
    scatter_points: int = 3000

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, ReportSettings] = {
    # The default: at most about two minutes on a 2-core CPU once the caches are warm.
    "quick": ReportSettings(),
    # The other commands' defaults (dcign-eval metrics / recognition / traverse --fidelity).
    "full": ReportSettings(metrics_num_train=None, metrics_num_eval=None,
                           recognition_identities=100, traverse_faces=4, traverse_frames=48,
                           fidelity_identities=8, reconstruction_faces=12, scatter_points=6000),
    # Tests and the pipeline's plumbing check: seconds.
    "tiny": ReportSettings(grid_identities=2, metrics_num_train=200, metrics_num_eval=100,
                           recognition_identities=3, probe_steps=(45.0, 30.0, 80.0),
                           probes_per_azimuth=2, pca_components=5, pca_identities=20,
                           pca_images=20, classifiers=("1nn-cosine",), traverse_faces=1,
                           traverse_frames=5, fps=5.0, calibration_identities=1,
                           fidelity_identities=1, reconstruction_faces=3, lineup_faces=4,
                           scatter_points=500),
}


def preset(name: str) -> ReportSettings:
    """The settings called ``name`` (quick, full, tiny)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DcignError(f"unknown report preset {name!r}; choose from "
                         f"{', '.join(PRESETS)}") from None


# -- the models ------------------------------------------------------------------------------------

@dataclass
class ReportModel:
    """A loaded model and how the page names it. ``role``: "dcign" or "baseline"."""

    role: str
    label: str
    source: str
    model: Any

    @property
    def fingerprint(self) -> str:
        from dcign_eval.traverse import model_fingerprint

        return model_fingerprint(self.model) or "unknown"


def load_report_models(model, baseline=None) -> list[ReportModel]:
    """Load the DC-IGN (it must name its latents) and the optional baseline, with page labels.

    ``model`` / ``baseline``: a run directory, a shipped name ("dcign", "vae") or a loaded model;
    a baseline of None (or "none") is left out.
    """
    from dcign_eval.models import load_model
    from dcign_eval.traverse import model_stem

    def load(source):
        return load_model(source) if isinstance(source, (str, os.PathLike)) else source

    if baseline is not None and str(baseline).strip().lower() in ("", "none"):
        baseline = None
    pairs = [("dcign", model)] + ([("baseline", baseline)] if baseline is not None else [])
    out = []
    for role, source in pairs:
        loaded = load(source)
        path = getattr(loaded, "path", None)
        label = model_stem(source if isinstance(source, (str, os.PathLike)) else path or role)
        out.append(ReportModel(role, label, str(source if isinstance(source, (str, os.PathLike))
                                               else path or role), loaded))
    if not out[0].model.latent_names:
        raise DcignError(f"the report's --model must be a DC-IGN with named latents; "
                         f"{out[0].source} names none (an entangled baseline? pass it as "
                         f"--baseline)")
    if len(out) == 2:
        if out[0].label == out[1].label:
            out[0].label, out[1].label = f"{out[0].label} (DC-IGN)", f"{out[1].label} (baseline)"
        sizes = {m.model.image_size for m in out}
        if len(sizes) != 1:
            raise DcignError(f"the DC-IGN and the baseline take different image sizes "
                             f"{sorted(sizes)}; compare models of one size")
    return out


# -- section: model cards --------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        value = json.loads(Path(path).read_text())
        if isinstance(value, dict):
            return value
    return {}


def _read_history(run_dir) -> pd.DataFrame | None:
    path = Path(run_dir) / "history.csv"
    with contextlib.suppress(OSError, ValueError, pd.errors.ParserError):
        frame = pd.read_csv(path)
        if {"step", "split", "neg_elbo"} <= set(frame.columns):
            return frame
    return None


def _kind(config: dict) -> str:
    train = config.get("train", {})
    names = config.get("model", {}).get("latent_names", {})
    if train.get("mode") == "monovariant" or names:
        return "DC-IGN (monovariant training)"
    beta = float(train.get("beta", 1.0))
    return "baseline: VAE" if beta == 1 else f"baseline: beta-VAE (beta {beta:g})"


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def model_card(rm: ReportModel) -> dict[str, str]:
    """One model's card: field -> value, from its config.json, state.json and history.csv."""
    m = rm.model
    config = getattr(m, "config", {}) or {}
    train, model_cfg = config.get("train", {}), config.get("model", {})
    path = getattr(m, "path", None)
    state = _read_json(Path(path) / "state.json") if path else {}
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
        "model": rm.source,
        "role": "DC-IGN" if rm.role == "dcign" else "entangled baseline",
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
        "beta (KL weight)": f"{train.get('beta', '')}",
        "seed": str(train.get("seed", "")),
    }
    if train.get("mode") == "monovariant":
        ratio = train.get("ratio") or []
        card["batch-type ratio (az : el : light : intrinsic)"] = " : ".join(f"{r:g}"
                                                                             for r in ratio)
        card["clamp reference"] = str(train.get("clamp_reference", ""))
        card["invariance strength"] = f"{train.get('invariance_strength', '')}"
        if train.get("invariance_scale", "absolute") != "absolute":
            card["invariance strength"] += f" ({train['invariance_scale']})"
        if train.get("unclamped_share"):
            card["unclamped share (random batches, nothing clamped)"] = \
                f"{train['unclamped_share']:g}"
    if train.get("decoder_noise", 1.0) != 1.0:
        card["decoder's sampling noise (1: the ELBO's, 0: the means)"] = \
            f"{train['decoder_noise']:g}"
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
    if history is not None and len(history):
        tr = history[history["split"] == "train"]
        te = history[history["split"] == "test"]
        if len(tr):
            tail = tr.tail(max(1, len(tr) // 100))
            card["final train neg-ELBO (per image)"] = f"{tail['neg_elbo'].mean():.1f}"
        if len(te):
            card["final test neg-ELBO (per image)"] = f"{te['neg_elbo'].iloc[-1]:.1f}"
        card["training time"] = _duration(float(history["seconds"].max()))
    card["weights sha256"] = rm.fingerprint[:16]
    if state.get("torch_version"):
        card["saved by torch"] = str(state["torch_version"])
    return card


def model_cards(models: Sequence[ReportModel]) -> pd.DataFrame:
    """Model cards side by side: one row per field, one column per model (its page label)."""
    cards = {rm.label: model_card(rm) for rm in models}
    fields_ = list(dict.fromkeys(k for card in cards.values() for k in card))
    return pd.DataFrame({label: [card.get(k, "") for k in fields_] for label, card in
                         cards.items()}, index=pd.Index(fields_, name="field"))


def training_curves(models: Sequence[ReportModel], points: int = 400) -> pd.DataFrame:
    """Negative ELBO per image against step, tidy: model, split, step, neg_elbo.

    Training rows (one per step, noisy) are averaged in ``points`` bins of steps; validation
    rows are kept as they are.
    """
    rows = []
    for rm in models:
        path = getattr(rm.model, "path", None)
        history = _read_history(path) if path else None
        if history is None or history.empty:
            continue
        tr = history[history["split"] == "train"]
        if len(tr):
            bins = np.minimum((tr["step"].to_numpy() - 1) * points // max(int(tr["step"].max()), 1),
                              points - 1)
            binned = tr.groupby(bins).agg(step=("step", "mean"), neg_elbo=("neg_elbo", "mean"))
            rows.append(binned.assign(model=rm.label, split="train"))
        te = history[history["split"] == "test"]
        if len(te):
            rows.append(te[["step", "neg_elbo"]].assign(model=rm.label, split="test"))
    if not rows:
        return pd.DataFrame(columns=["model", "split", "step", "neg_elbo"])
    return pd.concat(rows, ignore_index=True)[["model", "split", "step", "neg_elbo"]]


def plot_training_curves(frame: pd.DataFrame):
    """Training curves (:func:`training_curves`): a line per model, training solid (binned
    means), validation dashed with markers; log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (name, part) in enumerate(frame.groupby("model", sort=False)):
        color = f"C{i % 10}"
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


def dataset_card(models: Sequence[ReportModel]) -> pd.DataFrame:
    """The training data of each model: field -> value per model, from the run's config and,
    when the data set is on this machine, its manifest."""
    cards = {}
    for rm in models:
        data = (getattr(rm.model, "config", {}) or {}).get("data", {})
        path = data.get("path", "")
        card = {"path": str(path) or "unknown",
                "image size": f"{data.get('image_size', '')} px",
                "training images": f"{data.get('train_images', 0):,}",
                "test images (held-out identities)": f"{data.get('test_images', 0):,}",
                "training set sha256": str(data.get("train_checksum", ""))[:16]}
        manifest = _read_json(Path(path) / "train" / "manifest.json") if path else {}
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
        cards[rm.label] = card
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


# -- section: reconstructions ----------------------------------------------------------------------

def held_out_faces(n: int, random_state: int = 0) -> pd.DataFrame:
    """Factors of ``n`` held-out faces at random angles (identities never seen in training)."""
    from trainer.faces import FACTOR_RANGES, TEST_IDENTITY_OFFSET

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 64:
        raise DcignError(f"the number of faces must be in [1, 64], got {n!r}")
    rng = np.random.default_rng([int(random_state), 31])
    first = TEST_IDENTITY_OFFSET + RECONSTRUCTION_FIRST_IDENTITY
    frame = pd.DataFrame({"identity": first + rng.choice(700, n, replace=False)})
    for name, (lo, hi) in FACTOR_RANGES.items():
        frame[name] = np.round(rng.uniform(lo, hi, n) / 5) * 5  # 5-degree steps: readable labels
    return frame


@dataclass
class Reconstructions:
    """Held-out faces and their reconstructions (encode to mu, decode).

    Attributes:
        faces: identity, azimuth, elevation, light and, per model label, ``mse:<label>`` and
            ``ssim:<label>`` of its reconstruction (images in [0, 1]).
        truth: (N, S, S) float32 true renders in [0, 1].
        decoded: model label -> (N, S, S) float32 reconstructions.
    """

    faces: pd.DataFrame
    truth: np.ndarray
    decoded: dict[str, np.ndarray]


def reconstructions(models: Sequence[ReportModel], faces: pd.DataFrame) -> Reconstructions:
    """Render ``faces`` (held-out), encode and decode them with every model, score MSE / SSIM."""
    from dcign_eval.traverse import mse, ssim
    from trainer.faces import render_faces

    size = int(models[0].model.image_size)
    images = render_faces(faces["identity"].to_numpy(), faces["azimuth"].to_numpy(),
                          faces["elevation"].to_numpy(), faces["light"].to_numpy(), size=size)
    truth = images.astype(np.float32) / 255
    frame = faces.reset_index(drop=True).copy()
    decoded = {}
    for rm in models:
        rec = np.asarray(rm.model.decode(np.asarray(rm.model.encode(images), np.float32)),
                         np.float32)
        decoded[rm.label] = rec
        frame[f"mse:{rm.label}"] = mse(rec, truth)
        frame[f"ssim:{rm.label}"] = ssim(rec, truth)
    return Reconstructions(frame, truth, decoded)


def reconstruction_table(rec: Reconstructions) -> pd.DataFrame:
    """Mean reconstruction MSE and SSIM per model over the faces shown."""
    rows = [{"model": label, "faces": len(rec.faces),
             "MSE": float(rec.faces[f"mse:{label}"].mean()),
             "SSIM": float(rec.faces[f"ssim:{label}"].mean())} for label in rec.decoded]
    return pd.DataFrame(rows, columns=["model", "faces", "MSE", "SSIM"])


def plot_reconstructions(rec: Reconstructions):
    """Columns: faces; rows: the true render, then each model's reconstruction (with its MSE)."""
    from matplotlib.figure import Figure

    n = len(rec.faces)
    rows = [("true render", rec.truth)] + list(rec.decoded.items())
    fig = Figure(figsize=(1.25 * n + 1.2, 1.45 * len(rows) + 0.2), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                f = rec.faces.iloc[c]
                ax.set_title(f"az {f['azimuth']:+.0f}  el {f['elevation']:+.0f}\n"
                             f"light {f['light']:+.0f}", fontsize=7)
            else:
                ax.set_xlabel(f"MSE {rec.faces[f'mse:{name}'].iloc[c]:.4f}", fontsize=7,
                              labelpad=1)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


# -- section: inferred versus true (the paper's scatter plots) -------------------------------------

def factor_scatter(codes: Mapping[str, np.ndarray], factors: pd.DataFrame,
                   neurons: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Each model's latent for each angle against the true angle, tidy.

    Args:
        codes: model label -> (N, D) encoder means of the images whose factors are ``factors``.
        factors: (N,) rows of identity, azimuth, elevation, light (degrees).
        neurons: model label -> {factor: latent index} (a DC-IGN's named neurons; for a baseline
            its best single latent, as :func:`dcign_eval.metrics.paper.best_single_latent`).
    Returns:
        model, factor, latent, true (degrees), inferred (the latent's encoder mean); one row per
        (model, factor, image).
    """
    frames = []
    for label, z in codes.items():
        z = np.asarray(z)
        if z.ndim != 2 or len(z) != len(factors):
            raise DcignError(f"codes of {label} must be (N, D) with N = {len(factors)}, "
                             f"got {z.shape}")
        for name in ANGLES:
            k = int(neurons[label][name])
            frames.append(pd.DataFrame({"model": label, "factor": name, "latent": k,
                                        "true": factors[name].to_numpy(np.float64),
                                        "inferred": z[:, k].astype(np.float64)}))
    return pd.concat(frames, ignore_index=True)


def scatter_summary(scatter: pd.DataFrame, named: Mapping[str, bool] | None = None
                    ) -> pd.DataFrame:
    """Spearman rho (signed) and monotone-fit R^2 per (model, factor) over all points.

    ``named``: model label -> whether its latents are the model's named neurons (else the best
    single latent stands in).
    """
    from scipy.stats import spearmanr

    from dcign_eval.metrics.factor_fit import monotone_fit

    rows = []
    for (label, name), part in scatter.groupby(["model", "factor"], sort=False):
        x, y = part["true"].to_numpy(), part["inferred"].to_numpy()
        rho = spearmanr(x, y).statistic if np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0
        rows.append({"model": label, "factor": name, "latent": int(part["latent"].iloc[0]),
                     "neuron": ("named" if (named or {}).get(label, False)
                                else "best single latent"),
                     "spearman": float(rho) if np.isfinite(rho) else 0.0,
                     "r2": monotone_fit(y, x)["r2"], "n": len(part)})
    return pd.DataFrame(rows, columns=["model", "factor", "latent", "neuron", "spearman", "r2",
                                       "n"])


def plot_factor_scatter(scatter: pd.DataFrame, summary: pd.DataFrame, max_points: int = 3000,
                        random_state: int = 0):
    """Inferred latent against the true angle: a row per model, a column per factor (the
    paper's Figure 6 on held-out faces), each titled with its latent and Spearman rho; the
    median per true angle in black."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(scatter["model"]))
    fig = Figure(figsize=(10.5, 2.9 * len(models) + 0.3), layout="constrained")
    axes = fig.subplots(len(models), len(ANGLES), squeeze=False)
    rng = np.random.default_rng([int(random_state), 37])
    for r, label in enumerate(models):
        for c, name in enumerate(ANGLES):
            ax = axes[r, c]
            part = scatter[(scatter["model"] == label) & (scatter["factor"] == name)]
            if len(part) > max_points:
                part = part.iloc[np.sort(rng.choice(len(part), max_points, replace=False))]
            spread = np.diff(np.unique(part["true"])).min() if part["true"].nunique() > 1 else 1
            jitter = rng.uniform(-0.25, 0.25, len(part)) * spread
            ax.scatter(part["true"] + jitter, part["inferred"], s=3, alpha=0.25,
                       color=f"C{r % 10}", rasterized=True, linewidths=0)
            full = scatter[(scatter["model"] == label) & (scatter["factor"] == name)]
            med = full.groupby("true")["inferred"].median()
            ax.plot(med.index, med.to_numpy(), "k-", lw=1.2)
            s = summary[(summary["model"] == label) & (summary["factor"] == name)].iloc[0]
            ax.set_title(f"{label}: z{s['latent']} vs {name}\nSpearman rho = "
                         f"{s['spearman']:+.3f}", fontsize=9)
            ax.set_xlabel(f"true {name} (degrees)", fontsize=8)
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel("inferred (encoder mean)", fontsize=8)
    return fig


# -- section: metrics ------------------------------------------------------------------------------

#: How the page names each measurement, and which direction is better.
METRIC_LABELS = {
    "beta_vae": ("BetaVAE score", "higher"), "factor_vae": ("FactorVAE score", "higher"),
    "mig": ("MIG", "higher"), "sap": ("SAP (discrete)", "higher"),
    "sap_continuous": ("SAP (continuous)", "higher"),
    "dci_disentanglement": ("DCI disentanglement", "higher"),
    "dci_completeness": ("DCI completeness", "higher"),
    "dci_informativeness": ("DCI informativeness (test accuracy)", "higher"),
    "modularity": ("modularity", "higher"), "explicitness": ("explicitness", "higher"),
    "irs": ("IRS", "higher"),
    "gaussian_total_correlation": ("Gaussian total correlation", "lower"),
    "mutual_info": ("mean pairwise mutual information", "lower"),
    "spearman_azimuth": ("paper: Spearman |rho|, azimuth neuron", "higher"),
    "r2_azimuth": ("paper: monotone-fit R², azimuth neuron", "higher"),
    "spearman_elevation": ("paper: Spearman |rho|, elevation neuron", "higher"),
    "r2_elevation": ("paper: monotone-fit R², elevation neuron", "higher"),
    "spearman_light": ("paper: Spearman |rho|, light neuron", "higher"),
    "r2_light": ("paper: monotone-fit R², light neuron", "higher"),
    "intrinsic_invariance": ("paper: intrinsic block within / between identity distance",
                             "lower"),
}


def metrics_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The metrics table of the page from :func:`dcign_eval.metrics.suite.measure_models`'s
    tidy frame: one row per metric; per model its value and the seconds it took; which
    direction is better. The ``neuron_*`` bookkeeping rows are left out."""
    df = df[~df["metric"].str.startswith("neuron_")]
    models = list(dict.fromkeys(df["model"]))
    values = df.pivot(index="metric", columns="model", values="value")
    seconds = df.pivot(index="metric", columns="model", values="seconds")
    order = list(dict.fromkeys(df["metric"]))
    out = pd.DataFrame({"metric": order,
                        "measure": [METRIC_LABELS.get(m, (m, ""))[0] for m in order],
                        "better": [METRIC_LABELS.get(m, ("", ""))[1] for m in order]})
    for label in models:
        out[label] = values.loc[order, label].to_numpy()
    for label in models:
        out[f"seconds: {label}"] = seconds.loc[order, label].to_numpy()
    return out


def _display_path(path) -> str:
    """A path as the page shows it: the home directory as ~, so a shared report names no
    machine's directories."""
    path = Path(path)
    try:
        return str(Path("~") / path.expanduser().resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


# -- caches ----------------------------------------------------------------------------------------

def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


class _MemoEncoder:
    """A model whose ``encode`` looks images up in precomputed codes (by their bytes) and encodes
    only images it has not seen, so each distinct image is encoded once across all sections."""

    def __init__(self, model, images: np.ndarray, codes: np.ndarray):
        self.model = model
        self.latent_names = dict(model.latent_names)
        self.image_size = model.image_size
        self._index = {self._digest(x): i for i, x in enumerate(np.asarray(images))}
        self._codes = np.asarray(codes, np.float32)

    @staticmethod
    def _digest(image: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()

    def encode(self, images) -> np.ndarray:
        images = np.asarray(images)
        found = [self._index.get(self._digest(x)) for x in images]
        out = np.empty((len(images), self._codes.shape[1]), np.float32)
        missing = [i for i, k in enumerate(found) if k is None]
        hit = [i for i, k in enumerate(found) if k is not None]
        if hit:
            out[hit] = self._codes[[found[i] for i in hit]]
        if missing:
            out[missing] = np.asarray(self.model.encode(images[missing]), np.float32)
        return out


# -- provenance ------------------------------------------------------------------------------------

def git_commit(repo: str | os.PathLike | None = None) -> tuple[str, bool | None]:
    """(``git rev-parse HEAD`` of the source tree, whether tracked files differ from it), or
    ("unknown", None) outside a git checkout. Reads only: no index refresh, no lock."""
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, env=env)
        if head.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "-C", str(repo), "--no-optional-locks", "status",
                                 "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=20, env=env)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return head.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def hardware() -> dict[str, str]:
    """Where the report ran: OS, CPU model and cores, memory, accelerator."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"platform": platform.platform(), "cpu": cpu,
            "cpu cores (os.cpu_count)": str(os.cpu_count())}
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if hasattr(os, "sched_getaffinity"):
            info["cores available to this process"] = str(len(os.sched_getaffinity(0)))
    with contextlib.suppress(AttributeError, OSError, ValueError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        info["memory"] = f"{memory / 2 ** 30:.1f} GiB"
    info["torch threads"] = str(torch.get_num_threads())
    if torch.cuda.is_available():
        info["accelerator"] = ", ".join(torch.cuda.get_device_name(i)
                                        for i in range(torch.cuda.device_count()))
    else:
        info["accelerator"] = "none (CPU only)"
    return info


def provenance(models: Sequence[ReportModel], seed: int, settings: ReportSettings,
               section_seconds: Mapping[str, float], *, preset_name: str | None = None,
               command: str | None = None, caches: Mapping[str, str] | None = None) -> dict:
    """Everything needed to say where the page came from: versions, git commit, seeds, hardware,
    settings, caches and the time each section took."""
    import matplotlib
    import sklearn
    import torch

    from dcign_eval import __version__

    commit, dirty = git_commit()
    seeds = {"report (every random choice of the analyses)": int(seed)}
    for rm in models:
        config = getattr(rm.model, "config", {}) or {}
        seeds[f"training of {rm.label}"] = config.get("train", {}).get("seed", "unknown")
        data = config.get("data", {}).get("path")
        manifest = _read_json(Path(data) / "train" / "manifest.json") if data else {}
        if "seed" in manifest:
            seeds[f"training data of {rm.label}"] = manifest["seed"]
    return {
        "package": f"dcign-eval {__version__}",
        "git commit": commit + ("" if dirty is None else
                                " (with uncommitted changes)" if dirty else " (clean)"),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command or "build_report()",
        "preset": preset_name or "custom",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__,
                     "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__},
        "seeds": seeds,
        "models": {rm.label: {"source": rm.source, "weights sha256": rm.fingerprint}
                   for rm in models},
        "hardware": hardware(),
        "settings": settings.to_dict(),
        "caches": dict(caches or {}),
        "section seconds": {k: round(float(v), 2) for k, v in section_seconds.items()},
    }


# -- writing ---------------------------------------------------------------------------------------

@dataclass
class HtmlTable:
    """A table for the template: caption, column names and rows of display strings."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def html_table(frame: pd.DataFrame, caption: str = "", index: bool = False,
               digits: Mapping[str, int] | None = None) -> HtmlTable:
    """A frame as an :class:`HtmlTable` (numbers formatted; escaping is the template's)."""
    if index:
        frame = frame.reset_index()
    digits = digits or {}
    columns = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    rows = [[_fmt(v, digits.get(str(c), 3)) for c, v in zip(frame.columns, row)]
            for row in frame.itertuples(index=False, name=None)]
    return HtmlTable(columns, rows, caption, numeric)


def _save_figure(fig, path: Path, dpi: int = 110) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _check_out(out: Path) -> None:
    """Refuse to replace a directory that is not a report: only our own folders are swapped."""
    if out.exists():
        if not out.is_dir():
            raise DcignError(f"{out} exists and is not a directory; choose another --out")
        marker = _read_json(out / "report.json")
        if any(out.iterdir()) and marker.get("format") != REPORT_FORMAT:
            raise DcignError(f"{out} exists and does not hold a dcign-eval report (no "
                             f"report.json); choose an empty or new --out")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``: renames, so the old report stays until the new one is
    complete."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time() * 1000)}.tmp"
        os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the page, every file beside it, the section times."""

    index: Path
    files: list[Path]
    seconds: dict[str, float]
    provenance: dict


class _Sections:
    """Times named sections (a section may be entered more than once: times add up)."""

    def __init__(self, log: Log | None):
        self.seconds: dict[str, float] = {}
        self.log = log

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.log:
            self.log(f"report: {name} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def render_page(context: dict) -> str:
    """The page: ``templates/report.html.j2`` with autoescape (every value is escaped)."""
    return _environment().get_template(TEMPLATE).render(**context)


def build_report(model="dcign", baseline="vae", out: str | os.PathLike = "reports/latest",
                 seed: int = 0, settings: ReportSettings | str = "quick", *,
                 grid_dir: str | os.PathLike = "data",
                 cache_dir: str | os.PathLike | None = None,
                 recognition_cache: str | os.PathLike | None = "out/recognition/cache",
                 command: str | None = None, log: Log | None = None) -> ReportResult:
    """Write the report folder ``out`` (``index.html``, figures, movies, tables, report.json).

    Args:
        model: the DC-IGN: a run directory, a shipped name ("dcign") or a loaded model.
        baseline: the entangled baseline (a run directory, "vae", a loaded model) or None.
        out: the report folder; an existing report there is replaced once the new one is
            complete; any other non-empty folder is refused.
        seed: seeds every random choice of the analyses.
        settings: a :class:`ReportSettings` or a preset name (quick, full, tiny).
        grid_dir: where the metrics' evaluation grid is rendered once and reused (as
            ``dcign-eval metrics --grid-dir``).
        cache_dir: the traverse calibration cache and the report's own result caches (grid
            codes, metrics, recognition); default ``$DCIGN_EVAL_CACHE`` or ~/.cache/dcign-eval.
        recognition_cache: rendered recognition faces and codes (``dcign-eval recognition``'s
            default ``out/recognition/cache``); None keeps them under ``cache_dir``.
        command: the command line, for the provenance.
        log: called with a line as each section starts.
    Returns:
        a :class:`ReportResult`.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)  # the recognition plots go through pyplot

    from dcign_eval import traverse as tv

    preset_name = settings if isinstance(settings, str) else None
    settings = preset(settings) if isinstance(settings, str) else settings
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DcignError(f"seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    out = Path(out)
    _check_out(out)
    cache_dir = Path(cache_dir) if cache_dir is not None else tv.default_cache_dir()
    recognition_cache = Path(recognition_cache) if recognition_cache is not None \
        else cache_dir / "recognition"
    results_cache = cache_dir / "report"
    sections = _Sections(log)
    started = time.perf_counter()

    with sections("loading models"):
        models = load_report_models(model, baseline)
    dcign = models[0]
    size = int(dcign.model.image_size)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        os.chmod(staging, default_mode(directory=True))  # mkdtemp's 0700 would stick to DIR
    except OSError as e:
        raise DcignError(f"cannot create the report folder next to {out}: {e.strerror}") \
            from None
    try:
        context = _build_sections(models, staging, seed, settings, size, sections,
                                  grid_dir=Path(grid_dir), cache_dir=cache_dir,
                                  recognition_cache=recognition_cache,
                                  results_cache=results_cache)
        with sections("page"):
            caches = {"evaluation grid": _display_path(grid_dir),
                      "traverse calibration": _display_path(cache_dir / "calibration"),
                      "report results (grid codes, metrics, recognition)":
                          _display_path(results_cache),
                      "recognition faces and codes": _display_path(recognition_cache)}
            seconds = dict(sections.seconds)
            seconds["total"] = time.perf_counter() - started
            prov = provenance(models, seed, settings, seconds, preset_name=preset_name,
                              command=command, caches=caches)
            context.update(provenance=prov,
                           section_times=html_table(pd.DataFrame(
                               {"section": list(seconds), "seconds": list(seconds.values())}),
                               digits={"seconds": 1}))
            html = render_page(context)
            atomic_write_text(staging / "index.html", html)
            atomic_write_json(staging / "report.json", {
                "format": REPORT_FORMAT, "version": REPORT_VERSION, "provenance": prov,
                "tables": sorted(str(p.relative_to(staging)) for p in
                                 (staging / "tables").glob("*.csv"))})
        files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
        _check_links(staging, html)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = dict(sections.seconds)
    seconds["total"] = time.perf_counter() - started
    return ReportResult(out / "index.html", [out / f for f in files], seconds, prov)


def _check_links(folder: Path, html: str) -> None:
    """Every src / href of the page that is not a URL or an anchor names a file in the folder."""
    import html as html_lib
    import re

    for link in map(html_lib.unescape, re.findall(r'(?:src|href)="([^"#][^"]*)"', html)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):
            continue
        if not (folder / link).is_file():
            raise RuntimeError(f"the report links to {link}, which was not written")


def _build_sections(models: list[ReportModel], root: Path, seed: int, settings: ReportSettings,
                    size: int, sections: _Sections, *, grid_dir: Path, cache_dir: Path,
                    recognition_cache: Path, results_cache: Path) -> dict:
    """Run every section into ``root``; returns the template's context (without provenance)."""
    from dcign_eval import traverse as tv
    from dcign_eval.metrics.paper import best_single_latent
    from dcign_eval.headline import headline, paper_result
    from dcign_eval.metrics.suite import evaluation_world, measure_models
    from dcign_eval.recognition import encode_cached

    figures, tables = root / "figures", root / "tables"
    dcign = models[0]
    labels = {rm.role: rm.label for rm in models}
    ctx: dict[str, Any] = {"title": f"DC-IGN report: {dcign.label}", "models": models,
                           "labels": labels, "settings": settings}

    def table_csv(frame: pd.DataFrame, name: str, index: bool = False) -> str:
        atomic_write_text(tables / f"{name}.csv", frame.to_csv(index=index))
        return f"tables/{name}.csv"

    # 1. model cards: config, training curve, data set
    with sections("model cards"):
        cards = model_cards(models)
        ctx["cards"] = html_table(cards, index=True)
        ctx["cards_csv"] = table_csv(cards, "model_cards", index=True)
        curves = training_curves(models)
        ctx["curve"] = None
        if len(curves):
            _save_figure(plot_training_curves(curves), figures / "training_curves.png")
            ctx["curve"] = "figures/training_curves.png"
            table_csv(curves, "training_curves")
        data = dataset_card(models)
        ctx["data"] = html_table(data, index=True)
        table_csv(data, "data_sets", index=True)
        data_path = (dcign.model.config or {}).get("data", {}).get("path", "")
        examples = monovariant_examples(data_path, n=10, size=size)
        _save_figure(plot_monovariant_examples(examples), figures / "monovariant_batches.png")
        ctx["examples"] = {"src": "figures/monovariant_batches.png", "source": examples.source}

    # 2. reconstructions of held-out faces
    with sections("reconstructions"):
        rec = reconstructions(models, held_out_faces(settings.reconstruction_faces, seed))
        _save_figure(plot_reconstructions(rec), figures / "reconstructions.png")
        rec_table = reconstruction_table(rec)
        ctx["reconstructions"] = {"src": "figures/reconstructions.png",
                                  "table": html_table(rec_table, digits={"MSE": 4}),
                                  "csv": table_csv(rec.faces, "reconstructions")}
        result = lineup(reconstructions(models, held_out_faces(settings.lineup_faces, seed)))
        _save_figure(plot_lineup(result), figures / "lineup.png")
        ranks = result.faces.assign(**{f"rank:{label}": result.ranks(label)
                                       for label in result.distances})
        ctx["lineup"] = {"faces": settings.lineup_faces, "src": "figures/lineup.png",
                         "table": html_table(lineup_table(result),
                                             digits={"MSE to own face": 4,
                                                     "nearest other (true renders)": 4}),
                         "csv": table_csv(ranks, "lineup")}

    # 3. traversal movies of each named neuron beside the true renders; re-rendering fidelity
    with sections("traversals and re-rendering fidelity"):
        spec = tv.CalibrationSpec(n_identities=settings.calibration_identities)
        calibrations = {rm.label: tv.calibrate(rm.model, spec, cache_dir=cache_dir)
                        for rm in models}
        movies = []
        for rm in models:
            for r in tv.traverse_to_files(rm.model, "all", out_dir=root / "traverse",
                                          stem=_slug(rm.role), faces=settings.traverse_faces,
                                          frames=settings.traverse_frames, fps=settings.fps,
                                          calibration=calibrations[rm.label]):
                movies.append({"model": rm.label, "role": rm.role, "neuron": r.neuron.label,
                               "latent": r.neuron.index, "note": r.neuron.note,
                               "sweep": r.describe(),
                               **{kind: str(p.relative_to(root)) for kind, p in r.paths.items()}})
        ctx["movies"] = {name: [m for m in movies if m["neuron"] == name] for name in ANGLES}
        fidelity = pd.concat([tv.rerender_fidelity(rm.model, calibrations[rm.label],
                                                   model_name=rm.label,
                                                   n_identities=settings.fidelity_identities)
                              for rm in models], ignore_index=True)
        _save_figure(tv.plot_fidelity(fidelity), figures / "rerender_fidelity.png")
        summary = (fidelity.groupby(["model", "neuron"], sort=False)
                   [["mse", "recon_mse", "ssim", "recon_ssim"]].mean().reset_index()
                   .rename(columns={"mse": "re-rendered MSE",
                                    "recon_mse": "reconstruction MSE",
                                    "ssim": "re-rendered SSIM",
                                    "recon_ssim": "reconstruction SSIM"}))
        ctx["fidelity"] = {"src": "figures/rerender_fidelity.png",
                           "table": html_table(summary, digits={"re-rendered MSE": 4,
                                                                "reconstruction MSE": 4}),
                           "csv": table_csv(fidelity, "rerender_fidelity"),
                           "identities": settings.fidelity_identities}

    # 4. the evaluation grid, encoded once per model (cached), for the scatter plots and metrics
    with sections("evaluation grid (render or load, encode)"):
        world = evaluation_world(grid_dir, size, settings.grid_identities)
        grid_images = np.asarray(world.dataset.images)
        codes = {rm.label: encode_cached(rm.model, grid_images, cache_dir=results_cache / "codes")
                 for rm in models}
        ctx["grid"] = {"path": str(world.dataset.path), "images": len(grid_images),
                       "identities": settings.grid_identities,
                       "sizes": " x ".join(str(s) for s in world.factor_sizes)}

    with sections("inferred versus true"):
        factors = world.dataset.factors
        neurons = {}
        for rm in models:
            names = dict(rm.model.latent_names)
            neurons[rm.label] = {name: names[name] if name in names else
                                 best_single_latent(codes[rm.label],
                                                    factors[name].to_numpy(float))
                                 for name in ANGLES}
        scatter = factor_scatter(codes, factors, neurons)
        summary = scatter_summary(scatter, {rm.label: bool(rm.model.latent_names)
                                            for rm in models})
        _save_figure(plot_factor_scatter(scatter, summary, settings.scatter_points, seed),
                     figures / "inferred_vs_true.png")
        ctx["scatter"] = {"src": "figures/inferred_vs_true.png",
                          "table": html_table(summary), "csv": table_csv(summary,
                                                                         "inferred_vs_true")}

    # 5. disentanglement metrics, DC-IGN against the baseline, with the time each took
    with sections("disentanglement metrics"):
        overrides = {k: v for k, v in (("num_train", settings.metrics_num_train),
                                       ("num_eval", settings.metrics_num_eval)) if v}
        key = _key({"models": [(rm.label, rm.fingerprint) for rm in models],
                    "grid": world.dataset.manifest, "seed": seed, "metrics": settings.metrics,
                    "dci": settings.dci_mode, "overrides": overrides, "version": REPORT_VERSION,
                    "package": _package_version()})
        path = results_cache / f"metrics-{key}.csv"
        cached = None
        with contextlib.suppress(OSError, ValueError, pd.errors.ParserError):
            cached = pd.read_csv(path)
            if list(cached.columns) != ["model", "metric", "value", "seconds"]:
                cached = None
        if cached is None:
            wrapped = {rm.label: _MemoEncoder(rm.model, grid_images, codes[rm.label])
                       for rm in models}
            df = measure_models(wrapped, world, seed=seed, metrics=settings.metrics,
                                dci_mode=settings.dci_mode, **overrides)
            with contextlib.suppress(OSError):
                atomic_write_text(path, df.to_csv(index=False))
        else:
            df = cached
        comparison = metrics_comparison(df)
        ctx["headline"] = headline(paper_result(df, labels["dcign"], labels.get("baseline")))
        ctx["metrics"] = {"table": html_table(comparison.drop(columns="metric"),
                                              digits={c: 2 for c in comparison.columns
                                                      if c.startswith("seconds")}),
                          "csv": table_csv(df, "metrics"), "cached": cached is not None,
                          "num_train": settings.metrics_num_train or 10_000,
                          "num_eval": settings.metrics_num_eval or 5_000,
                          "dci": _dci_label(settings.dci_mode)}

    # 6. invariant recognition
    with sections("invariant recognition"):
        ctx["recognition"] = _recognition_section(models, root, seed, settings, size,
                                                  recognition_cache, results_cache)
    return ctx


def _dci_label(mode: str) -> str:
    from dcign_eval.metrics import DCI_MODE_LABELS

    return DCI_MODE_LABELS.get(mode, mode)


def _package_version() -> str:
    from dcign_eval import __version__

    return __version__


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text))
    return keep.strip("-.") or "model"


RECOGNITION_FILES = ("summary.csv", "verification_summary.csv", "comparison.csv",
                     "recognition.csv", "verification.csv", "accuracy_vs_azimuth.png",
                     "accuracy_vs_light.png", "verification_vs_azimuth.png")


def _recognition_section(models, root: Path, seed: int, settings: ReportSettings, size: int,
                         recognition_cache: Path, results_cache: Path) -> dict:
    """Run (or take from the cache) the recognition experiment; copy its CSVs and plots into
    ``root/recognition``; return the template's tables."""
    from dcign_eval.recognition import ProbeGrid, run_recognition

    dcign = models[0]
    baseline = models[1] if len(models) > 1 else None
    grid = ProbeGrid(*settings.probe_steps, probes_per_azimuth=settings.probes_per_azimuth)
    params = {"models": [(rm.role, rm.fingerprint) for rm in models],
              "n_identities": settings.recognition_identities, "grid": grid.params(),
              "classifiers": list(settings.classifiers), "pca": [settings.pca_components,
                                                                  settings.pca_identities,
                                                                  settings.pca_images],
              "size": size, "seed": seed, "version": REPORT_VERSION,
              "package": _package_version()}
    cached_dir = results_cache / f"recognition-{_key(params)}"
    target = root / "recognition"
    cached = all((cached_dir / name).is_file() for name in RECOGNITION_FILES)
    if not cached:
        work = root / ".recognition-run"
        result = run_recognition(dcign.model, baseline.model if baseline else None, out=work,
                                 n_identities=settings.recognition_identities, size=size,
                                 grid=grid, classifiers=settings.classifiers,
                                 pca_components=settings.pca_components or None,
                                 pca_identities=settings.pca_identities,
                                 pca_images=settings.pca_images,
                                 cache_dir=recognition_cache, random_state=seed)
        # Labels, not this machine's paths: the folder may be committed.
        run = dict(result.params, files=None, models={rm.role: rm.label for rm in models})
        atomic_write_json(work / "run.json", run)
        with contextlib.suppress(OSError):
            tmp = Path(tempfile.mkdtemp(prefix=".recognition-", dir=_mkdir(results_cache)))
            os.chmod(tmp, default_mode(directory=True))
            for name in RECOGNITION_FILES + ("run.json",):
                shutil.copy2(work / name, tmp / name)
            shutil.rmtree(cached_dir, ignore_errors=True)
            os.replace(tmp, cached_dir)
        source = work
    else:
        source = cached_dir
    target.mkdir(parents=True, exist_ok=True)
    for name in RECOGNITION_FILES + ("run.json",):
        shutil.copy2(source / name, target / name)
    shutil.rmtree(root / ".recognition-run", ignore_errors=True)
    run = _read_json(target / "run.json")
    rename = {"dcign-intrinsic": f"{dcign.label}: intrinsic block",
              "dcign-full": f"{dcign.label}: full code",
              "vae": f"{baseline.label}: full code" if baseline else "vae",
              "pca": "PCA of pixels", "pixels": "pixels"}
    summary = pd.read_csv(target / "summary.csv")
    summary["feature"] = summary["feature"].map(lambda f: rename.get(f, f))
    large = float(run.get("large_pose", 60))
    verification = pd.read_csv(target / "verification_summary.csv")
    verification["feature"] = verification["feature"].map(lambda f: rename.get(f, f))
    verification = verification.rename(columns={"auc": "ROC AUC", "eer": "equal error rate",
                                                "n_same": "same pairs",
                                                "n_different": "different pairs"})
    comparison = pd.read_csv(target / "comparison.csv")
    comparison["other"] = comparison["other"].map(lambda f: rename.get(f, f))
    comparison = comparison.rename(columns={
        "other": "other feature", "accuracy_reference": "intrinsic block accuracy",
        "accuracy_other": "other accuracy", "only_reference": "only intrinsic right",
        "only_other": "only other right", "p_value": "p (McNemar)", "n": "probes"})
    comparison = comparison.drop(columns=["reference", "difference"], errors="ignore")
    return {"accuracy": html_table(recognition_accuracy(summary, "accuracy")),
            "accuracy_large": html_table(recognition_accuracy(summary, "accuracy_large_pose")),
            "large_pose": large,
            "verification": html_table(verification),
            "comparison": html_table(comparison, digits={"p (McNemar)": 3}),
            "plots": [("recognition/accuracy_vs_azimuth.png",
                       "Identification accuracy against |azimuth| (distance from the frontal "
                       "gallery view)"),
                      ("recognition/accuracy_vs_light.png",
                       "Identification accuracy against light azimuth"),
                      ("recognition/verification_vs_azimuth.png",
                       "Verification ROC AUC against |azimuth|")],
            "params": run, "cached": cached, "csv": "recognition/summary.csv"}


def recognition_accuracy(summary: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Identification accuracy wide: a row per feature set, a column per (classifier, protocol),
    from :func:`dcign_eval.recognition.summary_table`'s frame (``value``: ``accuracy`` or
    ``accuracy_large_pose``)."""
    frame = summary.assign(column=summary["classifier"] + ", " + summary["protocol"])
    wide = frame.pivot(index="feature", columns="column", values=value)
    wide = wide.loc[list(dict.fromkeys(frame["feature"])), list(dict.fromkeys(frame["column"]))]
    wide.columns.name = None
    return wide.reset_index()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
