"""Latent traversals and re-rendering: the DC-IGN's headline result as movies and as a number.

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167 (Sec. 4, Figs. 4-6): encode one face, change one latent, decode,
and the network re-renders the face under moving light or at a new pose. The original
``movie_maker.lua`` swept a latent over 65 frames between fixed bounds (+-20); here the sweep
covers the range the latent takes on real data, and named latents are calibrated in degrees.

Read bottom up:

* Calibration (:func:`calibrate` -> :class:`Calibration`): encode a small factor grid of held-out
  identities (each angle swept with the others at 0, plus a coarse full grid); for each factor fit
  a monotone (isotonic) map from true degrees to the value of its latent, increasing or decreasing
  by the sign of the Spearman correlation, and its inverse; the percentile range of every latent.
  The codes come through the one cache of encoded codes (:mod:`dcign_eval.cache`).
* Neurons (:func:`parse_neuron`, :func:`resolve_neuron`): ``azimuth``, ``elevation``, ``light``,
  an integer latent index, or ``all``. A baseline without named latents gets, for a factor name,
  the latent most correlated with that factor on the grid, and is told so.
* Sweeps (:func:`sweep_values`, :func:`traverse` -> :class:`Traversal`): decoded frames, and the
  true render at the calibrated angle of every frame when the source is a face-world face.
  :func:`angle_sweep` puts several models' sweeps on the same angles, frame by frame.
* Drawing (:func:`face_frames`, :func:`movie_frames`, :func:`contact_sheet`) and writing
  (:func:`write_gif`, :func:`write_mp4`, :func:`write_frames`: one PNG a frame);
  :func:`traverse_to_files` does the whole ``dcign-eval traverse`` job.
* Re-rendering fidelity (:func:`rerender_fidelity` -> a tidy frame, :func:`plot_fidelity`): for
  held-out faces, set the named latent to the calibrated value of a target angle, decode and
  compare with the true render (MSE, SSIM), beside the reconstruction error of that true render --
  the "learned 3D rendering engine" claim as a number; :func:`fidelity_summary` averages it per
  model and neuron with a bootstrap interval over the held-out identities.

A model is any model of the protocol (:mod:`dcign_eval.protocol`) that can decode: ``encode``,
``decode``, ``image_size`` and, optionally, ``latent_names``; :func:`dcign_eval.load_model`'s
result, or any object with those members.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression

from dcign_eval.cache import ProgressFactory, encode_cached
from dcign_eval.imaging import mse, ssim
from dcign_eval.intervals import RESAMPLES, paired_means
from dcign_eval.protocol import as_model
from trainer.errors import DcignError
from trainer.faces.render import FACTOR_RANGES, render_faces
from trainer.faces.world import TEST_IDENTITY_OFFSET, factor_values
from trainer.io import atomic_write_bytes, atomic_write_text

NAMED = tuple(FACTOR_RANGES)  # ("azimuth", "elevation", "light")
CALIBRATION_FORMAT = "dcign-traverse-calibration"
CALIBRATION_VERSION = 1
# Held-out identities: calibration uses the first few, fidelity starts here, so the faces whose
# re-rendering is scored were never used to calibrate.
FIDELITY_FIRST_IDENTITY = TEST_IDENTITY_OFFSET + 100
MAX_FRAMES = 1000
BACKGROUND = 40  # grey of gaps and margins, distinct from the renders' black background


# -- calibration -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationSpec:
    """The factor grid a calibration encodes (held-out identities only).

    Each angle is swept over its whole range in ``*_step`` degrees with the other two at 0, for
    ``n_identities`` identities; the latent ranges also see a coarse full grid (``range_steps``
    for azimuth, elevation, light). ``percentiles`` bound the default sweep of each latent.
    """

    n_identities: int = 4
    azimuth_step: float = 10.0
    elevation_step: float = 5.0
    light_step: float = 10.0
    range_steps: tuple = (30.0, 15.0, 40.0)
    percentiles: tuple = (1.0, 99.0)

    def __post_init__(self):
        if not 1 <= self.n_identities <= FIDELITY_FIRST_IDENTITY - TEST_IDENTITY_OFFSET:
            raise DcignError(f"calibration identities must be in [1, "
                             f"{FIDELITY_FIRST_IDENTITY - TEST_IDENTITY_OFFSET}], "
                             f"got {self.n_identities}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise DcignError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {lo}, {hi}")
        if len(self.range_steps) != 3:
            raise DcignError(f"range_steps needs 3 steps (azimuth, elevation, light), "
                             f"got {self.range_steps}")

    def steps(self) -> dict[str, float]:
        return {"azimuth": self.azimuth_step, "elevation": self.elevation_step,
                "light": self.light_step}

    def params(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def calibration_factors(spec: CalibrationSpec) -> pd.DataFrame:
    """The calibration images' factors: identity, azimuth, elevation, light and ``sweep`` (the
    factor a row sweeps, or "grid" for the coarse full grid)."""
    ids = np.arange(TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET + spec.n_identities)
    frames = []
    for name, step in spec.steps().items():
        values = factor_values(name, step)
        cols = {k: np.zeros(len(ids) * len(values)) for k in NAMED}
        cols[name] = np.tile(values, len(ids))
        frames.append(pd.DataFrame({"identity": np.repeat(ids, len(values)), **cols,
                                    "sweep": name}))
    axes = [factor_values(name, step) for name, step in zip(NAMED, spec.range_steps)]
    mesh = np.meshgrid(ids, *axes, indexing="ij")
    frames.append(pd.DataFrame({"identity": mesh[0].ravel(),
                                **{k: m.ravel().astype(float) for k, m in zip(NAMED, mesh[1:])},
                                "sweep": "grid"}))
    return pd.concat(frames, ignore_index=True)


@dataclass
class FactorMap:
    """A monotone map between a factor's true value (degrees) and one latent's value.

    ``degrees`` are the grid values (increasing), ``values`` the isotonic fit of the latent at
    them (non-decreasing if ``increasing``, else non-increasing).
    """

    factor: str
    latent: int
    degrees: np.ndarray
    values: np.ndarray
    increasing: bool
    spearman: float
    named: bool  # True: the model names this latent; False: picked as the most correlated

    def to_latent(self, degrees) -> np.ndarray:
        """Latent values for angles in degrees (clamped to the calibrated range)."""
        return np.interp(np.asarray(degrees, np.float64), self.degrees, self.values)

    def to_degrees(self, values) -> np.ndarray:
        """Angles in degrees for latent values: the inverse map (ties take their mean angle)."""
        uniq, inverse = np.unique(self.values, return_inverse=True)
        degs = np.bincount(inverse, weights=self.degrees) / np.bincount(inverse)
        return np.interp(np.asarray(values, np.float64), uniq, degs)

    @property
    def span(self) -> float:
        return float(abs(self.values[-1] - self.values[0]))

    @property
    def flat(self) -> bool:
        """True when the latent does not change with the factor on the grid."""
        return self.span <= 1e-6 * (1.0 + float(np.abs(self.values).max()))

    def to_dict(self) -> dict:
        return {"factor": self.factor, "latent": self.latent, "degrees": self.degrees.tolist(),
                "values": self.values.tolist(), "increasing": self.increasing,
                "spearman": self.spearman, "named": self.named}

    @classmethod
    def from_dict(cls, d: dict) -> "FactorMap":
        return cls(d["factor"], int(d["latent"]), np.asarray(d["degrees"], np.float64),
                   np.asarray(d["values"], np.float64), bool(d["increasing"]),
                   float(d["spearman"]), bool(d["named"]))


@dataclass
class Calibration:
    """What a sweep needs to know about a model's latents (see :func:`calibrate`).

    Attributes:
        latent_dim: number of latents D.
        low, high: (D,) percentiles of each latent's encoder mean over the calibration grid.
        spearman: factor -> (D,) Spearman correlation of each latent with the factor on its sweep.
        factors: factor -> the :class:`FactorMap` of the latent that stands for it (the named
            latent, or for a baseline the most correlated one).
        spec: the grid it was fitted on.
    """

    latent_dim: int
    low: np.ndarray
    high: np.ndarray
    spearman: dict[str, np.ndarray]
    factors: dict[str, FactorMap]
    spec: CalibrationSpec = field(default_factory=CalibrationSpec)

    def to_dict(self) -> dict:
        return {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION,
                "spec": self.spec.params(),
                "latent_dim": self.latent_dim, "low": self.low.tolist(),
                "high": self.high.tolist(),
                "spearman": {k: v.tolist() for k, v in self.spearman.items()},
                "factors": {k: m.to_dict() for k, m in self.factors.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if d.get("format") != CALIBRATION_FORMAT or d.get("version") != CALIBRATION_VERSION:
            raise ValueError("not a calibration of this version")
        spec = d["spec"]
        spec = CalibrationSpec(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in spec.items()})
        cal = cls(int(d["latent_dim"]), np.asarray(d["low"], np.float64),
                  np.asarray(d["high"], np.float64),
                  {k: np.asarray(v, np.float64) for k, v in d["spearman"].items()},
                  {k: FactorMap.from_dict(m) for k, m in d["factors"].items()},
                  spec)
        if len(cal.low) != cal.latent_dim or len(cal.high) != cal.latent_dim \
                or set(cal.factors) != set(NAMED):
            raise ValueError("inconsistent calibration")
        return cal


def _spearman(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(D,) Spearman rank correlation of x (N,) with each column of codes (N, D); 0 where a
    column (or x) is constant."""
    rx = rankdata(x)
    rc = rankdata(codes, axis=0)
    rx = rx - rx.mean()
    rc = rc - rc.mean(axis=0)
    denom = np.sqrt((rx ** 2).sum() * (rc ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx @ rc) / denom
    return np.where(denom > 0, rho, 0.0)


def _fit_monotone(degrees: np.ndarray, values: np.ndarray, increasing: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic fit of values against degrees; returns (grid degrees, fitted values there)."""
    iso = IsotonicRegression(increasing=increasing, out_of_bounds="clip")
    iso.fit(degrees, values)
    knots = np.unique(degrees)
    return knots, iso.predict(knots).astype(np.float64)


def _compute_calibration(codes: np.ndarray, factors: pd.DataFrame, latent_names: dict,
                         spec: CalibrationSpec) -> Calibration:
    """The arithmetic of :func:`calibrate` on encoder means ``codes`` (N, D) of the images whose
    factors (with their ``sweep`` column) are ``factors``."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) != len(factors):
        raise DcignError(f"codes must be (N, D) with N = {len(factors)}, got {codes.shape}")
    if not np.isfinite(codes).all():
        raise DcignError("the encoder returned NaN or inf on the calibration grid")
    low, high = np.percentile(codes, spec.percentiles, axis=0)
    spearman, maps = {}, {}
    for name in NAMED:
        rows = (factors["sweep"] == name).to_numpy()
        x, c = factors.loc[rows, name].to_numpy(np.float64), codes[rows]
        rho = _spearman(x, c)
        spearman[name] = rho
        named = name in latent_names
        k = int(latent_names[name]) if named else int(np.argmax(np.abs(rho)))
        increasing = bool(rho[k] >= 0)
        knots, fitted = _fit_monotone(x, c[:, k], increasing)
        maps[name] = FactorMap(name, k, knots, fitted, increasing, float(rho[k]), named)
    return Calibration(codes.shape[1], low, high, spearman, maps, spec)


def _progress(enabled: bool, total: int, description: str):
    if not enabled:
        return contextlib.nullcontext(lambda n: None)
    from dcign_eval.console import progress_bar
    return progress_bar(total, description)


def _progress_factory(enabled: bool) -> ProgressFactory | None:
    if not enabled:
        return None
    from dcign_eval.console import progress_bar
    return progress_bar


def calibrate(model, spec: CalibrationSpec | None = None, *, cache: bool = True,
              cache_dir: str | os.PathLike | None = None, progress: bool = False) -> Calibration:
    """Calibrate a model's latents against the face world's true factors.

    Args:
        model: a model of the protocol (see the module docstring).
        spec: the calibration grid (default :class:`CalibrationSpec`: 4 held-out identities).
        cache: encode through the one cache of codes (:mod:`dcign_eval.cache`), keyed by the
            model's fingerprint and the images; False encodes afresh.
        cache_dir: the cache's root (default ``$DCIGN_EVAL_CACHE``).
        progress: show a progress bar while encoding.
    Returns:
        a :class:`Calibration`.
    """
    model = as_model(model)
    spec = spec or CalibrationSpec()
    factors = calibration_factors(spec)
    images = render_faces(factors["identity"].to_numpy(), factors["azimuth"].to_numpy(),
                          factors["elevation"].to_numpy(), factors["light"].to_numpy(),
                          size=int(model.image_size))
    codes = encode_cached(model, images, cache_dir=cache_dir, cache=cache,
                          progress=_progress_factory(progress),
                          description="calibrating latents")
    return _compute_calibration(codes.astype(np.float64), factors, dict(model.latent_names),
                                spec)


# -- neurons ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Neuron:
    """A latent to sweep. ``factor``: the face-world factor it stands for (None for an anonymous
    latent); ``label``: how files and captions name it; ``note``: how it was chosen."""

    index: int
    factor: str | None
    label: str
    note: str


def parse_neuron(text: str | int) -> list[str | int]:
    """``azimuth``, ``elevation``, ``light``, ``all`` (the three) or an integer latent index."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return [int(text)]
    s = str(text).strip().lower()
    if s == "all":
        return list(NAMED)
    if s in NAMED:
        return [s]
    try:
        return [int(s)]
    except ValueError:
        raise DcignError(f"unknown neuron {str(text)!r}; choose azimuth, elevation, light, all "
                         f"or an integer latent index") from None


def latent_dim_of(model) -> int:
    """The model's number of latents (its ``latent_dim``, else the width of one encoding)."""
    dim = getattr(model, "latent_dim", None)
    if isinstance(dim, (int, np.integer)):
        return int(dim)
    size = int(model.image_size)
    return int(np.asarray(model.encode(np.zeros((1, size, size), np.uint8))).shape[1])


def check_index(index: int, latent_dim: int) -> None:
    if not 0 <= index < latent_dim:
        raise DcignError(f"latent index {index} is out of range; this model has {latent_dim} "
                         f"latents (0..{latent_dim - 1})")


def resolve_neuron(model, which: str | int, calibration: Calibration) -> list[Neuron]:
    """The :class:`Neuron` s that ``which`` (see :func:`parse_neuron`) means for ``model``.

    A factor name is the model's named latent; a model without one (an entangled baseline) gets
    the latent most correlated (|Spearman|) with the factor on the calibration grid.
    """
    names = {k: int(v) for k, v in dict(model.latent_names).items()}
    out = []
    for item in parse_neuron(which):
        if isinstance(item, int):
            check_index(item, calibration.latent_dim)
            factor = next((k for k, v in names.items() if v == item and k in NAMED), None)
            label = factor or f"latent-{item}"
            note = (f"latent {item} is the model's {factor} neuron" if factor
                    else f"latent {item} (no factor attached: no true render beside it)")
            out.append(Neuron(item, factor, label, note))
            continue
        fmap = calibration.factors[item]
        rho = f"Spearman {fmap.spearman:+.2f} with {item} on the calibration grid"
        if item in names:
            note = f"{item} is latent {names[item]} ({rho})"
            out.append(Neuron(names[item], item, item, note))
        else:
            note = (f"the model has no {item} neuron; using latent {fmap.latent}, the most "
                    f"correlated with {item} ({rho})")
            out.append(Neuron(fmap.latent, item, item, note))
    return out


# -- sweeps ----------------------------------------------------------------------------------------

def check_sweep_args(frames: int, value_range=None, degree_range=None, factors=()) -> None:
    """Validate frame count and ranges before any heavy work; ``factors``: the swept factors."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) \
            or not 2 <= frames <= MAX_FRAMES:
        raise DcignError(f"frames must be an integer in [2, {MAX_FRAMES}], got {frames!r}")
    if value_range is not None and degree_range is not None:
        raise DcignError("give a range in latent units (--range) or in degrees (--from/--to), "
                         "not both")
    for name, rng in (("range", value_range), ("degree range", degree_range)):
        if rng is None:
            continue
        if len(rng) != 2 or not all(np.isfinite(v) for v in rng) or rng[0] == rng[1]:
            raise DcignError(f"the {name} needs two different finite ends, got {tuple(rng)}")
    if degree_range is not None:
        for factor in factors:
            if factor is None:
                raise DcignError("a range in degrees (--from/--to) needs a named neuron "
                                 "(azimuth, elevation or light)")
            lo, hi = FACTOR_RANGES[factor]
            for v in degree_range:
                if not lo <= v <= hi:
                    raise DcignError(f"{factor} {v:g} is out of range [{lo:g}, {hi:g}] degrees")


def sweep_values(calibration: Calibration, neuron: Neuron, frames: int = 32,
                 value_range: Sequence[float] | None = None,
                 degree_range: Sequence[float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The latent values of a sweep and, for a neuron tied to a factor, their angles.

    Default: the latent's percentile range on the calibration grid (a dead latent, constant on
    the grid, gets the prior's -2..2). ``value_range``: (lo, hi) in latent units.
    ``degree_range``: (from, to) in degrees, mapped through the monotone calibration.

    Returns:
        (values (frames,), degrees (frames,) or None).
    """
    check_sweep_args(frames, value_range, degree_range, [neuron.factor])
    fmap = calibration.factors.get(neuron.factor) if neuron.factor else None
    if fmap is not None and fmap.latent != neuron.index:
        fmap = None
    if degree_range is not None:
        if fmap is None or fmap.flat:
            raise DcignError(f"latent {neuron.index} does not change with {neuron.factor} on the "
                             f"calibration grid, so degrees cannot be mapped to it; "
                             f"use --range in latent units")
        degrees = np.linspace(degree_range[0], degree_range[1], frames)
        return fmap.to_latent(degrees), degrees
    if value_range is not None:
        lo, hi = value_range
    else:
        lo, hi = calibration.low[neuron.index], calibration.high[neuron.index]
        if not hi - lo > 1e-6:
            lo, hi = -2.0, 2.0
    values = np.linspace(lo, hi, frames)
    return values, (fmap.to_degrees(values) if fmap is not None else None)



def angle_sweep(calibration: Calibration, factor: str, frames: int = 32
                ) -> tuple[np.ndarray, np.ndarray]:
    """A sweep over the factor's whole range in evenly spaced angles, mapped to the latent that
    stands for it through the monotone calibration: sweeps of several models made this way
    stand on the same angle frame by frame, so their frames line up.

    Unlike :func:`sweep_values` with a degree range, a latent that does not change with the
    factor on the calibration grid is not refused: it stays at its one calibrated value, and
    its frames do not move.

    Returns:
        (values (frames,), degrees (frames,)).
    """
    if factor not in NAMED:
        raise DcignError(f"unknown factor {factor!r}; choose from {', '.join(NAMED)}")
    check_sweep_args(frames)
    degrees = np.linspace(*FACTOR_RANGES[factor], frames)
    return calibration.factors[factor].to_latent(degrees), degrees

@dataclass
class Traversal:
    """One sweep of one latent for N source faces over F frames.

    Attributes:
        neuron: the swept latent.
        values: (F,) its values. degrees: (F,) the calibrated angle of each value, or None.
        decoded: (N, F, S, S) float32 in [0, 1].
        truth: (N, F, S, S) float32 true renders at ``degrees``, or None (no face-world source
            or no factor attached).
        sources: the source faces' factors (identity, azimuth, elevation, light) or None.
    """

    neuron: Neuron
    values: np.ndarray
    degrees: np.ndarray | None
    decoded: np.ndarray
    truth: np.ndarray | None = None
    sources: pd.DataFrame | None = None


def check_images(images, size: int) -> np.ndarray:
    """(N, S, S) uint8 or [0, 1] float images for a model taking S x S; DcignError otherwise."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or len(images) == 0:
        raise DcignError(f"source images must be (N, H, W) with N >= 1, got shape {images.shape}")
    if images.shape[1:] != (size, size):
        raise DcignError(f"this model takes {size}x{size} images, got "
                         f"{images.shape[1]}x{images.shape[2]}")
    if images.dtype != np.uint8:
        if images.dtype.kind != "f":
            raise DcignError(f"images must be uint8 or float, got {images.dtype}")
        if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise DcignError("float images must lie in [0, 1]")
    return images


def face_sources(identity: int = TEST_IDENTITY_OFFSET, azimuth: float = 0.0,
                 elevation: float = 0.0, light: float = 0.0, n_faces: int = 1) -> pd.DataFrame:
    """Factors of ``n_faces`` face-world faces: identities ``identity .. identity + n - 1`` at
    one pose and light."""
    if isinstance(n_faces, bool) or not isinstance(n_faces, (int, np.integer)) \
            or not 1 <= n_faces <= 64:
        raise DcignError(f"the number of faces must be in [1, 64], got {n_faces!r}")
    if isinstance(identity, bool) or not isinstance(identity, (int, np.integer)) or identity < 0:
        raise DcignError(f"identity must be an integer >= 0, got {identity!r}")
    for name, value in (("azimuth", azimuth), ("elevation", elevation), ("light", light)):
        lo, hi = FACTOR_RANGES[name]
        if not lo <= value <= hi:
            raise DcignError(f"{name} {value:g} is out of range [{lo:g}, {hi:g}] degrees")
    return pd.DataFrame({"identity": np.arange(identity, identity + n_faces, dtype=np.int64),
                         "azimuth": float(azimuth), "elevation": float(elevation),
                         "light": float(light)})


def render_sources(sources: pd.DataFrame, size: int, factor: str | None = None,
                   degrees=None) -> np.ndarray:
    """Renders of the source faces, (N, S, S) uint8; with ``factor`` and ``degrees`` (F,),
    (N, F, S, S) with that factor replaced by each angle (clipped to its range)."""
    ids = sources["identity"].to_numpy()
    cols = {k: sources[k].to_numpy(np.float64) for k in NAMED}
    if factor is None:
        return render_faces(ids, cols["azimuth"], cols["elevation"], cols["light"], size=size)
    degrees = np.clip(np.asarray(degrees, np.float64), *FACTOR_RANGES[factor])
    n, f = len(ids), len(degrees)
    cols = {k: np.repeat(v, f) for k, v in cols.items()}
    cols[factor] = np.tile(degrees, n)
    images = render_faces(np.repeat(ids, f), cols["azimuth"], cols["elevation"], cols["light"],
                          size=size)
    return images.reshape(n, f, size, size)


def traverse(model, images, neuron: Neuron, values, degrees=None,
             sources: pd.DataFrame | None = None) -> Traversal:
    """Encode source images, set latent ``neuron.index`` to each of ``values``, decode.

    Args:
        model: encode / decode / image_size.
        images: (N, S, S) sources (uint8, or floats in [0, 1]).
        neuron: the latent to sweep (:func:`resolve_neuron`).
        values: (F,) latent values; degrees: (F,) their calibrated angles, or None.
        sources: the images' face-world factors; with ``degrees`` and a factor-tied neuron, the
            true renders at those angles come along for the side-by-side.
    Returns:
        a :class:`Traversal`.
    """
    size = int(model.image_size)
    images = check_images(images, size)
    values = np.asarray(values, np.float64).ravel()
    mu = np.asarray(model.encode(images), np.float64)
    check_index(neuron.index, mu.shape[1])
    n, f = len(images), len(values)
    z = np.repeat(mu[:, None, :], f, axis=1)
    z[:, :, neuron.index] = values[None, :]
    decoded = np.asarray(model.decode(z.reshape(n * f, -1).astype(np.float32)), np.float32)
    decoded = decoded.reshape(n, f, size, size)
    truth = None
    if sources is not None and degrees is not None and neuron.factor is not None:
        if len(sources) != n:
            raise DcignError(f"{len(sources)} source factor rows for {n} images")
        truth = render_sources(sources, size, neuron.factor, degrees).astype(np.float32) / 255
    return Traversal(neuron, values, None if degrees is None else np.asarray(degrees, float),
                     decoded, truth, sources)


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """A PNG/JPEG (any format Pillow reads) as a (size, size) uint8 grayscale face: converted to
    grayscale (16-bit scaled to 8, transparency composited on black, as the renders' background),
    centre-cropped to a square, resized."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            gray = to_grayscale(ImageOps.exif_transpose(im), path)
    except FileNotFoundError:
        raise DcignError(f"no image file at {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as e:
        why = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DcignError(f"cannot read {path} as an image ({why})") from None
    w, h = gray.size
    if min(w, h) < 8:
        raise DcignError(f"{path} is {w}x{h} pixels; the model takes {size}x{size} faces and "
                         f"an image needs at least 8 pixels a side to be resized to that")
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    gray = gray.crop((left, top, left + side, top + side))
    if side != size:
        gray = gray.resize((size, size), Image.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def to_grayscale(im, path) -> "PIL.Image.Image":
    """A Pillow image of any mode as 8-bit grayscale ("L").

    Pillow's own ``convert("L")`` clips 16- and 32-bit pixels to 255 instead of rescaling them;
    here 16-bit values are scaled to 8 bits, float images in [0, 1] or [0, 255] are scaled to
    [0, 255], and transparent pixels become black, the renders' background.
    """
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(im, dtype=np.float64)
        if not np.isfinite(values).all() or values.size == 0:
            raise DcignError(f"cannot read {path} as an image (non-finite {im.mode} pixels)")
        top = values.max()
        if im.mode == "F" and values.min() >= 0 and top <= 1:
            scale = 255.0
        elif im.mode == "F" and values.min() >= 0 and top <= 255:
            scale = 1.0
        elif values.min() >= 0 and top <= 65535 and im.mode != "F":
            scale = 255.0 / 65535.0
        else:
            raise DcignError(f"cannot read {path} as an image ({im.mode} pixels from "
                             f"{values.min():g} to {top:g}, outside the 8- or 16-bit range)")
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":  # a palette may carry transparency
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if im.mode not in ("L", "1", "RGB"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return im.convert("L")


# -- drawing ---------------------------------------------------------------------------------------

def default_scale(size: int, target: int = 192) -> int:
    """Integer upscaling so a cell is about ``target`` pixels (nearest neighbour, for viewing)."""
    return max(1, int(round(target / size)))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, np.float64) * 255 + 0.5, 0, 255).astype(np.uint8)


def _upscale(img: np.ndarray, scale: int) -> np.ndarray:
    return img if scale == 1 else img.repeat(scale, axis=0).repeat(scale, axis=1)


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _text_band(width: int, lines: Sequence[str], font_size: int) -> np.ndarray:
    from PIL import Image, ImageDraw
    line_h = font_size + 4
    band = Image.new("L", (width, line_h * len(lines) + 4), BACKGROUND)
    draw = ImageDraw.Draw(band)
    font = _font(font_size)
    for i, line in enumerate(lines):
        draw.text((4, 2 + i * line_h), line, fill=235, font=font)
    return np.asarray(band)


def _pad_to(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    out = np.full((H, W), BACKGROUND, np.uint8)
    out[:h, :w] = img
    return out


def _grid(cells: list[np.ndarray], columns: int, gap: int) -> np.ndarray:
    h, w = cells[0].shape
    rows = -(-len(cells) // columns)
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap), BACKGROUND,
                  np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = cell
    return out


def _caption(t: Traversal, f: int) -> str:
    text = f"{t.neuron.label}: z{t.neuron.index} = {t.values[f]:+.2f}"
    if t.degrees is not None:
        text += f"  (~ {t.degrees[f]:+.0f} deg)"
    return text


def face_frames(traversal: Traversal, scale: int = 1, columns: int | None = None) -> np.ndarray:
    """The faces of every frame and nothing else: (F, H, W) uint8.

    Each frame is every source face (a grid of ``columns``, default about square), the decoded
    face beside its true render when there is one, upscaled ``scale`` times (nearest
    neighbour). :func:`movie_frames` adds a caption and a slider bar; the report's slider shows
    them as they are (``scale`` 1: the page upscales, so the files stay small).
    """
    t = traversal
    n, f, size = t.decoded.shape[:3]
    columns = columns or int(math.ceil(math.sqrt(n)))
    gap = max(2, scale * 2)
    frames = []
    for k in range(f):
        cells = []
        for i in range(n):
            cell = _to_uint8(t.decoded[i, k])
            if t.truth is not None:
                sep = np.full((size, max(1, gap // scale)), BACKGROUND, np.uint8)
                cell = np.concatenate([cell, sep, _to_uint8(t.truth[i, k])], axis=1)
            cells.append(_upscale(cell, scale))
        frames.append(_grid(cells, min(columns, n), gap))
    return np.stack(frames)


def movie_frames(traversal: Traversal, scale: int | None = None,
                 columns: int | None = None) -> np.ndarray:
    """The movie: (F, H, W) uint8 frames, H and W multiples of 16 (what video codecs want).

    Each frame is :func:`face_frames`' (the faces, decoded beside true render), under a caption
    with the latent value (and angle) and above a slider marking the frame's place in the sweep.
    """
    t = traversal
    size = t.decoded.shape[2]
    scale = scale or default_scale(size)
    font_size = 12 if scale * size < 150 else 16
    lines = [""] + (["left: decoded   right: true render"] if t.truth is not None else [])
    bodies = face_frames(t, scale, columns)
    f, width = len(bodies), bodies.shape[2]
    frames = []
    for k, body in enumerate(bodies):
        lines[0] = _caption(t, k)
        header = _text_band(width, lines, font_size)
        slider = np.full((6, width), BACKGROUND, np.uint8)
        slider[2:4, :] = 90
        slider[1:5, :int(round((width - 1) * k / max(f - 1, 1))) + 1] = 220
        frames.append(_pad_to(np.concatenate([header, body, slider], axis=0), 16))
    return np.stack(frames)


def contact_sheet(traversal: Traversal, columns: int = 9, scale: int | None = None) -> np.ndarray:
    """A still of the sweep, like the paper's figures: (H, W) uint8.

    Columns: ``columns`` frames evenly spaced along the sweep, headed by their latent value (and
    angle). Rows: for each face, the decoded faces, then the true renders when there are any.
    """
    t = traversal
    n, f, size = t.decoded.shape[:3]
    scale = scale or default_scale(size, 128)
    picks = np.unique(np.round(np.linspace(0, f - 1, min(columns, f))).astype(int))
    gap = max(2, scale * 2)
    cell = size * scale
    label_w = 64
    rows, labels = [], []
    for i in range(n):
        rows.append([_upscale(_to_uint8(t.decoded[i, k]), scale) for k in picks])
        labels.append("decoded" if t.truth is not None else f"face {i + 1}")
        if t.truth is not None:
            rows.append([_upscale(_to_uint8(t.truth[i, k]), scale) for k in picks])
            labels.append("true")
    body = _grid([c for row in rows for c in row], len(picks), gap)
    font_size = 11
    heads = []
    for k in picks:
        text = [f"z{t.neuron.index}={t.values[k]:+.2f}"]
        if t.degrees is not None:
            text.append(f"{t.degrees[k]:+.0f} deg")
        heads.append(_text_band(cell, text, font_size)[:, :cell])
    head_h = max(h.shape[0] for h in heads)
    heads = [np.pad(h, ((0, head_h - h.shape[0]), (0, 0)), constant_values=BACKGROUND)
             for h in heads]
    header = _grid(heads, len(picks), gap)
    left = np.full((head_h + gap + body.shape[0], label_w), BACKGROUND, np.uint8)
    for r, text in enumerate(labels):
        band = _text_band(label_w, [text], font_size)
        y = head_h + gap + r * (cell + gap) + (cell - band.shape[0]) // 2
        left[y:y + band.shape[0]] = band[:, :label_w]
    right = np.concatenate([header, np.full((gap, body.shape[1]), BACKGROUND, np.uint8), body])
    title = _text_band(label_w + right.shape[1],
                       [f"{t.neuron.label} (latent {t.neuron.index}): {len(t.values)} frames, "
                        f"{t.values[0]:+.2f} .. {t.values[-1]:+.2f}"], 12)
    return np.concatenate([title, np.concatenate([left, right], axis=1)], axis=0)


# -- writing ---------------------------------------------------------------------------------------

def _check_fps(fps: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.floating)) \
            or not 0 < fps <= 60:
        raise DcignError(f"fps must be in (0, 60] frames per second, got {fps!r}")


def _check_frames(frames: np.ndarray, fps: float) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8 or len(frames) < 1:
        raise DcignError(f"frames must be a (F, H, W) uint8 array, got {frames.dtype} "
                         f"{frames.shape}")
    _check_fps(fps)
    return frames


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 12.0) -> Path:
    """An endlessly looping GIF, written atomically."""
    import imageio.v3 as iio

    frames = _check_frames(frames, fps)
    path = Path(path)
    buf = io.BytesIO()
    iio.imwrite(buf, frames, extension=".gif", is_batch=True, duration=1000.0 / fps, loop=0)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise DcignError(f"cannot write {path}: {e.strerror}") from None
    return path


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 12.0) -> Path:
    """An H.264 MP4 (yuv420p, plays everywhere) through imageio-ffmpeg, written atomically.

    Frame sizes must be multiples of 16 (:func:`movie_frames` pads them) so ffmpeg resizes
    nothing.
    """
    import imageio.v2 as iio2

    frames = _check_frames(frames, fps)
    if frames.shape[1] % 16 or frames.shape[2] % 16:
        raise DcignError(f"MP4 frames must be multiples of 16 pixels, got "
                         f"{frames.shape[2]}x{frames.shape[1]}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise DcignError(f"cannot write {path}: {e.strerror}") from None
    try:
        writer = iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                 pixelformat="yuv420p", macro_block_size=16, quality=8,
                                 ffmpeg_log_level="error")
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DcignError(f"cannot write the MP4 {path} ({why})") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class TraversalFiles:
    """What :func:`traverse_to_files` made for one neuron."""

    neuron: Neuron
    values: np.ndarray
    degrees: np.ndarray | None
    paths: dict[str, Path]  # "gif", "mp4", "png"

    def describe(self) -> str:
        text = (f"{self.neuron.label} (latent {self.neuron.index}): {len(self.values)} frames, "
                f"z {self.values[0]:+.2f} .. {self.values[-1]:+.2f}")
        if self.degrees is not None:
            text += f" (~ {self.degrees[0]:+.0f} .. {self.degrees[-1]:+.0f} deg)"
        return text


def write_traversal(traversal: Traversal, out_dir: str | os.PathLike, stem: str,
                    fps: float = 12.0) -> dict[str, Path]:
    """GIF, MP4 and PNG contact sheet of a traversal: ``out_dir/stem.{gif,mp4,png}``."""
    from dcign_eval.console import write_png

    out_dir = Path(out_dir)
    frames = movie_frames(traversal)
    return {"gif": write_gif(out_dir / f"{stem}.gif", frames, fps),
            "mp4": write_mp4(out_dir / f"{stem}.mp4", frames, fps),
            "png": write_png(out_dir / f"{stem}.png", contact_sheet(traversal))}



def write_frames(out_dir: str | os.PathLike, frames: np.ndarray) -> list[Path]:
    """Every frame as its own PNG, ``out_dir/000.png``, ``001.png``, ... (each written
    atomically), for a page that shows one frame at a time. Returns the paths in frame order."""
    from dcign_eval.console import write_png

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8 or len(frames) < 1:
        raise DcignError(f"frames must be a (F, H, W) uint8 array, got {frames.dtype} "
                         f"{frames.shape}")
    out_dir = Path(out_dir)
    digits = max(3, len(str(len(frames) - 1)))
    return [write_png(out_dir / f"{k:0{digits}d}.png", frame) for k, frame in enumerate(frames)]

def model_stem(name: str) -> str:
    """A model's name as a file name: letters, digits, ``-``, ``_`` and ``.`` kept."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name))
    return keep.strip("-.") or "model"


def traverse_to_files(model, neuron: str | int = "light", *, out_dir: str | os.PathLike,
                      stem: str = "model", image: str | os.PathLike | None = None,
                      identity: int = TEST_IDENTITY_OFFSET, azimuth: float = 0.0,
                      elevation: float = 0.0, light: float = 0.0, faces: int = 1,
                      frames: int = 32, fps: float = 12.0,
                      value_range: Sequence[float] | None = None,
                      degree_range: Sequence[float] | None = None,
                      calibration: Calibration | None = None,
                      progress: bool = False) -> list[TraversalFiles]:
    """The ``dcign-eval traverse`` job: one GIF, MP4 and contact sheet per neuron.

    Args:
        model: a model of the protocol that can decode (or a spec for :func:`load_model`).
        neuron: see :func:`parse_neuron`.
        out_dir, stem: files are ``out_dir/{stem}-{neuron label}.{gif,mp4,png}``.
        image: a picture file to use as the source instead of face-world faces.
        identity, azimuth, elevation, light, faces: the face-world source faces (identities
            ``identity ..  identity + faces - 1``), each shown beside its true render.
        frames, fps: movie length and speed.
        value_range: (lo, hi) in latent units; degree_range: (from, to) degrees (named neurons).
        calibration: default :func:`calibrate` (cached).
        progress: progress bars on stderr.
    """
    model = as_model(model)
    if not model.has_decode:
        raise DcignError(f"{model.name} has no decode; a traversal decodes each frame")
    wanted = parse_neuron(neuron)
    _check_fps(fps)
    names = {int(v): k for k, v in dict(model.latent_names).items() if k in NAMED}
    check_sweep_args(frames, value_range, degree_range,
                     [w if isinstance(w, str) else names.get(w) for w in wanted])
    size = int(model.image_size)
    if image is not None:
        if faces != 1:
            raise DcignError("--faces needs face-world faces; an --image source is one face")
        sources, images = None, load_image(image, size)[None]
    else:
        sources = face_sources(identity, azimuth, elevation, light, faces)
        images = render_sources(sources, size)
    dim = latent_dim_of(model)
    for w in wanted:
        if isinstance(w, int):
            check_index(w, dim)
    calibration = calibration or calibrate(model, progress=progress)
    results = []
    for nrn in resolve_neuron(model, neuron, calibration):
        values, degrees = sweep_values(calibration, nrn, frames, value_range, degree_range)
        t = traverse(model, images, nrn, values, degrees, sources)
        paths = write_traversal(t, out_dir, f"{stem}-{nrn.label}", fps)
        results.append(TraversalFiles(nrn, values, degrees, paths))
    return results


# -- re-rendering fidelity -------------------------------------------------------------------------

FIDELITY_COLUMNS = ("model", "neuron", "latent", "source", "target", "mse", "ssim", "recon_mse",
                    "recon_ssim", "n")
#: The scores of a fidelity frame, each averaged with an interval by :func:`fidelity_summary`.
FIDELITY_SCORES = ("mse", "ssim", "recon_mse", "recon_ssim")


def rerender_fidelity(model, calibration: Calibration, factors: Sequence[str] = NAMED, *,
                      model_name: str = "model", n_identities: int = 8, source: float = 0.0,
                      targets: dict[str, Sequence[float]] | None = None,
                      by_identity: bool = False, progress: bool = False) -> pd.DataFrame:
    """How well the network re-renders a held-out face at a new pose or light (paper Sec. 4).

    For each factor and each target angle: render held-out faces (identities from
    :data:`FIDELITY_FIRST_IDENTITY`, never used to calibrate) with the factor at ``source`` and
    the others at 0; encode; set the factor's latent to its calibrated value at the target;
    decode; compare with the true render at the target. Beside it, the reconstruction error of
    that true render (encode, decode): what the model achieves when it sees the target itself.

    Args:
        model: a model of the protocol that can decode.
        calibration: from :func:`calibrate`.
        factors: which of azimuth, elevation, light.
        model_name: the ``model`` column.
        n_identities: held-out faces per target.
        source: the factor's angle in the source images, degrees.
        targets: factor -> target angles; default the calibration grid of that factor.
        by_identity: one row per face, not per target (for :func:`fidelity_summary`'s interval;
            :func:`fidelity_by_target` averages it to the default frame).
        progress: a progress bar on stderr.
    Returns:
        tidy frame, one row per (neuron, target): model, neuron, latent, source, target, mse,
        ssim, recon_mse, recon_ssim (means over the faces; images in [0, 1]), n. With
        ``by_identity``, one row per (neuron, target, identity), an ``identity`` column after
        ``target`` and n 1.
    """
    if isinstance(n_identities, bool) or not isinstance(n_identities, (int, np.integer)) \
            or not 1 <= n_identities <= 10_000:
        raise DcignError(f"fidelity needs 1..10000 identities, got {n_identities!r}")
    model = as_model(model)
    for name in factors:
        if name not in NAMED:
            raise DcignError(f"unknown factor {name!r}; choose from {', '.join(NAMED)}")
    size = int(model.image_size)
    ids = np.arange(FIDELITY_FIRST_IDENTITY, FIDELITY_FIRST_IDENTITY + n_identities)
    plan = {}
    for name in factors:
        lo, hi = FACTOR_RANGES[name]
        if not lo <= source <= hi:
            raise DcignError(f"source {name} {source:g} is out of range [{lo:g}, {hi:g}] degrees")
        tg = np.asarray((targets or {}).get(name, calibration.factors[name].degrees), float)
        if tg.ndim != 1 or len(tg) == 0 or (tg < lo).any() or (tg > hi).any():
            raise DcignError(f"{name} targets must be angles in [{lo:g}, {hi:g}] degrees")
        plan[name] = tg
    rows = []
    total = sum(len(t) * n_identities for t in plan.values())
    n = n_identities
    with _progress(progress, total, "re-rendering held-out faces") as advance:
        for name, tg in plan.items():
            fmap = calibration.factors[name]
            src = pd.DataFrame({"identity": ids, **{k: 0.0 for k in NAMED}})
            src[name] = float(source)
            mu = np.asarray(model.encode(render_sources(src, size)), np.float64)
            # All (face, target) pairs at once, face-major: row i * T + j.
            z = np.repeat(mu, len(tg), axis=0)
            z[:, fmap.latent] = np.tile(fmap.to_latent(tg), n)
            true_images = render_sources(src, size, name, tg).reshape(n * len(tg), size, size)
            truth = true_images.astype(np.float64) / 255
            rerendered = np.asarray(model.decode(z.astype(np.float32)), np.float64)
            codes = np.asarray(model.encode(true_images), np.float64)
            recon = np.asarray(model.decode(codes.astype(np.float32)), np.float64)
            scores = {"mse": mse(rerendered, truth), "ssim": ssim(rerendered, truth),
                      "recon_mse": mse(recon, truth), "recon_ssim": ssim(recon, truth)}
            for j, target in enumerate(tg):
                for i, identity in enumerate(ids):
                    rows.append({"model": model_name, "neuron": name, "latent": fmap.latent,
                                 "source": float(source), "target": float(target),
                                 "identity": int(identity),
                                 **{k: float(v[i * len(tg) + j]) for k, v in scores.items()},
                                 "n": 1})
            advance(n * len(tg))
    columns = list(FIDELITY_COLUMNS)
    columns.insert(columns.index("target") + 1, "identity")
    frame = pd.DataFrame(rows, columns=columns)
    return frame if by_identity else fidelity_by_target(frame)


def fidelity_by_target(frame: pd.DataFrame) -> pd.DataFrame:
    """A by-identity fidelity frame (:func:`rerender_fidelity` with ``by_identity``) as the
    default one: per (model, neuron, target) the mean of each score over the faces, n the faces."""
    keys = ["model", "neuron", "latent", "source", "target"]
    grouped = frame.groupby(keys, sort=False)
    out = grouped[list(FIDELITY_SCORES)].mean().join(grouped.size().rename("n")).reset_index()
    return out[list(FIDELITY_COLUMNS)]


def fidelity_summary(frame: pd.DataFrame, resamples: int = RESAMPLES,
                     random_state=0) -> pd.DataFrame:
    """Per model and neuron, the mean of each score over targets and faces with its 95%
    bootstrap interval over the held-out identities, and the paired difference from the first
    model measuring that neuron (:func:`dcign_eval.intervals.paired_means`: the models re-render
    the same identities, so each identity's mean over the targets is the unit drawn).

    Args:
        frame: by-identity fidelity rows of one or more models (:func:`rerender_fidelity` with
            ``by_identity``).
        resamples: bootstrap resamples of the identities (0: NaN ends).
        random_state: seed of the resamples.

    Returns:
        one row per (model, neuron), in first-appearance order: model, neuron, identities, per
        score of :data:`FIDELITY_SCORES` its value, ``_low`` and ``_high``, then per score
        ``<score>_difference`` (this model minus the first; NaN for the first), ``_low``,
        ``_high``, resamples.
    """
    if "identity" not in frame.columns:
        raise DcignError("a fidelity summary needs one row per identity "
                         "(rerender_fidelity(..., by_identity=True))")
    parts = []
    for neuron, rows in frame.groupby("neuron", sort=False):
        per_identity = {model: part.groupby("identity")[list(FIDELITY_SCORES)].mean()
                        for model, part in rows.groupby("model", sort=False)}
        table = paired_means(per_identity, resamples, random_state)
        table.insert(1, "neuron", neuron)
        table.insert(2, "identities", rows["identity"].nunique())
        parts.append(table)
    order = list(dict.fromkeys(frame["model"]))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values("model", key=lambda m: m.map(order.index), kind="stable"
                           ).reset_index(drop=True)


def plot_fidelity(frame: pd.DataFrame, neuron: str | None = None):
    """Re-rendering fidelity against the target angle: MSE (top) and SSIM (bottom), one column
    per neuron (or just ``neuron``), one line style per model. Returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    missing = [c for c in FIDELITY_COLUMNS if c not in frame.columns]
    if missing:
        raise DcignError(f"a fidelity frame needs columns {list(FIDELITY_COLUMNS)}; "
                         f"missing {missing}")
    if neuron is not None:
        frame = frame[frame["neuron"] == neuron]
    if frame.empty:
        raise DcignError(f"no fidelity rows{'' if neuron is None else ' for ' + neuron} to plot")
    neurons = list(dict.fromkeys(frame["neuron"]))
    fig = Figure(figsize=(4.2 * len(neurons), 5.6), layout="constrained")
    axes = fig.subplots(2, len(neurons), squeeze=False, sharex="col")
    colors = [f"C{i}" for i in range(10)]
    for c, name in enumerate(neurons):
        sub = frame[frame["neuron"] == name]
        for m, (model_name, part) in enumerate(sub.groupby("model", sort=False)):
            part = part.sort_values("target")
            color = colors[m % len(colors)]
            for r, (metric, recon) in enumerate((("mse", "recon_mse"), ("ssim", "recon_ssim"))):
                ax = axes[r, c]
                ax.plot(part["target"], part[metric], "-o", ms=3, color=color,
                        label=f"{model_name}: re-rendered (latent {part['latent'].iloc[0]})")
                ax.plot(part["target"], part[recon], "--", color=color,
                        label=f"{model_name}: reconstruction of the true render")
        for r, metric in enumerate(("MSE", "SSIM")):
            ax = axes[r, c]
            for src in sub["source"].unique():
                ax.axvline(src, color="0.6", lw=0.8, ls=":")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        axes[0, c].set_title(f"{name}: re-render from {sub['source'].iloc[0]:+g} deg")
        axes[1, c].set_xlabel(f"target {name} (degrees)")
        axes[1, c].set_ylim(min(0.0, float(sub[["ssim", "recon_ssim"]].min().min())), 1.0)
        axes[0, c].set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=7, loc="upper center")
    return fig


def write_fidelity(frame: pd.DataFrame, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """``out_dir/{stem}-fidelity.csv`` and one ``{stem}-fidelity-{neuron}.png`` per neuron."""
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{stem}-fidelity.csv"}
    try:
        atomic_write_text(paths["csv"], frame.to_csv(index=False))
        for name in dict.fromkeys(frame["neuron"]):
            fig = plot_fidelity(frame, name)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            paths[name] = out_dir / f"{stem}-fidelity-{name}.png"
            atomic_write_bytes(paths[name], buf.getvalue())
    except OSError as e:
        raise DcignError(f"cannot write into {out_dir}: {e.strerror}") from None
    return paths


def fidelity_factors(model, neuron: str | int) -> list[str]:
    """The factors a fidelity run covers for a ``--neuron`` choice."""
    names = {int(v): k for k, v in dict(model.latent_names).items() if k in NAMED}
    out = []
    for w in parse_neuron(neuron):
        if isinstance(w, int):
            if w not in names:
                raise DcignError(f"re-rendering fidelity needs a neuron tied to a factor "
                                 f"(azimuth, elevation, light); latent {w} is not one")
            w = names[w]
        out.append(w)
    return out

