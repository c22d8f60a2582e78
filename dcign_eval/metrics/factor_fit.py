"""The DC-IGN paper's own measurements of a disentangled code.

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167. The paper trains named latents (0 = face azimuth, 1 = elevation,
2 = light azimuth; 3.. = the intrinsic block: identity) and shows scatter plots of each named
latent against its true factor on test faces (Section 4, Figure 6), without numbers. These
functions put numbers on those claims:

- :func:`monotone_fit`: for one named latent, Spearman |rho| with its factor and the R^2 of the
  best monotone (isotonic) fit of the latent as a function of the factor. The paper plots raw
  encoder values with no regressor; a monotone map is what those plots show when the latent
  "is" the factor, whatever its scale or curvature.
- :func:`named_neuron_fits`: the same for several named latents at once.
- :func:`fold_fit`: whether a latent encodes *which way* its factor goes or only *how far* it is
  from some inner value (a U-shaped latent: the same code for a head turned left and right, which
  Spearman |rho| reads as a poor fit without saying why).
- :func:`neuron_diagnostics`: why a named latent's Spearman is what it is: its precision when
  only its factor changes, how far each nuisance factor shifts it, its shape, and its noise.
- :func:`intrinsic_invariance`: how invariant the intrinsic block is to the extrinsic factors:
  the mean distance between codes of the *same* identity (rendered under different pose and
  light) divided by the mean distance between codes of *different* identities. 0 = perfectly
  invariant, about 1 = identity is not what the block encodes.

Pure functions on arrays: codes (N, D), factor values (N,), identity labels (N,).
Undefined cases (a constant latent or factor, a collapsed block) score 0.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression

from dcign_eval.metrics import _utils
from trainer.errors import DcignError


def _check_vector(values, name: str, n: int | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise DcignError(f"{name} must be a 1-D array, got shape {values.shape}")
    if n is not None and len(values) != n:
        raise DcignError(f"{name} has {len(values)} values, expected {n}")
    if not np.all(np.isfinite(values)):
        raise DcignError(f"{name} contains NaN or inf")
    return values


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - fitted) ** 2) / total) if total > 0 else 0.0


def _isotonic_r2(y: np.ndarray, x: np.ndarray) -> float:
    """R^2 of the better of the increasing and the decreasing isotonic fit of y on x."""
    return max(_r2(y, IsotonicRegression(increasing=inc).fit_transform(x, y))
               for inc in (True, False))


def monotone_fit(latent, factor) -> dict[str, float]:
    """How well one latent follows one factor.

    Args:
        latent: (N,) values of the latent (e.g. the encoder mean of the azimuth neuron).
        factor: (N,) true values of its factor (e.g. azimuth in degrees, or grid indices).

    Returns:
        dict with ``spearman`` (|rho|, rank correlation) and ``r2`` (R^2 of the latent against
        the better of the increasing and the decreasing isotonic regression on the factor);
        both in [0, 1], 0 when the latent or the factor is constant.
    """
    latent = _check_vector(latent, "latent")
    factor = _check_vector(factor, "factor", len(latent))
    if len(latent) < 2 or np.ptp(latent) == 0 or np.ptp(factor) == 0:
        return {"spearman": 0.0, "r2": 0.0}
    rho = spearmanr(factor, latent).statistic
    r2 = _isotonic_r2(latent, factor)
    return {"spearman": float(abs(rho)) if np.isfinite(rho) else 0.0, "r2": max(0.0, r2)}


#: A latent is called U-shaped when a monotone fit on the distance of its factor from an inner
#: value explains at least this share of the variance the best monotone fit on the factor leaves
#: unexplained.
U_SHAPE_MARGIN = 0.25


def fold_fit(latent, factor, margin: float = U_SHAPE_MARGIN) -> dict[str, float | bool]:
    """Does a latent say which way its factor goes, or only how far it is from some value?

    Two fits of the latent, each the best monotone (isotonic) one: on the factor itself, and on
    the factor *folded* at an inner value c, |factor - c|, with c the value among the factor's
    own in the middle half of its range that fits best. A latent that encodes how far a head is
    turned but not to which side (the same code at -60 and +60 degrees) fits the folded factor
    and not the factor; one that orders its factor fits both about as well, or the factor better.

    Args:
        latent: (N,) values of the latent.
        factor: (N,) true values of its factor.
        margin: the share of the variance the monotone fit leaves unexplained that the folded
            fit must explain on top of it to call the latent U-shaped.

    Returns:
        dict with ``monotone_r2`` (the fit on the factor), ``folded_r2`` (the fit on
        |factor - fold_at|), ``fold_at`` (c; NaN when the factor has no inner value) and
        ``u_shaped`` (folded_r2 - monotone_r2 > margin * (1 - monotone_r2)). R^2 values are
        in [0, 1], 0 when the latent or the factor is constant.
    """
    latent = _check_vector(latent, "latent")
    factor = _check_vector(factor, "factor", len(latent))
    out = {"monotone_r2": 0.0, "folded_r2": 0.0, "fold_at": float("nan"), "u_shaped": False}
    if len(latent) < 3 or np.ptp(latent) == 0 or np.ptp(factor) == 0:
        return out
    out["monotone_r2"] = max(0.0, _isotonic_r2(latent, factor))
    lo, hi = factor.min() + 0.25 * np.ptp(factor), factor.max() - 0.25 * np.ptp(factor)
    values = np.unique(factor)
    for c in values[(values >= lo) & (values <= hi)]:
        r2 = max(0.0, _isotonic_r2(latent, np.abs(factor - c)))
        if r2 > out["folded_r2"]:
            out["folded_r2"], out["fold_at"] = r2, float(c)
    out["u_shaped"] = bool(out["folded_r2"] - out["monotone_r2"]
                           > margin * (1 - out["monotone_r2"]))
    return out


def named_neuron_fits(codes, factor_values: Mapping[str, np.ndarray],
                      neurons: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """:func:`monotone_fit` of each named latent against its factor.

    Args:
        codes: (N, D) encoder means.
        factor_values: factor name -> (N,) true values.
        neurons: factor name -> index of its named latent (DC-IGN: azimuth 0, elevation 1,
            light 2).

    Returns:
        factor name -> dict(neuron=index, spearman=|rho|, r2=R^2), in the order of ``neurons``.
    """
    codes = _utils.check_codes(codes)
    out = {}
    for name, neuron in neurons.items():
        if name not in factor_values:
            raise DcignError(f"no values for factor {name!r}; have {sorted(factor_values)}")
        if not 0 <= int(neuron) < codes.shape[1]:
            raise DcignError(f"neuron {neuron} for {name!r} is outside the code's "
                             f"{codes.shape[1]} dims")
        fit = monotone_fit(codes[:, int(neuron)], factor_values[name])
        out[name] = {"neuron": int(neuron), **fit}
    return out


def within_between_distances(block, identity, *, max_points: int | None = None,
                             random_state=None, chunk: int = 1024) -> tuple[float, float]:
    """Mean Euclidean distance between codes of the same identity and of different identities.

    Args:
        block: (N, d) codes of the block (e.g. the intrinsic latents 3..199).
        identity: (N,) identity label of each row.
        max_points: use a random subset of this many rows (the cost is O(N^2)); None = all.
        random_state: Generator (or seed) choosing the subset.
        chunk: rows per distance block (bounds memory).

    Returns:
        (mean within-identity distance, mean between-identity distance) over pairs of distinct
        rows.
    """
    block = _utils.check_codes(block, name="block", min_rows=2)
    identity = np.asarray(identity)
    if identity.shape != (block.shape[0],):
        raise DcignError(f"identity must have one label per row ({block.shape[0]}), "
                         f"got shape {identity.shape}")
    if max_points is not None and block.shape[0] > max_points:
        rng = _utils.as_generator(random_state)
        keep = np.sort(rng.choice(block.shape[0], size=int(max_points), replace=False))
        block, identity = block[keep], identity[keep]
    _, labels, counts = np.unique(identity, return_inverse=True, return_counts=True)
    labels = labels.reshape(-1)
    n = len(labels)
    n_within = float(np.sum(counts * (counts - 1)))  # ordered pairs, self-pairs excluded
    n_between = float(n * n - np.sum(counts**2))
    if n_within == 0 or n_between == 0:
        raise DcignError("intrinsic invariance needs at least two rows of one identity and two "
                         f"identities; got {len(counts)} identities, at most {counts.max()} "
                         "rows each")
    within = between = 0.0
    for start in range(0, n, chunk):
        dist = cdist(block[start: start + chunk], block)
        same = labels[start: start + chunk, None] == labels[None, :]
        within += dist[same].sum()  # self-distances are 0 and add nothing
        between += dist[~same].sum()
    return within / n_within, between / n_between


def intrinsic_invariance(block, identity, *, max_points: int | None = None,
                         random_state=None) -> float:
    """Invariance of a code block to everything but identity: mean within-identity distance /
    mean between-identity distance (0 = invariant; 0 also for a collapsed block, where both are 0).

    Args:
        block: (N, d) codes of the block, rows spanning several poses / lights per identity.
        identity: (N,) identity label of each row.
        max_points: use a random subset of this many rows; None = all.
        random_state: Generator (or seed) choosing the subset.
    """
    within, between = within_between_distances(block, identity, max_points=max_points,
                                               random_state=random_state)
    return float(within / between) if between > 0 else 0.0


#: Factors of the face world's grid, in order; a named neuron's nuisances are the other three.
GRID_FACTORS = ("identity", "azimuth", "elevation", "light")


def neuron_diagnostics(latent, posterior_sd, factors, factor: str) -> dict[str, float]:
    """Why a named neuron's Spearman |rho| over a whole grid is what it is.

    Splits the grid-wide figure of :func:`monotone_fit` into the neuron's *precision* (does it
    rank its factor when nothing else changes?) and its *invariance* (does it shift when a
    nuisance factor changes?), and compares its spread with its own sampling noise.

    Args:
        latent: (N,) encoder means of the neuron over a complete factor grid.
        posterior_sd: (N,) the encoder's standard deviations of the same neuron, or None for a
            model without a posterior (``posterior_sd`` is then NaN).
        factors: table (N rows) with the columns of :data:`GRID_FACTORS`.
        factor: the neuron's factor (one of azimuth, elevation, light).

    Returns:
        dict with
        ``spearman`` (grid-wide |rho|, as :func:`monotone_fit`);
        ``within_cell`` (mean |rho| inside each cell where only ``factor`` varies);
        ``offset_free`` (|rho| after subtracting each cell's mean: the grid-wide figure a
        neuron with this precision would reach if no nuisance shifted it);
        ``gain_cv`` (coefficient of variation over cells of the neuron's least-squares slope on
        its factor: 0 when every cell responds alike; a gain that changes with a nuisance keeps
        ``offset_free`` below 1 however precise each cell is);
        ``eta2_<nuisance>`` (share of the neuron's variance explained by each other factor's
        means: how far it moves with that nuisance; 0 is invariant);
        ``monotone_r2``, ``folded_r2``, ``fold_at``, ``u_shaped`` (:func:`fold_fit` of the
        neuron with each cell's offset removed: does it say which way its factor goes, or only
        how far it is from ``fold_at``?);
        ``code_sd`` (spread of the means) and ``posterior_sd`` (mean encoder sd) -- a neuron
        whose noise exceeds its spread carries its factor poorly.
    """
    latent = _check_vector(latent, "latent")
    sd = None if posterior_sd is None else _check_vector(posterior_sd, "posterior_sd",
                                                         len(latent))
    missing = [c for c in GRID_FACTORS if c not in factors]
    if missing:
        raise DcignError(f"factors lack the columns {missing}")
    if factor not in GRID_FACTORS[1:]:
        raise DcignError(f"unknown factor {factor!r}; choose from {', '.join(GRID_FACTORS[1:])}")
    nuisances = [c for c in GRID_FACTORS if c != factor]
    frame = pd.DataFrame({c: np.asarray(factors[c]) for c in GRID_FACTORS})
    frame["z"] = latent
    cells = frame.groupby(nuisances, sort=False)
    within, slopes = [], []
    for _, cell in cells:
        f, z = cell[factor].to_numpy(float), cell.z.to_numpy()
        if len(cell) >= 2 and np.ptp(f) > 0:
            slopes.append(np.polyfit(f, z, 1)[0])
            if np.ptp(z) > 0:
                within.append(abs(spearmanr(f, z).statistic))
    offset_free = frame.z - cells.z.transform("mean")
    var = latent.var()
    out = {"spearman": monotone_fit(latent, frame[factor])["spearman"],
           "within_cell": float(np.mean(within)) if within else 0.0,
           "offset_free": monotone_fit(offset_free.to_numpy(), frame[factor])["spearman"]}
    mean_slope = float(np.mean(slopes)) if slopes else 0.0
    out["gain_cv"] = float(np.std(slopes) / abs(mean_slope)) if mean_slope else float("inf")
    for c in nuisances:
        means = frame.groupby(c).z.transform("mean").to_numpy()
        out[f"eta2_{c}"] = float(means.var() / var) if var > 0 else 0.0
    # the shape of its response to its own factor, with each cell's offset removed (a nuisance
    # that shifts the neuron would otherwise hide a U under its spread)
    out.update(fold_fit(offset_free.to_numpy(), frame[factor].to_numpy(float)))
    out["code_sd"] = float(latent.std())
    out["posterior_sd"] = float(sd.mean()) if sd is not None else float("nan")
    return out


def describe_shape(neuron: str, fit: dict) -> str | None:
    """One line naming a U-shaped neuron (:func:`fold_fit`'s ``fit``); None for the others."""
    if not fit.get("u_shaped"):
        return None
    return (f"the {neuron} neuron is U-shaped: it encodes how far {neuron} is from "
            f"{fit['fold_at']:g}, not which way (R^2 {fit['folded_r2']:.2f} against the distance, "
            f"{fit['monotone_r2']:.2f} monotone in {neuron})")


def code_budget(mu, posterior_sd, latent_names: Mapping[str, int],
                active_nats: float = 0.1) -> list[dict]:
    """Where a code's information goes: KL(q(z|x) || N(0, I)) per image, by block.

    The KL term of the ELBO bounds what the code carries about an image; split by latents it
    shows what each part of the code is paid for. Rows, one per named latent, then the rest
    (``intrinsic`` for a DC-IGN, ``code`` for an entangled model), then ``total`` when there are
    named latents; each with ``latents`` (count), ``active`` (latents whose mean KL exceeds
    ``active_nats``) and ``kl_nats`` (mean per image, summed over the block's latents).

    Args:
        mu, posterior_sd: (N, d) encoder means and standard deviations.
        latent_names: name -> index of the named latents ({} for an entangled model).
    """
    mu = np.asarray(mu, dtype=np.float64)
    sd = np.asarray(posterior_sd, dtype=np.float64)
    if mu.ndim != 2 or sd.shape != mu.shape or not len(mu):
        raise DcignError(f"mu and posterior_sd must be one non-empty (N, d) shape, got "
                         f"{mu.shape} and {sd.shape}")
    if (sd <= 0).any():
        raise DcignError("posterior_sd must be positive")
    kl = (0.5 * (mu ** 2 + sd ** 2 - 1) - np.log(sd)).mean(0)  # per latent, mean over images
    named = dict(latent_names)
    rest = [i for i in range(mu.shape[1]) if i not in named.values()]
    blocks = [(name, [i]) for name, i in named.items()]
    blocks.append(("intrinsic" if named else "code", rest))
    if named:
        blocks.append(("total", list(range(mu.shape[1]))))
    return [{"block": name, "latents": len(idx), "active": int((kl[idx] > active_nats).sum()),
             "kl_nats": float(kl[idx].sum())} for name, idx in blocks]
