"""Monovariant training: the clamp, the invariance gradient, and the batch-type sampler.

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015 (arXiv 1503.03167),
section 3.1: each batch varies one scene factor only (a *monovariant batch*). The latents that
should not explain it (the *inactive* ones) are

* forward: clamped to the batch reference, so the decoder must explain the batch with the active
  latents alone; the reference is the batch mean (the paper) or the first sample (the original
  code). Both mu and log-variance are clamped, before z is sampled.
* backward: their gradient is replaced by ``invariance_strength * (x_i - mean_j x_j)``, where x is
  the encoder's output *before* the clamp. That is the descent gradient of the penalty
  ``0.5 * s * sum_i ||x_i - mean||^2`` (the deviations sum to zero, so the mean's own dependence on
  x_i drops out) and pulls each sample's inactive latents toward the batch mean. The original code
  did gradient ascent on the ELBO with this term left unchanged, which pushed latents away from the
  mean; here the loss is minimised and the sign is the penalty's.

The active group's gradient passes unchanged. mu and log-variance each get their own filter: both
are clamped, and an inactive log-variance that varies across a monovariant batch is as much a
leak of the factor as a varying mean. The KL term is computed on the clamped values (as the
original): only active latents receive reconstruction and KL gradient.

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

from trainer.errors import DcignError
from trainer.faces.datasets import BATCH_TYPES

# batch type -> name of its active latent; "intrinsic" is the block after the named latents
ACTIVE_GROUP = {"AZ_VARIED": "azimuth", "EL_VARIED": "elevation", "LIGHT_VARIED": "light",
                "SHAPE_VARIED": "intrinsic"}
DEFAULT_RATIO = (1.0, 1.0, 1.0, 10.0)  # azimuth : elevation : light : intrinsic (paper, sec. 4)
CLAMP_REFERENCES = ("mean", "first")


class ClampInvariance(torch.autograd.Function):
    """Clamp the inactive columns of x (N, D) to the batch reference; invariance gradient back.

    forward(x, inactive, reference, strength):
        out[:, j] = x[:, j]                          for active j
        out[:, j] = mean_i x[i, j]  (or x[0, j])     for inactive j
    backward(grad_out):
        grad_x[:, j] = grad_out[:, j]                        for active j
        grad_x[:, j] = strength * (x[:, j] - mean_i x[i, j]) for inactive j (grad_out ignored)
    """

    @staticmethod
    def forward(ctx, x, inactive, reference, strength):
        ref = x.mean(0) if reference == "mean" else x[0]
        mask = inactive.to(x.device)
        ctx.save_for_backward(x, mask)
        ctx.strength = float(strength)
        return torch.where(mask, ref.expand_as(x), x)

    @staticmethod
    def backward(ctx, grad_out):
        x, mask = ctx.saved_tensors
        pull = ctx.strength * (x - x.mean(0, keepdim=True))
        return torch.where(mask, pull.to(grad_out.dtype), grad_out), None, None, None


def clamp_invariance(x: torch.Tensor, inactive: torch.Tensor, reference: str = "mean",
                     strength: float = 0.01) -> torch.Tensor:
    """Functional form of :class:`ClampInvariance`; ``inactive`` is a bool mask of shape (D,)."""
    if reference not in CLAMP_REFERENCES:
        raise DcignError(f"clamp reference must be one of {CLAMP_REFERENCES}, got {reference!r}")
    return ClampInvariance.apply(x, inactive, reference, strength)


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


class MonovariantClamp:
    """The ``clamp`` argument of :meth:`trainer.model.DCIGN.forward` for one batch type."""

    def __init__(self, inactive: torch.Tensor, reference: str = "mean", strength: float = 0.01):
        self.inactive, self.reference, self.strength = inactive, reference, strength

    def __call__(self, mu: torch.Tensor, logvar: torch.Tensor):
        return (clamp_invariance(mu, self.inactive, self.reference, self.strength),
                clamp_invariance(logvar, self.inactive, self.reference, self.strength))


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
