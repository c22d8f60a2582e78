"""Invariant face recognition: does the DC-IGN intrinsic code know a face across pose and light?

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167. The abstract claims the learned code supports invariant face
recognition; the original experiment was deleted and no numbers survive. This module makes it
quantitative on the face world.

Set-up (all identities held out: ``split_identities("test", n)``, never seen in training):

* Gallery, protocol ``one-view``: each identity once, at the reference view (frontal, elevation 0,
  light 0). Protocol ``several-views``: the reference view plus a few other poses
  (default azimuth -90, -45, 45, 90 at elevation 0, light 0).
* Probes: the same identities at the other views of a grid (default azimuth -90..90 in 15-degree
  steps, elevation -30..30 in 15, light -80..80 in 20). For a run of a few minutes on a 2-core CPU,
  each identity gets ``probes_per_azimuth`` (elevation, light) pairs drawn at random for every
  azimuth, so every azimuth bin holds the same number of probes; ``None`` takes the whole grid.
  Gallery views are never probes, so both protocols score the same probes.
* Feature sets are callables ``images (N, S, S) -> (N, F)``: for each model its intrinsic block
  (a DC-IGN's latents 3..D-1, or the model's own ``intrinsic``) and its full code; PCA of pixels
  fitted on training identities; raw pixels.
* Classifiers (scikit-learn) on L2-normalised feature rows: 1-nearest-neighbour with cosine
  distance, multinomial logistic regression and a linear SVM (one-vs-rest). With the one-view
  gallery the two linear models train on ONE sample per class; that is allowed and intended (it
  is the task). Features are L2-normalised rather than standardised per dimension: per-dimension
  scaling would blow inactive VAE latents (mu ~ 0 plus noise) and minor PCA components up to unit
  variance. C = 1 (sklearn's default) for both linear models, not tuned on the probes.
* Verification: every probe is paired with its own identity's reference image (same) and with
  another identity's reference image (different, drawn at random); the score is the cosine
  similarity; ROC AUC and equal error rate come from ``sklearn.metrics.roc_curve``.

Layout: :func:`recognition_factors` / :func:`render_faces_set` build the images; feature callables
(:func:`pixel_features`, :class:`PixelPCA`, :class:`ModelFeatures`) map them to arrays; the pure
functions :func:`identification_predictions`, :func:`accuracy_table`, :func:`verification_pairs`,
:func:`verification_table`, :func:`pose_comparison`, :func:`summary_table` work on arrays and
frames; :func:`plot_accuracy` and :func:`plot_verification` draw frames; :func:`run_recognition`
wires it all and writes the outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from dcign_eval.cache import ProgressFactory, encode_cached
from dcign_eval.intervals import (LEVEL, RESAMPLES, bootstrap_weights, check_resamples,
                                  percentile_interval)
from dcign_eval.protocol import as_model
from trainer.errors import DatasetError, DcignError
from trainer.faces import FACTOR_RANGES, load_dataset, render_faces, split_identities, write_dataset
from trainer.faces.world import GENERATOR_VERSION, factor_values
from trainer.io import atomic_write_bytes, atomic_write_json, atomic_write_text

FeatureFn = Callable[[np.ndarray], np.ndarray]

CLASSIFIERS = ("1nn-cosine", "logistic", "linear-svc")
PROTOCOLS = ("one-view", "several-views")
VIEWS = ("reference", "gallery", "probe")
# Order of the feature sets in tables and plots: the models' (as given), then these.
FEATURE_ORDER = ("pca", "pixels")
REFERENCE_VIEW = (0.0, 0.0, 0.0)  # (azimuth, elevation, light): frontal, level, lit from the front
SEVERAL_VIEWS = ((0.0, 0.0, 0.0), (-90.0, 0.0, 0.0), (-45.0, 0.0, 0.0), (45.0, 0.0, 0.0),
                 (90.0, 0.0, 0.0))
RENDER_CHUNK = 512
LARGE_POSE = 60.0  # |azimuth| from which a pose change counts as large, degrees


# -- the faces: gallery and probes ----------------------------------------------------------------

@dataclass(frozen=True)
class ProbeGrid:
    """Which views are rendered for each held-out identity.

    Attributes:
        azimuth_step, elevation_step, light_step: grid steps in degrees over the face world's
            ranges (azimuth -90..90, elevation -30..30, light -80..80), centred on 0.
        probes_per_azimuth: (elevation, light) pairs drawn per identity and grid azimuth; None
            takes every pair (the full grid).
        reference: the one-view gallery's view (azimuth, elevation, light).
        gallery_views: the several-views gallery; must contain ``reference``.
    """

    azimuth_step: float = 15.0
    elevation_step: float = 15.0
    light_step: float = 20.0
    probes_per_azimuth: int | None = 4
    reference: tuple[float, float, float] = REFERENCE_VIEW
    gallery_views: tuple[tuple[float, float, float], ...] = SEVERAL_VIEWS

    def __post_init__(self):
        if self.probes_per_azimuth is not None and (
                isinstance(self.probes_per_azimuth, bool) or self.probes_per_azimuth < 1):
            raise DcignError(f"probes per azimuth must be >= 1 (or None for the whole grid), "
                             f"got {self.probes_per_azimuth}")
        views = [tuple(float(v) for v in view) for view in self.gallery_views]
        for view in views + [tuple(self.reference)]:
            if len(view) != 3:
                raise DcignError(f"a view is (azimuth, elevation, light), got {view}")
            for name, value in zip(FACTOR_RANGES, view):
                lo, hi = FACTOR_RANGES[name]
                if not lo <= value <= hi:
                    raise DcignError(f"gallery view {name} {value:g} is out of range "
                                     f"[{lo:g}, {hi:g}] degrees")
        if tuple(float(v) for v in self.reference) not in views:
            raise DcignError(f"the several-views gallery {views} must contain the reference view "
                             f"{tuple(self.reference)}")
        if len(set(views)) != len(views):
            raise DcignError(f"the several-views gallery repeats a view: {views}")

    def axes(self) -> dict[str, np.ndarray]:
        return {"azimuth": factor_values("azimuth", self.azimuth_step),
                "elevation": factor_values("elevation", self.elevation_step),
                "light": factor_values("light", self.light_step)}

    def params(self) -> dict:
        return {"azimuth_step": float(self.azimuth_step),
                "elevation_step": float(self.elevation_step),
                "light_step": float(self.light_step),
                "probes_per_azimuth": self.probes_per_azimuth,
                "reference": [float(v) for v in self.reference],
                "gallery_views": [[float(v) for v in view] for view in self.gallery_views]}


@dataclass
class FaceSet:
    """Images (N, S, S) uint8 and their factors: identity, azimuth, elevation, light, view."""

    images: np.ndarray
    factors: pd.DataFrame

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


def _seed(random_state) -> int:
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) \
            or random_state < 0:
        raise DcignError(f"random_state must be an integer >= 0, got {random_state!r}")
    return int(random_state)


def _check_identities(n_identities, minimum: int = 2) -> int:
    if isinstance(n_identities, bool) or not isinstance(n_identities, (int, np.integer)):
        raise DcignError(f"the number of identities must be an integer, got {n_identities!r}")
    if n_identities < minimum:
        raise DcignError(f"recognition needs at least {minimum} held-out identities (a gallery "
                         f"of one identity makes every answer right and leaves no impostor pairs), "
                         f"got {n_identities}")
    return int(n_identities)


def recognition_factors(n_identities: int = 100, grid: ProbeGrid | None = None,
                        random_state: int = 0) -> pd.DataFrame:
    """The factor table of the gallery and probe images (no rendering).

    Args:
        n_identities: held-out identities (``split_identities("test", n)``); at least 2.
        grid: the views; ``ProbeGrid()`` by default.
        random_state: seed of the probe draw.

    Returns:
        DataFrame with columns identity, azimuth, elevation, light, view (``reference`` for the
        reference view, ``gallery`` for the other several-views gallery views, ``probe``), the
        gallery rows of an identity first.
    """
    grid = grid or ProbeGrid()
    n_identities = _check_identities(n_identities)
    rng = np.random.default_rng([_seed(random_state), 7])
    axes = grid.axes()
    reference = tuple(float(v) for v in grid.reference)
    gallery = [tuple(float(v) for v in view) for view in grid.gallery_views]
    taken = set(gallery)
    pairs = np.array([(e, lt) for e in axes["elevation"] for lt in axes["light"]], dtype=float)
    rows = []
    for identity in split_identities("test", n_identities):
        for view in gallery:
            rows.append((identity, *view, "reference" if view == reference else "gallery"))
        for az in axes["azimuth"]:
            free = np.array([(az, e, lt) not in taken for e, lt in pairs])
            candidates = pairs[free]
            k = len(candidates) if grid.probes_per_azimuth is None \
                else min(grid.probes_per_azimuth, len(candidates))
            pick = np.sort(rng.choice(len(candidates), k, replace=False))
            for e, lt in candidates[pick]:
                rows.append((identity, float(az), float(e), float(lt), "probe"))
    return pd.DataFrame(rows, columns=["identity", "azimuth", "elevation", "light", "view"])


def _render(factors: pd.DataFrame, size: int, progress=None) -> np.ndarray:
    images = np.empty((len(factors), size, size), np.uint8)
    for start in range(0, len(factors), RENDER_CHUNK):
        rows = factors.iloc[start:start + RENDER_CHUNK]
        images[start:start + len(rows)] = render_faces(
            rows["identity"].to_numpy(), rows["azimuth"].to_numpy(),
            rows["elevation"].to_numpy(), rows["light"].to_numpy(), size=size)
        if progress:
            progress(len(rows))
    return images


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _progress(factory: ProgressFactory | None, total: int, description: str):
    return factory(total, description) if factory else contextlib.nullcontext(None)


def render_faces_set(factors: pd.DataFrame, size: int = 64, *, cache_dir=None,
                     cache_params: dict | None = None,
                     progress: ProgressFactory | None = None) -> FaceSet:
    """Render the images of a factor table, reusing a cached copy when one exists.

    Args:
        factors: identity, azimuth, elevation, light (plus any other columns, kept).
        size: image size in pixels.
        cache_dir: where rendered sets are kept (``faces-<key>/``, a face data set written
            atomically); None renders without caching.
        cache_params: what determines ``factors`` (the cache key); by default the table itself.
        progress: ``progress(total, description)`` context manager yielding ``advance(n)``.
    """
    if cache_dir is None:
        with _progress(progress, len(factors), "rendering faces") as advance:
            return FaceSet(_render(factors, size, advance), factors.reset_index(drop=True))
    params = cache_params if cache_params is not None else \
        {"factors": hashlib.sha256(pd.util.hash_pandas_object(factors, index=False)
                                   .to_numpy().tobytes()).hexdigest()}
    manifest = {"kind": "recognition", "generator_version": GENERATOR_VERSION, "seed": None,
                "params": dict(params, size=int(size))}
    path = Path(cache_dir) / f"faces-{_key(manifest)}"
    if path.exists():
        try:
            ds = load_dataset(path, expect_size=size)
            if len(ds) == len(factors):
                return FaceSet(np.asarray(ds.images), ds.factors)
        except DatasetError:
            pass
        shutil.rmtree(path, ignore_errors=True)  # a damaged cache entry of ours: render again
    with _progress(progress, len(factors), "rendering faces") as advance:
        images = _render(factors, size, advance)
    try:
        write_dataset(path, images, factors.reset_index(drop=True), manifest)
    except DatasetError:
        if not path.exists():  # not a concurrent writer of the same entry: a real problem
            raise
    return FaceSet(images, factors.reset_index(drop=True))


def recognition_faces(n_identities: int = 100, grid: ProbeGrid | None = None, size: int = 64,
                      random_state: int = 0, *, cache_dir=None,
                      progress: ProgressFactory | None = None) -> FaceSet:
    """Gallery and probe images of held-out identities (see :func:`recognition_factors`)."""
    grid = grid or ProbeGrid()
    factors = recognition_factors(n_identities, grid, random_state)
    params = {"set": "recognition", "n_identities": int(n_identities), "grid": grid.params(),
              "random_state": int(random_state)}
    return render_faces_set(factors, size, cache_dir=cache_dir, cache_params=params,
                            progress=progress)


def training_faces(n_identities: int = 500, n_images: int = 2000, size: int = 64,
                   random_state: int = 0, *, cache_dir=None,
                   progress: ProgressFactory | None = None) -> FaceSet:
    """Images of TRAINING identities at uniformly random views (what PCA is fitted on)."""
    if n_images < 2:
        raise DcignError(f"PCA needs at least 2 training images, got {n_images}")
    ids = split_identities("train", n_identities)
    rng = np.random.default_rng([_seed(random_state), 11])
    factors = pd.DataFrame({"identity": rng.choice(ids, n_images)})
    for name, (lo, hi) in FACTOR_RANGES.items():
        factors[name] = np.round(rng.uniform(lo, hi, n_images), 3)
    params = {"set": "pca-train", "n_identities": int(n_identities), "n_images": int(n_images),
              "random_state": int(random_state)}
    return render_faces_set(factors, size, cache_dir=cache_dir, cache_params=params,
                            progress=progress)


# -- feature sets: callables images -> (N, F) -----------------------------------------------------

def _as_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise DcignError(f"images must be an array (N, H, W), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def pixel_features(images) -> np.ndarray:
    """Raw pixels in [0, 1], one row per image: (N, H*W) float32."""
    x = _as_images(images)
    return x.reshape(len(x), -1)


class PixelPCA:
    """PCA of pixels (sklearn ``PCA``, randomized solver): ``fit(images)`` then call on images."""

    def __init__(self, n_components: int = 200, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, images) -> "PixelPCA":
        from sklearn.decomposition import PCA

        x = pixel_features(images)
        k = min(int(self.n_components), x.shape[0], x.shape[1])
        if k < 1:
            raise DcignError(f"PCA needs n_components >= 1, got {self.n_components}")
        self.pca_ = PCA(n_components=k, svd_solver="randomized",
                        random_state=_seed(self.random_state)).fit(x)
        return self

    def transform(self, images) -> np.ndarray:
        if not hasattr(self, "pca_"):
            raise DcignError("PixelPCA is not fitted; call fit(images) first")
        x = pixel_features(images)
        if x.shape[1] != self.pca_.n_features_in_:
            raise DcignError(f"PCA was fitted on {self.pca_.n_features_in_} pixels, "
                             f"got images of {x.shape[1]}")
        return self.pca_.transform(x).astype(np.float32)

    __call__ = transform


@dataclass
class ModelFeatures:
    """A model's codes as a feature callable: ``model.encode(images)[:, latents]``.

    Codes come through the one cache of encoded codes (:mod:`dcign_eval.cache`), so several
    feature sets of one model (intrinsic block, full code) encode once.

    Attributes:
        model: a :class:`dcign_eval.protocol.Model`.
        latents: the latents kept (None: all).
        cache_dir: the codes cache's root (None: ``$DCIGN_EVAL_CACHE``).
    """

    model: Any
    latents: Sequence[int] | None = None
    cache_dir: Path | None = None
    progress: ProgressFactory | None = None

    def __call__(self, images) -> np.ndarray:
        codes = encode_cached(self.model, images, cache_dir=self.cache_dir,
                              progress=self.progress, description=f"encoding ({self.model.name})")
        return codes if self.latents is None else codes[:, list(self.latents)]


def model_feature_sets(model, *, cache_dir=None, progress: ProgressFactory | None = None
                       ) -> dict[str, ModelFeatures]:
    """A model's feature sets: ``<name>: intrinsic block`` (when its intrinsic latents are not its
    whole code: a DC-IGN's latents after the named ones, or the model's own ``intrinsic``) and
    ``<name>: full code``."""
    out = {}
    if 0 < len(model.intrinsic) < model.latent_dim:
        out[f"{model.name}: intrinsic block"] = ModelFeatures(model, model.intrinsic, cache_dir,
                                                              progress)
    out[f"{model.name}: full code"] = ModelFeatures(model, None, cache_dir, progress)
    return out


def extract_features(feature_sets: Mapping[str, FeatureFn], images) -> dict[str, np.ndarray]:
    """Apply each feature callable to ``images``; check it returns one finite row per image."""
    out = {}
    for name, fn in feature_sets.items():
        x = np.asarray(fn(images), dtype=np.float32)
        if x.ndim != 2 or len(x) != len(images):
            raise DcignError(f"feature set {name!r} returned shape {x.shape} for "
                             f"{len(images)} images; expected (N, F)")
        if not np.isfinite(x).all():
            raise DcignError(f"feature set {name!r} returned non-finite values")
        out[name] = x
    return out


# -- identification: pure functions on arrays and frames ------------------------------------------

def make_classifier(name: str, random_state: int = 0):
    """The scikit-learn classifier ``name`` with its settings fixed.

    ``1nn-cosine``: 1-nearest-neighbour, cosine distance, brute force (exact).
    ``logistic``: multinomial logistic regression, lbfgs, C=1, max_iter 5000.
    ``linear-svc``: linear SVM (squared hinge, one-vs-rest), dual coordinate descent (the right
    solver when features outnumber gallery images), C=1, max_iter 20000.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    if name == "1nn-cosine":
        return KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute")
    if name == "logistic":
        return LogisticRegression(solver="lbfgs", C=1.0, max_iter=5000, tol=1e-6,
                                  random_state=random_state)
    if name == "linear-svc":
        return LinearSVC(C=1.0, loss="squared_hinge", dual=True, max_iter=20000, tol=1e-5,
                         random_state=random_state)
    raise DcignError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _identify(gallery_x: np.ndarray, gallery_y: np.ndarray, probe_x: np.ndarray,
              classifier: str, random_state: int = 0) -> np.ndarray:
    """Predicted identity of each probe: fit ``classifier`` on the gallery (L2-normalised rows)."""
    from sklearn.exceptions import ConvergenceWarning

    model = make_classifier(classifier, random_state)
    with warnings.catch_warnings():
        # One sample per class makes the linear models' optimum flat; the iteration caps above
        # are generous and the predictions (argmax) settle long before the weights do.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # "More unique classes than 50% of the samples": true by design of a one-view gallery.
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        model.fit(_l2_rows(np.asarray(gallery_x, np.float64)), gallery_y)
    return model.predict(_l2_rows(np.asarray(probe_x, np.float64)))


def protocol_rows(factors: pd.DataFrame, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """(gallery row indices, probe row indices) of ``protocol`` in a recognition factor table."""
    view = factors["view"].to_numpy()
    if protocol == "one-view":
        gallery = view == "reference"
    elif protocol == "several-views":
        gallery = (view == "reference") | (view == "gallery")
    else:
        raise DcignError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return np.flatnonzero(gallery), np.flatnonzero(view == "probe")


def _check_features(features: Mapping[str, np.ndarray], factors: pd.DataFrame) -> None:
    missing = [c for c in ("identity", "azimuth", "elevation", "light", "view")
               if c not in factors.columns]
    if missing:
        raise DcignError(f"the factor table lacks columns {missing}")
    if not features:
        raise DcignError("no feature sets to evaluate")
    for name, x in features.items():
        x = np.asarray(x)
        if x.ndim != 2 or len(x) != len(factors):
            raise DcignError(f"feature set {name!r} has shape {x.shape}; expected "
                             f"({len(factors)}, F), one row per face")
    n_ids = factors["identity"].nunique()
    _check_identities(n_ids)
    if not (factors["view"] == "probe").any():
        raise DcignError("the factor table has no probe rows")


def identification_predictions(features: Mapping[str, np.ndarray], factors: pd.DataFrame,
                               classifiers: Sequence[str] = CLASSIFIERS,
                               protocols: Sequence[str] = PROTOCOLS,
                               random_state: int = 0) -> pd.DataFrame:
    """Identify every probe with every feature set, classifier and protocol.

    Args:
        features: name -> (N, F) array, rows aligned with ``factors``.
        factors: identity, azimuth, elevation, light, view (see :func:`recognition_factors`).
        classifiers: names from :data:`CLASSIFIERS`.
        protocols: names from :data:`PROTOCOLS`.
        random_state: seed handed to the classifiers.

    Returns:
        One row per (feature, classifier, protocol, probe): feature, classifier, protocol, probe
        (row index in ``factors``), identity, azimuth, elevation, light, predicted, correct.
    """
    _check_features(features, factors)
    seed = _seed(random_state)
    for name in classifiers:
        make_classifier(name)
    identity = factors["identity"].to_numpy()
    frames = []
    for protocol in protocols:
        gallery, probes = protocol_rows(factors, protocol)
        missing = np.setdiff1d(np.unique(identity[probes]), identity[gallery])
        if len(missing):
            raise DcignError(f"{len(missing)} probe identities have no gallery image in "
                             f"protocol {protocol!r}")
        base = factors.iloc[probes][["identity", "azimuth", "elevation", "light"]] \
            .reset_index(drop=True)
        base.insert(0, "probe", probes)
        for feature, x in features.items():
            x = np.asarray(x)
            for classifier in classifiers:
                predicted = _identify(x[gallery], identity[gallery], x[probes], classifier, seed)
                frame = base.copy()
                frame.insert(0, "protocol", protocol)
                frame.insert(0, "classifier", classifier)
                frame.insert(0, "feature", feature)
                frame["predicted"] = predicted
                frame["correct"] = predicted == frame["identity"].to_numpy()
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _bin(values, width: float) -> np.ndarray:
    """Nearest multiple of ``width`` (degrees); + 0.0 turns -0.0 into 0.0."""
    return np.round(np.asarray(values, dtype=float) / width) * width + 0.0


# -- intervals: the bootstrap over held-out identities --------------------------------------------

def identity_weights(identities, resamples: int = RESAMPLES, random_state: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct identities, bootstrap weights (resamples, identities)): how many times
    each held-out identity is drawn in each resample. The same identities and seed give the same
    weights, so every table of a run is resampled alike."""
    ids = np.unique(np.asarray(identities))
    return ids, bootstrap_weights(len(ids), resamples, [_seed(random_state), 19])


def _per_identity(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str],
                  ids: np.ndarray) -> tuple[pd.DataFrame, list[np.ndarray], np.ndarray]:
    """Per group of ``keys`` and identity: the sums of ``values`` columns and the row counts.

    Returns:
        (the groups' keys in first-appearance order, one (groups, identities) sum matrix per
        value column, the (groups, identities) count matrix).
    """
    grouped = frame.groupby(list(keys), sort=False)
    row = grouped.ngroup().to_numpy()
    col = np.searchsorted(ids, frame["identity"].to_numpy())
    shape = (int(row.max()) + 1 if len(row) else 0, len(ids))
    sums = []
    for value in values:
        m = np.zeros(shape)
        np.add.at(m, (row, col), frame[value].to_numpy(np.float64))
        sums.append(m)
    counts = np.zeros(shape)
    np.add.at(counts, (row, col), 1.0)
    return grouped.size().reset_index()[list(keys)], sums, counts


def _ratio_interval(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray,
                    level: float = LEVEL, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of (numerator @ w) / (denominator @ w) over the weight rows w: a
    proportion recomputed on each resample of identities (rows in chunks, to bound memory)."""
    low, high = np.full(len(numerator), np.nan), np.full(len(numerator), np.nan)
    for start in range(0, len(numerator), chunk):
        part = slice(start, start + chunk)
        with np.errstate(invalid="ignore", divide="ignore"):
            samples = (numerator[part] @ weights.T) / (denominator[part] @ weights.T)
        low[part], high[part] = percentile_interval(samples, level)
    return low, high


def identity_intervals(frame: pd.DataFrame, keys: Sequence[str], value: str = "correct",
                       resamples: int = RESAMPLES, random_state: int = 0,
                       level: float = LEVEL) -> pd.DataFrame:
    """The bootstrap interval over identities of the mean of ``value`` per group of ``keys``.

    Args:
        frame: one row per probe (or pair): the ``keys``, ``identity`` and ``value`` (e.g.
            ``correct``, True/False).
        keys: the grouping columns.
        resamples: bootstrap resamples (0: NaN ends).
        random_state: seed of the resamples.
        level: coverage.

    Returns:
        the ``keys`` columns (groups in first-appearance order), low, high. A resample that draws
        none of a group's identities does not count for that group.
    """
    ids, weights = identity_weights(frame["identity"], resamples, random_state)
    groups, (sums,), counts = _per_identity(frame, keys, [value], ids)
    low, high = _ratio_interval(sums, counts, weights, level)
    return groups.assign(low=low, high=high)


def _with_interval(table: pd.DataFrame, intervals: pd.DataFrame, keys: Sequence[str],
                   value: str, resamples: int) -> pd.DataFrame:
    """``table`` with ``<value>_low`` and ``<value>_high`` inserted right after ``value``."""
    merged = table.merge(intervals.rename(columns={"low": f"{value}_low",
                                                   "high": f"{value}_high"}),
                         on=list(keys), how="left", sort=False)
    columns = list(table.columns)
    at = columns.index(value) + 1
    columns[at:at] = [f"{value}_low", f"{value}_high"]
    out = merged[columns]
    if "resamples" not in out:
        out = out.assign(resamples=int(resamples))
    return out


def accuracy_table(predictions: pd.DataFrame, azimuth_bin: float = 15.0,
                   elevation_bin: float = 15.0, light_bin: float = 20.0,
                   resamples: int = RESAMPLES, random_state: int = 0) -> pd.DataFrame:
    """The tidy accuracy table: one row per feature, classifier, protocol and factor bin.

    Bins are the nearest multiple of the bin width: ``abs_azimuth`` bins |azimuth| (a turn to
    the left and one to the right are the same pose change), ``elevation`` and ``light`` are
    signed. The interval is the bootstrap over held-out identities (:func:`identity_intervals`;
    ``resamples`` 0: NaN ends).

    Returns:
        columns feature, classifier, protocol, abs_azimuth, elevation, light, accuracy,
        accuracy_low, accuracy_high, correct, n, resamples.
    """
    resamples = check_resamples(resamples)
    frame = predictions[["feature", "classifier", "protocol", "identity", "correct"]].copy()
    frame["abs_azimuth"] = _bin(np.abs(predictions["azimuth"]), azimuth_bin)
    frame["elevation"] = _bin(predictions["elevation"], elevation_bin)
    frame["light"] = _bin(predictions["light"], light_bin)
    keys = ["feature", "classifier", "protocol", "abs_azimuth", "elevation", "light"]
    table = frame.groupby(keys, sort=False).agg(correct=("correct", "sum"),
                                                n=("correct", "size")).reset_index()
    table["correct"] = table["correct"].astype(int)
    table.insert(len(keys), "accuracy", table["correct"] / table["n"])
    table = _with_interval(table, identity_intervals(frame, keys, "correct", resamples,
                                                     random_state), keys, "accuracy", resamples)
    return _sort(table, keys)


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature sets of the models first (as given), then :data:`FEATURE_ORDER`; classifiers and
    protocols in their canonical order; as ordered categoricals for sorting."""
    frame = frame.copy()
    for col, canonical in (("feature", FEATURE_ORDER), ("classifier", CLASSIFIERS),
                           ("protocol", PROTOCOLS)):
        if col in frame:
            seen = list(dict.fromkeys(frame[col]))
            order = ([v for v in seen if v not in canonical] + [v for v in canonical if v in seen]
                     if col == "feature" else
                     [v for v in canonical if v in seen] + [v for v in seen if v not in canonical])
            frame[col] = pd.Categorical(frame[col], categories=order, ordered=True)
    return frame


def _sort(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    ordered = _order(frame).sort_values(list(keys), kind="stable")
    out = frame.loc[ordered.index].reset_index(drop=True)
    return out


def accuracy_by(table: pd.DataFrame, factor: str) -> pd.DataFrame:
    """Accuracy per feature, classifier, protocol and one factor bin (pooled over the others).

    Args:
        table: :func:`accuracy_table`'s frame.
        factor: ``abs_azimuth``, ``elevation`` or ``light``.
    """
    if factor not in ("abs_azimuth", "elevation", "light"):
        raise DcignError(f"factor must be abs_azimuth, elevation or light, got {factor!r}")
    keys = ["feature", "classifier", "protocol", factor]
    out = table.groupby(keys, sort=False)[["correct", "n"]].sum().reset_index()
    out["accuracy"] = out["correct"] / out["n"]
    return _sort(out[keys + ["accuracy", "correct", "n"]], keys)


def summary_table(predictions: pd.DataFrame, large_pose: float = LARGE_POSE,
                  resamples: int = RESAMPLES, random_state: int = 0) -> pd.DataFrame:
    """Overall accuracy and accuracy at large pose changes (|azimuth| >= ``large_pose``), each
    with its bootstrap interval over held-out identities (:func:`identity_intervals`).

    Returns:
        columns feature, classifier, protocol, accuracy, accuracy_low, accuracy_high, n,
        accuracy_large_pose, accuracy_large_pose_low, accuracy_large_pose_high, n_large_pose,
        resamples.
    """
    resamples = check_resamples(resamples)
    keys = ["feature", "classifier", "protocol"]
    large = predictions["azimuth"].abs() >= large_pose
    overall = predictions.groupby(keys, sort=False)["correct"].agg(["mean", "size"])
    big = predictions[large].groupby(keys, sort=False)["correct"].agg(["mean", "size"])
    out = overall.rename(columns={"mean": "accuracy", "size": "n"}).join(
        big.rename(columns={"mean": "accuracy_large_pose", "size": "n_large_pose"})).reset_index()
    out["n_large_pose"] = out["n_large_pose"].fillna(0).astype(int)
    out = _with_interval(out, identity_intervals(predictions, keys, "correct", resamples,
                                                 random_state), keys, "accuracy", resamples)
    if large.any():
        # The same seed: with the same identities (each has probes at every grid azimuth) these
        # are the overall interval's draws.
        big_intervals = identity_intervals(predictions[large], keys, "correct", resamples,
                                           random_state)
    else:
        big_intervals = out[keys].assign(low=np.nan, high=np.nan)
    out = _with_interval(out, big_intervals, keys, "accuracy_large_pose", resamples)
    return _sort(out, keys)


def pose_comparison(predictions: pd.DataFrame, reference: str,
                    large_pose: float = LARGE_POSE, alpha: float = 0.05,
                    resamples: int = RESAMPLES, random_state: int = 0) -> pd.DataFrame:
    """Does ``reference`` identify large-pose probes better than each other feature set?

    Paired on the same probes (|azimuth| >= ``large_pose``): exact McNemar test (two-sided
    binomial test on the discordant probes). Probes of one identity are not independent, so read
    the p-value as a guide, not a guarantee; the difference's bootstrap interval over identities
    (both feature sets on the same resamples) does not assume that independence.

    Returns:
        one row per (classifier, protocol, other feature): reference, other, accuracy_reference,
        accuracy_other, difference, difference_low, difference_high, n, only_reference (probes
        only the reference got right), only_other, p_value, verdict (``better``, ``worse`` or
        ``no significant difference``). Empty when ``reference`` is not among the features.
    """
    from scipy.stats import binomtest

    columns = ["classifier", "protocol", "reference", "other", "accuracy_reference",
               "accuracy_other", "difference", "difference_low", "difference_high", "n",
               "only_reference", "only_other", "p_value", "verdict"]
    large = predictions[predictions["azimuth"].abs() >= large_pose]
    if reference not in set(large["feature"]):
        return pd.DataFrame(columns=columns)
    ids, weights = identity_weights(large["identity"], check_resamples(resamples), random_state)
    rows = []
    for (classifier, protocol), group in large.groupby(["classifier", "protocol"], sort=False):
        wide = group.pivot(index="probe", columns="feature", values="correct")
        ref = wide[reference].to_numpy(bool)
        identity = group.drop_duplicates("probe").set_index("probe").loc[wide.index, "identity"]
        col = np.searchsorted(ids, identity.to_numpy())
        counts = np.bincount(col, minlength=len(ids)).astype(np.float64)[None]
        for other in wide.columns:
            if other == reference:
                continue
            oth = wide[other].to_numpy(bool)
            b, c = int((ref & ~oth).sum()), int((~ref & oth).sum())
            p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
            verdict = "no significant difference" if p >= alpha else \
                ("better" if b > c else "worse")
            # The difference's interval: both feature sets on the same resampled identities.
            diff = np.bincount(col, ref.astype(float) - oth.astype(float), len(ids))[None]
            low, high = _ratio_interval(diff, counts, weights)
            rows.append((classifier, protocol, reference, other, ref.mean(), oth.mean(),
                         ref.mean() - oth.mean(), low[0], high[0], len(ref), b, c, float(p),
                         verdict))
    out = pd.DataFrame(rows, columns=columns)
    ordered = _order(out.rename(columns={"other": "feature"}))
    ordered = ordered.sort_values(["classifier", "protocol", "feature"], kind="stable")
    return out.loc[ordered.index].reset_index(drop=True)


# -- verification ---------------------------------------------------------------------------------

def _equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated along the ROC curve."""
    fnr = 1.0 - tpr
    d = fnr - fpr  # 1 at the strictest threshold, -1 at the loosest
    i = int(np.argmax(d <= 0))
    if i == 0:
        return float(fpr[0])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _roc_auc_eer(same: np.ndarray, similarity: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    same = np.asarray(same, bool)
    if same.all() or not same.any():
        return float("nan"), float("nan")
    fpr, tpr, _ = roc_curve(same, similarity)
    return float(roc_auc_score(same, similarity)), _equal_error_rate(fpr, tpr)


def verification_pairs(features: Mapping[str, np.ndarray], factors: pd.DataFrame,
                       random_state: int = 0) -> pd.DataFrame:
    """Same/different pairs across pose and their cosine similarities.

    Each probe is paired with its identity's reference image (same) and with the reference image
    of another identity drawn uniformly at random (different); the same pairs for every feature.

    Returns:
        one row per (feature, pair): feature, probe, identity, other_identity, azimuth,
        elevation, light, same, similarity.
    """
    _check_features(features, factors)
    rng = np.random.default_rng([_seed(random_state), 13])
    view = factors["view"].to_numpy()
    identity = factors["identity"].to_numpy()
    ref_rows = np.flatnonzero(view == "reference")
    ref_of = dict(zip(identity[ref_rows], ref_rows))
    ids = np.array(sorted(ref_of))
    probes = np.flatnonzero(view == "probe")
    if not set(identity[probes]) <= set(ids):
        raise DcignError("some probe identities have no reference image")
    # Another identity for every probe: draw from the n-1 others by skipping the own index.
    own = np.searchsorted(ids, identity[probes])
    draw = rng.integers(0, len(ids) - 1, len(probes))
    other = ids[draw + (draw >= own)]
    pair_probe = np.concatenate([probes, probes])
    pair_id = np.concatenate([identity[probes], other])
    base = factors.iloc[pair_probe][["identity", "azimuth", "elevation", "light"]] \
        .reset_index(drop=True)
    base.insert(0, "probe", pair_probe)
    base.insert(2, "other_identity", pair_id)
    base["same"] = pair_id == identity[pair_probe]
    probe_pos = np.concatenate([np.arange(len(probes))] * 2)
    ref_pos = np.searchsorted(ids, pair_id)
    ref_rows = np.array([ref_of[i] for i in ids])
    frames = []
    for feature, x in features.items():
        x = _l2_rows(np.asarray(x, dtype=np.float64))
        similarity = x[probes] @ x[ref_rows].T  # cosine, (probes, identities)
        frame = base.copy()
        frame.insert(0, "feature", feature)
        frame["similarity"] = similarity[probe_pos, ref_pos]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def weighted_auc_eer(same, similarity, weights, chunk: int = 250
                     ) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and equal error rate of pairs counted with weights, one figure per weight row.

    A pair of weight k counts as k copies of it, so a bootstrap resample of identities is a
    weight row (its identities' draw counts, per pair). Tied similarities form one threshold step
    (AUC counts a tie as half), as :func:`sklearn.metrics.roc_curve` does; a row of ones gives
    :func:`_roc_auc_eer`'s figures.

    Args:
        same: (P,) True for a same-identity pair.
        similarity: (P,) the pairs' scores.
        weights: (R, P) non-negative pair weights.

    Returns:
        (auc, eer), each (R,); NaN where a row weighs no same or no different pair.
    """
    same = np.asarray(same, bool)
    similarity = np.asarray(similarity, np.float64)
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(-similarity, kind="stable")
    s, y = similarity[order], same[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one step per distinct score
    auc, eer = np.full(len(weights), np.nan), np.full(len(weights), np.nan)
    for first in range(0, len(weights), chunk):
        w = weights[first:first + chunk][:, order]
        tp = np.cumsum(np.add.reduceat(w * y, starts, axis=1), axis=1)
        fp = np.cumsum(np.add.reduceat(w * ~y, starts, axis=1), axis=1)
        n_same, n_different = tp[:, -1:], fp[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = np.hstack([np.zeros((len(w), 1)), tp / n_same])
            fpr = np.hstack([np.zeros((len(w), 1)), fp / n_different])
        auc[first:first + len(w)] = np.trapezoid(tpr, fpr, axis=1)
        # _equal_error_rate, row by row: the first step where false rejects no longer exceed
        # false accepts, interpolated linearly from the step before.
        d = (1.0 - tpr) - fpr
        i = np.argmax(d <= 0, axis=1)
        rows = np.arange(len(w))
        prev = np.maximum(i - 1, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = d[rows, prev] / (d[rows, prev] - d[rows, i])
            crossing = fpr[rows, prev] + t * (fpr[rows, i] - fpr[rows, prev])
        eer[first:first + len(w)] = np.where(i == 0, fpr[:, 0], crossing)
        bad = (n_same[:, 0] <= 0) | (n_different[:, 0] <= 0)
        auc[first:first + len(w)][bad] = np.nan
        eer[first:first + len(w)][bad] = np.nan
    return auc, eer


def verification_table(pairs: pd.DataFrame, by_azimuth: bool = True,
                       azimuth_bin: float = 15.0, resamples: int = RESAMPLES,
                       random_state: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """ROC AUC and equal error rate per feature set (and per |azimuth| bin when ``by_azimuth``),
    each with its bootstrap interval over held-out identities: a pair belongs to its probe's
    identity, and each resample reweighs the pairs (:func:`weighted_auc_eer`); nothing is
    refitted.

    Returns:
        columns feature, [abs_azimuth,] auc, auc_low, auc_high, eer, eer_low, eer_high, n_same,
        n_different, resamples.
    """
    resamples = check_resamples(resamples)
    frame = pairs.copy()
    keys = ["feature"]
    if by_azimuth:
        frame["abs_azimuth"] = _bin(np.abs(frame["azimuth"]), azimuth_bin)
        keys.append("abs_azimuth")
    ids, weights = identity_weights(frame["identity"], resamples, random_state)
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        same, similarity = group["same"].to_numpy(), group["similarity"].to_numpy()
        auc, eer = _roc_auc_eer(same, similarity)
        col = np.searchsorted(ids, group["identity"].to_numpy())
        auc_samples, eer_samples = weighted_auc_eer(same, similarity, weights[:, col])
        (auc_low, eer_low), (auc_high, eer_high) = percentile_interval(
            np.stack([auc_samples, eer_samples]), level)
        rows.append((*key, auc, auc_low, auc_high, eer, eer_low, eer_high,
                     int(group["same"].sum()), int((~group["same"]).sum())))
    out = pd.DataFrame(rows, columns=keys + ["auc", "auc_low", "auc_high", "eer", "eer_low",
                                             "eer_high", "n_same", "n_different"])
    return _sort(out.assign(resamples=resamples), keys)


# -- plots: draw frames ---------------------------------------------------------------------------

_FACTOR_LABEL = {"abs_azimuth": "|azimuth| (degrees from frontal)",
                 "elevation": "elevation (degrees)", "light": "light azimuth (degrees)"}


def plot_accuracy(frame: pd.DataFrame, factor: str, chance: float | None = None):
    """Accuracy against one factor: a panel per (protocol, classifier), a line per feature set.

    Args:
        frame: :func:`accuracy_by`'s frame for ``factor``.
        factor: ``abs_azimuth``, ``elevation`` or ``light``.
        chance: draws a dashed chance line at this accuracy.
    Returns:
        the matplotlib Figure.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import seaborn as sns

    data = _order(frame)
    with sns.axes_style("whitegrid"):
        grid = sns.relplot(data=data, x=factor, y="accuracy", hue="feature", style="feature",
                           row="protocol", col="classifier", kind="line", markers=True,
                           dashes=False, height=2.8, aspect=1.15,
                           facet_kws={"sharey": True, "margin_titles": True})
    for ax in grid.axes.flat:
        ax.set_ylim(-0.02, 1.02)
        if chance is not None:
            ax.axhline(chance, color="grey", lw=0.8, ls="--")
    grid.set_axis_labels(_FACTOR_LABEL.get(factor, factor), "identification accuracy")
    name = {"abs_azimuth": "|azimuth|"}.get(factor, factor)
    grid.figure.suptitle(f"Identification of held-out faces against {name}"
                         + (" (dashed: chance)" if chance is not None else ""), y=1.02)
    return grid.figure


def plot_verification(frame: pd.DataFrame):
    """Verification ROC AUC against |azimuth|, a line per feature set (``verification_table``)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(5, 3.4))
        sns.lineplot(data=_order(frame), x="abs_azimuth", y="auc", hue="feature", style="feature",
                     markers=True, dashes=False, ax=ax)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(_FACTOR_LABEL["abs_azimuth"])
    ax.set_ylabel("ROC AUC (same vs different)")
    ax.set_title("Verification against the frontal reference", fontsize=10)
    fig.tight_layout()
    return fig


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))
    return path


# -- the experiment -------------------------------------------------------------------------------

@dataclass
class RecognitionResult:
    """Everything :func:`run_recognition` computed; ``files`` maps a role to the path written."""

    predictions: pd.DataFrame
    accuracy: pd.DataFrame
    summary: pd.DataFrame
    comparison: pd.DataFrame
    verification: pd.DataFrame
    verification_summary: pd.DataFrame
    params: dict
    files: dict[str, Path] = field(default_factory=dict)


def feature_sets(models: Sequence = (), pca: PixelPCA | None = None, *, cache_dir=None,
                 progress: ProgressFactory | None = None) -> dict[str, FeatureFn]:
    """The experiment's named feature callables: each model's (:func:`model_feature_sets`), pca
    (a fitted :class:`PixelPCA`) and pixels."""
    out: dict[str, FeatureFn] = {}
    for model in models:
        out.update(model_feature_sets(model, cache_dir=cache_dir, progress=progress))
    if pca is not None:
        out["pca"] = pca
    out["pixels"] = pixel_features
    return out


def run_recognition(models: Sequence = (), *, out=None, n_identities: int = 100,
                    size: int | None = None, grid: ProbeGrid | None = None,
                    classifiers: Sequence[str] = CLASSIFIERS,
                    protocols: Sequence[str] = PROTOCOLS,
                    pca_components: int | None = 200, pca_identities: int = 500,
                    pca_images: int = 2000, extra_features: Mapping[str, FeatureFn] | None = None,
                    large_pose: float = LARGE_POSE, cache_dir=None, code_cache_dir=None,
                    random_state: int = 0, resamples: int = RESAMPLES,
                    progress: ProgressFactory | None = None) -> RecognitionResult:
    """Run the invariant face-recognition experiment and (with ``out``) write its outputs.

    Args:
        models: models (:class:`dcign_eval.protocol.Model`, or specs for ``load_model``), each
            giving the feature sets of :func:`model_feature_sets`; the first model's intrinsic
            block (else its full code) is the reference of :func:`pose_comparison`.
        out: output directory for the CSVs, plots and run.json; None writes nothing.
        n_identities: held-out identities (>= 2).
        size: image size of the pixel and PCA feature sets; None takes the first model's (64
            without models). Each model sees the same faces rendered at its own size.
        grid: gallery and probe views (:class:`ProbeGrid`).
        classifiers, protocols: subsets of :data:`CLASSIFIERS` and :data:`PROTOCOLS`.
        pca_components: PCA dimensions (None: no PCA feature set); fitted on ``pca_images``
            images of ``pca_identities`` training identities at random views.
        extra_features: more named feature callables images -> (N, F).
        large_pose: |azimuth| (degrees) from which :func:`summary_table` and
            :func:`pose_comparison` count a probe as a large pose change.
        cache_dir: rendered faces are kept here (default ``out/cache``; None with no ``out``
            disables it).
        code_cache_dir: the cache of encoded codes (None: ``$DCIGN_EVAL_CACHE``).
        random_state: seed of every random choice (probe draw, impostors, PCA, classifiers,
            the bootstrap).
        resamples: bootstrap resamples of the held-out identities behind every accuracy, ROC
            AUC and equal error rate's 95% interval (``*_low``, ``*_high`` columns); 0: none.
        progress: ``progress(total, description)`` context manager yielding ``advance(n)``
            (e.g. :func:`dcign_eval.console.progress_bar`).

    Returns:
        a :class:`RecognitionResult`.
    """
    started = time.time()
    seed = _seed(random_state)
    resamples = check_resamples(resamples)
    n_identities = _check_identities(n_identities)
    grid = grid or ProbeGrid()
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown or not classifiers:
        raise DcignError(f"unknown classifier {unknown[0] if unknown else None!r}; choose from "
                         f"{', '.join(CLASSIFIERS)}")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise DcignError(f"unknown protocol {unknown[0] if unknown else None!r}; choose from "
                         f"{', '.join(PROTOCOLS)}")
    models = [as_model(m) for m in models]
    if size is None:
        size = int(models[0].image_size) if models else 64
    if out is not None:
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DcignError(f"cannot create the output directory {out}: {e.strerror}") from None
        if cache_dir is None:
            cache_dir = out / "cache"

    faces = {size: recognition_faces(n_identities, grid, size, seed, cache_dir=cache_dir,
                                     progress=progress)}
    for s in dict.fromkeys(int(m.image_size) for m in models):
        if s not in faces:  # the same faces at a model's own size
            faces[s] = recognition_faces(n_identities, grid, s, seed, cache_dir=cache_dir,
                                         progress=progress)
    pca = None
    if pca_components:
        train = training_faces(pca_identities, pca_images, size, seed, cache_dir=cache_dir,
                               progress=progress)
        pca = PixelPCA(pca_components, seed).fit(train.images)
    features, owners = {}, {}
    for model in models:
        own = extract_features(model_feature_sets(model, cache_dir=code_cache_dir,
                                                  progress=progress),
                               faces[int(model.image_size)].images)
        features.update(own)
        owners.update(dict.fromkeys(own, model.name))
    fns = feature_sets((), pca)
    fns.update(extra_features or {})
    features.update(extract_features(fns, faces[size].images))
    factors = faces[size].factors

    predictions = identification_predictions(features, factors, classifiers, protocols, seed)
    accuracy = accuracy_table(predictions, grid.azimuth_step, grid.elevation_step,
                              grid.light_step, resamples, seed)
    pairs = verification_pairs(features, factors, seed)
    reference = next(iter(features)) if models else None
    params = {"n_identities": n_identities, "size": int(size), "grid": grid.params(),
              "classifiers": list(classifiers), "protocols": list(protocols),
              "pca": {"components": pca_components, "identities": pca_identities,
                      "images": pca_images} if pca_components else None,
              "large_pose": float(large_pose), "random_state": seed,
              "interval": {"level": LEVEL, "resamples": resamples,
                           "method": "percentile bootstrap over held-out identities"},
              "features": {name: int(x.shape[1]) for name, x in features.items()},
              "models": {m.name: {"source": m.source, "image size": m.image_size,
                                  "fingerprint": m.fingerprint} for m in models},
              "reference": reference,
              "n_gallery_one_view": int((factors["view"] == "reference").sum()),
              "n_gallery_several_views": int(factors["view"].isin(
                  ["reference", "gallery"]).sum()),
              "n_probes": int((factors["view"] == "probe").sum()),
              "chance": 1.0 / n_identities}
    result = RecognitionResult(
        predictions=with_model(predictions, owners), accuracy=with_model(accuracy, owners),
        summary=with_model(summary_table(predictions, large_pose, resamples, seed), owners),
        comparison=pose_comparison(predictions, reference or "", large_pose,
                                   resamples=resamples, random_state=seed),
        verification=with_model(verification_table(pairs, by_azimuth=True,
                                                   azimuth_bin=grid.azimuth_step,
                                                   resamples=resamples, random_state=seed),
                                owners),
        verification_summary=with_model(verification_table(pairs, by_azimuth=False,
                                                           resamples=resamples,
                                                           random_state=seed), owners),
        params=params)
    if out is not None:
        try:
            write_outputs(result, out)
        except OSError as e:
            raise DcignError(f"cannot write the results to {out}: {e.strerror or e}") from None
        params["seconds"] = round(time.time() - started, 1)
        result.files["run"] = out / "run.json"
        atomic_write_json(out / "run.json", dict(params, files={k: str(v) for k, v in
                                                               result.files.items()}))
    return result


def with_model(frame: pd.DataFrame, owners: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with a first column ``model``: the model each feature set comes from (empty for
    PCA of pixels, pixels and other features of no model)."""
    return frame.assign(model=frame["feature"].map(lambda f: owners.get(f, "")))[
        ["model", *frame.columns]]


def write_outputs(result: RecognitionResult, out) -> dict[str, Path]:
    """Write the CSVs and plots of ``result`` into ``out``; returns (and records) the paths."""
    out = Path(out)
    chance = result.params.get("chance")
    files = result.files
    files["accuracy"] = _write_csv(result.accuracy, out / "recognition.csv")
    files["summary"] = _write_csv(result.summary, out / "summary.csv")
    files["comparison"] = _write_csv(result.comparison, out / "comparison.csv")
    files["verification"] = _write_csv(result.verification, out / "verification.csv")
    files["verification_summary"] = _write_csv(result.verification_summary,
                                               out / "verification_summary.csv")
    files["plot_azimuth"] = _save_figure(
        plot_accuracy(accuracy_by(result.accuracy, "abs_azimuth"), "abs_azimuth", chance),
        out / "accuracy_vs_azimuth.png")
    files["plot_light"] = _save_figure(
        plot_accuracy(accuracy_by(result.accuracy, "light"), "light", chance),
        out / "accuracy_vs_light.png")
    files["plot_verification"] = _save_figure(plot_verification(result.verification),
                                              out / "verification_vs_azimuth.png")
    return files
