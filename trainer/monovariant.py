"""Monovariant training: the clamp, the invariance gradient, and the batch-type sampler.

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015 (arXiv 1503.03167),
section 3.1: each batch varies one scene factor only (a *monovariant batch*). The latents that
should not explain it (the *inactive* ones) are

* forward: clamped to the batch mean, so the decoder must explain the batch with the active
  latents alone (the original code clamped to the batch's first sample; the paper says the mean).
  Both mu and log-variance are clamped, before z is sampled.
* backward: their gradient is replaced by ``invariance_strength * (x_i - mean_j x_j)``, where x is
  the encoder's output *before* the clamp. That is the descent gradient of the penalty
  ``0.5 * s * sum_i ||x_i - mean||^2`` (the deviations sum to zero, so the mean's own dependence on
  x_i drops out) and pulls each sample's inactive latents toward the batch mean. The original code
  did gradient ascent on the ELBO with this term left unchanged, which pushed latents away from the
  mean; here the loss is minimised and the sign is the penalty's.

``invariance_scale = "relative"`` (not in the paper; default off) makes the penalty a ratio: the
spread latent j shows when its factor is held fixed over the spread it shows when its factor
varies, both kept as running estimates (:class:`ActiveSpread`). The absolute pull can be lowered
by shrinking a latent as a whole (signal and leak alike), and at large strengths it squeezes a
named neuron below its own encoder noise; the ratio cannot be lowered that way. Dividing the
pull alone by the active spread is not enough: the pull still shrinks the latent, its spread
estimate follows, the pull grows, and the latent collapses (measured: elevation spread 1.6 -> 0.1
in 3,000 steps at s = 10). So active batches also get the ratio's other derivative, a push apart.

``invariance_scale = "split"`` (not in the paper) gives the named latents the absolute pull and
the intrinsic block the relative penalty. The absolute pull orders the named neurons best (it
squeezes whatever of a clamped factor leaks into them); on the intrinsic block it shrinks the
whole block, identity signal included, and opens the within/between-identity ratio.

With the absolute pull the active group's gradient passes unchanged. mu and log-variance each
get their own filter: both are clamped, and an inactive log-variance that varies across a
monovariant batch is as much a leak of the factor as a varying mean. The KL term is computed on
the clamped values (as the original): only active latents receive reconstruction and KL
gradient.

Batch types and their active group (the original's monovariant_main.lua):

======================  ==============================
AZ_VARIED               azimuth (latent 0)
EL_VARIED               elevation (latent 1)
LIGHT_VARIED            light (latent 2)
SHAPE_VARIED            intrinsic block (3..D-1)
======================  ==============================
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from trainer.errors import DcignError
from trainer.faces.datasets import BATCH_TYPES

# batch type -> name of its active latent; "intrinsic" is the block after the named latents
ACTIVE_GROUP = {"AZ_VARIED": "azimuth", "EL_VARIED": "elevation", "LIGHT_VARIED": "light",
                "SHAPE_VARIED": "intrinsic"}
DEFAULT_RATIO = (1.0, 1.0, 1.0, 10.0)  # azimuth : elevation : light : intrinsic (paper, sec. 4)
INVARIANCE_SCALES = ("absolute", "relative", "split")


class ClampInvariance(torch.autograd.Function):
    """Clamp the inactive columns of x (N, D) to the batch mean; invariance gradient back.

    forward(x, inactive, strength, push=None):  # strength: a number or one per column
        out[:, j] = x[:, j]                          for active j
        out[:, j] = mean_i x[i, j]                   for inactive j
    backward(grad_out):
        grad_x[:, j] = grad_out[:, j] - push[j] * (x[:, j] - mean_i x[i, j])  for active j
        grad_x[:, j] = strength * (x[:, j] - mean_i x[i, j]) for inactive j (grad_out ignored)

    ``push`` (one per column, or None for 0) is the relative pull's push apart; see
    :class:`ActiveSpread`.
    """

    @staticmethod
    def forward(ctx, x, inactive, strength, push=None):
        ref = x.mean(0)
        mask = inactive.to(x.device)
        strength = (strength.to(x.device, x.dtype) if torch.is_tensor(strength)
                    else torch.tensor(float(strength), device=x.device, dtype=x.dtype))
        push = (torch.zeros((), device=x.device, dtype=x.dtype) if push is None
                else push.to(x.device, x.dtype))
        ctx.save_for_backward(x, mask, strength, push)
        return torch.where(mask, ref.expand_as(x), x)

    @staticmethod
    def backward(ctx, grad_out):
        x, mask, strength, push = ctx.saved_tensors
        centred = x - x.mean(0, keepdim=True)
        grad = torch.where(mask, strength * centred, grad_out - push * centred)
        return grad.to(grad_out.dtype), None, None, None


def clamp_invariance(x: torch.Tensor, inactive: torch.Tensor,
                     strength: float | torch.Tensor = 0.01,
                     push: torch.Tensor | None = None) -> torch.Tensor:
    """Functional form of :class:`ClampInvariance`; ``inactive`` is a bool mask of shape (D,),
    ``strength`` a number or a tensor of one strength per column, ``push`` None or one per
    column."""
    return ClampInvariance.apply(x, inactive, strength, push)


def inactive_mask(batch_type: str, latent_names: dict, latent_dim: int) -> torch.Tensor:
    """Bool mask (latent_dim,) of the latents clamped for a monovariant batch of ``batch_type``."""
    if batch_type not in ACTIVE_GROUP:
        raise DcignError(f"unknown batch type {batch_type!r}; expected one of {BATCH_TYPES}")
    group = ACTIVE_GROUP[batch_type]
    inactive = torch.ones(latent_dim, dtype=torch.bool)
    if group == "intrinsic":
        inactive[len(latent_names):] = False
    else:
        if group not in latent_names:
            raise DcignError(f"a {batch_type} batch needs a latent named {group!r}; "
                             f"the model names {sorted(latent_names)}")
        inactive[latent_names[group]] = False
    return inactive


class ActiveSpread:
    """Running within-batch variances of each latent's mean, for the relative invariance pull.

    For latent j: ``v_j``, the mean per-sample within-batch variance of mu_j over the batches where
    j is *active*, and ``u_j`` the same over the batches where it is clamped (before the clamp),
    with counts ``n_act_j`` and ``n_in_j``. Each batch updates one side of each column:
    ``v <- (1 - a) v + a var_i(mu_i)`` with ``a = max(1 / n, decay)``, so the first batches
    average exactly and later ones follow the latent as it trains. Unseen: v = 1 (the prior's
    variance), u = 0.

    The penalty descended is ``L_j = 0.5 * s * N * u_j / v_j`` (leak over signal): per clamped
    batch that is the pull ``s * (x - mean) / v_j``, and, since v depends on the weights too, per
    active batch a push apart ``-s * (n_in / n_act) * (u_j / v_j) * (x - mean) / v_j`` (the
    ratio's other derivative, weighted so that both sides have the expectation of dL). Scaling a
    latent by c scales both by 1/c and leaves L unchanged, so shrinking a latent no longer lowers
    its penalty. ``floor`` bounds v from below: a dead latent (sd under 0.1 against the prior's 1)
    gets at most 100 times the absolute pull, not an unbounded one.
    """

    _FIELDS = ("active_var", "inactive_var", "active_count", "inactive_count")  # the saved state

    def __init__(self, latent_dim: int, decay: float = 0.01, floor: float = 1e-2,
                 device: torch.device | str = "cpu"):
        self.decay, self.floor = decay, floor
        f64 = dict(dtype=torch.float64, device=device)
        self.active_var = torch.ones(latent_dim, **f64)
        self.inactive_var = torch.zeros(latent_dim, **f64)
        self.active_count = torch.zeros(latent_dim, **f64)
        self.inactive_count = torch.zeros(latent_dim, **f64)

    def update(self, mu: torch.Tensor, active: torch.Tensor) -> None:
        active = active.to(self.active_count.device)
        var = mu.detach().to(torch.float64).var(0, unbiased=False)
        self.active_var, self.active_count = self._ema(self.active_var, self.active_count,
                                                       var, active)
        self.inactive_var, self.inactive_count = self._ema(self.inactive_var,
                                                           self.inactive_count, var, ~active)

    def _ema(self, mean, count, value, where):
        count = count + where
        a = torch.clamp(1.0 / count.clamp(min=1.0), min=self.decay)
        return torch.where(where, (1 - a) * mean + a * value, mean), count

    def strengths(self, strength: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per latent: the pull on clamped batches, ``s / v``, and the push on active batches,
        ``s * (n_in / n_act) * (u / v) / v`` (0 before the latent has been seen on both sides)."""
        v = self.active_var.clamp(min=self.floor)
        pull = strength / v
        weight = self.inactive_count / self.active_count.clamp(min=1.0)
        push = pull * weight * self.inactive_var / v
        return pull.float(), push.float()

    def state_dict(self) -> dict:
        return {k: getattr(self, k).cpu() for k in self._FIELDS}

    def load_state_dict(self, state: dict) -> None:
        if sorted(state) != sorted(self._FIELDS):
            raise DcignError(f"saved invariance spread has fields {sorted(state)}, expected "
                             f"{sorted(self._FIELDS)}")
        for k in self._FIELDS:
            mine = getattr(self, k)
            if state[k].shape != mine.shape:
                raise DcignError(f"saved invariance spread has {tuple(state[k].shape)} latents, "
                                 f"the model {tuple(mine.shape)}")
            setattr(self, k, state[k].to(mine.device, torch.float64))


class MonovariantClamp:
    """The ``clamp`` argument of :meth:`trainer.model.DCIGN.forward` for one batch type.

    With ``spread`` (an :class:`ActiveSpread` shared by all batch types) the pull is relative:
    each call first updates the spread with this batch, then divides each inactive latent's pull
    (on its mean and its log-variance alike) by its active spread, and pushes the active latents'
    means apart by the penalty's other derivative (see :class:`ActiveSpread`). ``strength`` is a
    number or one per latent (``intrinsic_strength``: the intrinsic block's own). ``absolute``, a
    bool mask (D,) used with ``spread``, keeps the absolute pull (and no push) on its latents
    (``invariance_scale = "split"``: the named latents).
    """

    def __init__(self, inactive: torch.Tensor, strength: float | torch.Tensor = 0.01,
                 spread: ActiveSpread | None = None, absolute: torch.Tensor | None = None):
        if absolute is not None and spread is None:
            raise DcignError("an absolute-pull mask only means something beside a relative "
                             "spread")
        self.inactive, self.strength = inactive, strength
        self.spread, self.absolute = spread, absolute

    def __call__(self, mu: torch.Tensor, logvar: torch.Tensor):
        strength, push = self.strength, None
        if self.spread is not None:
            self.spread.update(mu, ~self.inactive)
            strength, push = self.spread.strengths(self.strength)
            if self.absolute is not None:  # split: these keep the absolute pull, no push
                strength = torch.where(self.absolute, self.strength, strength)
                push = push.masked_fill(self.absolute, 0.0)
        return (clamp_invariance(mu, self.inactive, strength, push),
                clamp_invariance(logvar, self.inactive, strength))


class GroupedClamp:
    """Several monovariant batches in one forward pass (``batches_per_step`` > 1).

    The rows come as consecutive groups of ``size``; group i goes through ``clamps[i]`` (its own
    batch type's :class:`MonovariantClamp`, clamped against its own batch mean) or, for None,
    passes unclamped. The loss being a sum over the rows, one step on K groups has the gradient
    of the K one-batch steps added up.
    """

    def __init__(self, clamps: list, size: int):
        self.clamps, self.size = list(clamps), size

    def __call__(self, mu: torch.Tensor, logvar: torch.Tensor):
        if len(mu) != self.size * len(self.clamps):
            raise DcignError(f"{len(mu)} rows do not make {len(self.clamps)} groups of "
                             f"{self.size}")
        mus, logvars = [], []
        for i, clamp in enumerate(self.clamps):
            m, v = mu[i * self.size:(i + 1) * self.size], logvar[i * self.size:(i + 1) * self.size]
            if clamp is not None:
                m, v = clamp(m, v)
            mus.append(m)
            logvars.append(v)
        return torch.cat(mus), torch.cat(logvars)


def pick_named_latents(scores: dict[str, np.ndarray], names: dict[str, int]) -> dict[str, int]:
    """Which latent of an entangled (VAE) code to name after each factor.

    Each named latent gets the latent with the largest score for its factor, taken in the order
    of ``names``, each latent once. Monovariant training from a pretrained VAE then grows what
    that latent already holds, instead of whatever the pretraining left in latent 0 (in the
    quick demo: how far the head is turned, not to which side, which the clamp cannot turn into
    the sign). Scores: :func:`spread_scores` (batch types only, the paper's cue) or
    :func:`order_scores` (the factor values).

    Args:
        scores: factor name -> (D,) score of each latent (higher: a better choice).
        names: factor name -> the slot it is to have (``{"azimuth": 0, ...}``).

    Returns:
        factor name -> index of the chosen latent in the entangled code.
    """
    missing = [n for n in names if n not in scores]
    if missing:
        raise DcignError(f"picking named latents needs a score for every named latent; "
                         f"{missing[0]!r} has none")
    taken, picked = [], {}
    for name in names:
        score = np.array(scores[name], dtype=np.float64)
        score[taken] = -np.inf
        picked[name] = int(np.argmax(score))
        taken.append(picked[name])
    return picked


def _batch_type_of(name: str) -> str:
    for btype, group in ACTIVE_GROUP.items():
        if group == name and group != "intrinsic":
            return btype
    raise DcignError(f"no batch type varies {name!r}; named latents are "
                     f"{sorted(g for g in ACTIVE_GROUP.values() if g != 'intrinsic')}")


def spread_scores(spreads: dict[str, np.ndarray], names: dict[str, int]) -> dict[str, np.ndarray]:
    """Scores for :func:`pick_named_latents` from batch types alone (the paper's cue: its
    baseline's "azimuth latent" is the one with the largest variance on an azimuth-varied batch):
    a latent's within-batch spread on its factor's batch type over its largest spread on any
    other type, so that a latent that moves with everything is not taken for azimuth.

    Args:
        spreads: batch type -> (D,) mean within-batch variance of each latent's mean on batches
            of that type (all of :data:`BATCH_TYPES`).
        names: the named latents (factor name -> slot).
    """
    missing = [b for b in BATCH_TYPES if b not in spreads]
    if missing:
        raise DcignError(f"picking named latents needs spreads on every batch type; {missing[0]} "
                         f"is missing")
    spreads = {b: np.asarray(v, dtype=np.float64) for b, v in spreads.items()}
    out = {}
    for name in names:
        own = _batch_type_of(name)
        other = np.max([v for b, v in spreads.items() if b != own], axis=0)
        out[name] = spreads[own] / np.maximum(other, 1e-12)
    return out


def order_scores(codes: dict[str, np.ndarray],
                 values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores for :func:`pick_named_latents` from the factor values: how well each latent orders
    the factor (Spearman |rho|) over batches where only that factor varies. A latent that says
    how far a head is turned but not to which side scores low, however much it varies.

    Args:
        codes: factor name -> (N, D) encoder means of faces from batches of its type.
        values: factor name -> (N,) the factor's values for those faces.
    """
    out = {}
    for name, mu in codes.items():
        mu = np.asarray(mu, dtype=np.float64)
        ranks = np.apply_along_axis(rankdata, 0, mu)
        ranked = rankdata(np.asarray(values[name], dtype=np.float64))
        rc, rf = ranks - ranks.mean(0), ranked - ranked.mean()
        denom = np.sqrt((rc ** 2).sum(0) * (rf ** 2).sum())
        rho = np.divide(rc.T @ rf, denom, out=np.zeros(mu.shape[1]), where=denom > 0)
        out[name] = np.abs(rho)
    return out


def named_latent_order(picked: dict[str, int], names: dict[str, int],
                       latent_dim: int) -> np.ndarray:
    """The permutation that puts each picked latent in its named slot (the others swapped out of
    the way): new latent k is old latent ``order[k]``."""
    order = list(range(latent_dim))
    for name, slot in names.items():
        i = order.index(picked[name])
        order[slot], order[i] = order[i], order[slot]
    return np.asarray(order)


def batch_type_probabilities(ratio) -> np.ndarray:
    """Normalise the azimuth : elevation : light : intrinsic ratio to probabilities over
    :data:`BATCH_TYPES`."""
    ratio = np.asarray(ratio, dtype=float)
    if ratio.shape != (len(BATCH_TYPES),) or (ratio < 0).any() or ratio.sum() <= 0:
        raise DcignError(f"ratio must be 4 non-negative numbers (azimuth, elevation, light, "
                         f"intrinsic) with a positive sum, got {list(np.atleast_1d(ratio))}")
    return ratio / ratio.sum()


def sample_monovariant_batch(batches: dict[str, np.ndarray], probabilities: np.ndarray,
                             rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """Draw a batch type with ``probabilities`` and one of its batches uniformly.

    ``batches`` is :meth:`~trainer.faces.datasets.FaceDataset.batches`; returns (batch_type, rows).
    """
    btype = BATCH_TYPES[rng.choice(len(BATCH_TYPES), p=probabilities)]
    if btype not in batches:
        raise DcignError(f"the ratio asks for {btype} batches but the data set has none")
    rows = batches[btype][rng.integers(len(batches[btype]))]
    return btype, rows
