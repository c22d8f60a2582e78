"""A tiny ground-truth data set whose observations are the factor indices themselves.

It is what the metric tests and the benchmark run on (metrics.md, "Public sanity values"), and it
documents the *ground-truth data interface* every metric samples through. The face world
(:class:`trainer.faces.world.FaceWorld`) implements the same four members:

- ``factor_names``: one name per factor;
- ``factor_sizes``: the number of grid values of each factor (factors are grid indices
  ``0 .. size - 1``);
- ``sample_factors(num, random_state) -> (num, F) int``: factors drawn uniformly and
  independently, from the ``np.random.Generator`` given;
- ``sample_observations_from_factors(factors, random_state) -> observations``: one observation
  per row of ``factors`` (a batch the ``represent`` function can encode).

The interface is disentanglement_lib's ``GroundTruthData`` with a ``np.random.Generator`` in
place of the legacy ``RandomState``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trainer.errors import DcignError

#: Factor sizes of the public sanity cases (metrics.md): dSprites' grid.
SANITY_FACTOR_SIZES = (3, 6, 40, 32, 32)


def flat_index(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Row-major index of each factor vector in the grid ``factor_sizes``.

    Args:
        factors: (..., F) integer grid indices.
        factor_sizes: the F grid sizes.

    Returns:
        (...) int64 flat indices in ``[0, prod(factor_sizes))``.
    """
    factors = np.asarray(factors)
    sizes = tuple(int(s) for s in factor_sizes)
    if factors.ndim == 0 or factors.shape[-1] != len(sizes):
        raise DcignError(f"factors must have {len(sizes)} columns (one per factor), "
                         f"got shape {factors.shape}")
    flat = factors.reshape(-1, len(sizes))
    if flat.size and (flat.min() < 0 or np.any(flat.max(axis=0) >= np.asarray(sizes))):
        raise DcignError(f"factor indices out of range for factor sizes {list(sizes)}")
    flat = flat.astype(np.int64, copy=False)
    index = np.ravel_multi_index(tuple(flat.T), sizes) if flat.size else np.zeros(0, np.int64)
    return np.asarray(index, dtype=np.int64).reshape(factors.shape[:-1])


class SyntheticFactors:
    """Ground-truth data whose observation of a factor vector is the vector itself (as floats).

    With ``represent = lambda x: x`` the code *is* the factors: the "identity code" of the sanity
    table. Deterministic: ``sample_observations_from_factors`` ignores its random state.

    Args:
        factor_sizes: grid size of each factor (default: the sanity sizes [3, 6, 40, 32, 32]).
        factor_names: one name per factor (default ``factor0``, ``factor1``, ...).
    """

    def __init__(self, factor_sizes: Sequence[int] = SANITY_FACTOR_SIZES,
                 factor_names: Sequence[str] | None = None):
        sizes = [int(s) for s in factor_sizes]
        if not sizes or min(sizes) < 1:
            raise DcignError(f"factor_sizes must be a non-empty list of positive ints, "
                             f"got {list(factor_sizes)}")
        names = list(factor_names) if factor_names is not None else \
            [f"factor{k}" for k in range(len(sizes))]
        if len(names) != len(sizes):
            raise DcignError(f"{len(names)} factor_names for {len(sizes)} factor_sizes")
        self.factor_sizes = sizes
        self.factor_names = names

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, num: int, random_state: np.random.Generator) -> np.ndarray:
        """(num, F) int64 grid indices, uniform and independent per factor."""
        sizes = np.asarray(self.factor_sizes)
        return random_state.integers(0, sizes, size=(int(num), self.num_factors))

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         random_state: np.random.Generator | None = None
                                         ) -> np.ndarray:
        """(n, F) float64 observations: the factor indices themselves."""
        factors = np.asarray(factors)
        flat_index(factors, self.factor_sizes)  # validates shape and range
        return factors.astype(np.float64)

    def sample(self, num: int, random_state: np.random.Generator):
        """``(factors, observations)`` for ``num`` random grid points."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        return flat_index(factors, self.factor_sizes)

    def __repr__(self) -> str:
        return f"SyntheticFactors(factor_sizes={self.factor_sizes})"


#: The sanity codes of :func:`sanity_code`, the benchmark's and the estimator comparison's inputs.
SANITY_CODES = ("identity", "rotated", "noisy", "noise", "duplicated")


def standardised(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Factor indices standardised by the uniform grid's mean and sd (each column mean 0, sd 1
    over the grid)."""
    sizes = np.asarray(factor_sizes, dtype=np.float64)
    return (np.asarray(factors, dtype=np.float64) - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)


def sanity_code(name: str, factor_sizes: Sequence[int] = SANITY_FACTOR_SIZES,
                random_state: int = 0):
    """A reference code of :class:`SyntheticFactors` observations, as ``represent``.

    - ``identity``: the factor indices themselves (a perfect, axis-aligned code);
    - ``rotated``: the standardised factors times a fixed random rotation (seeded by
      ``random_state``): every latent mixes every factor, information intact;
    - ``noisy``: the standardised factors plus N(0, 0.5^2) noise, fixed per grid point;
    - ``noise``: 10 latents of N(0, 1) noise, fixed per grid point (metrics.md's noise row);
    - ``duplicated``: the standardised factors twice, ``[z, z]`` (metrics.md's row).

    Each is a deterministic function of the observation, as the code cache assumes.

    Args:
        name: one of :data:`SANITY_CODES`.
        factor_sizes: the grid of the observations.
        random_state: int seed of the rotation and of the noise tables.

    Returns:
        ``represent``: observations (N, F) -> codes (N, D).
    """
    sizes = [int(s) for s in factor_sizes]
    seed = int(random_state)
    if name == "identity":
        return lambda x: np.asarray(x, dtype=np.float64)
    if name == "duplicated":
        return lambda x: np.hstack([standardised(x, sizes)] * 2)
    if name == "rotated":
        # Q of a Gaussian matrix's QR, signs fixed by R's diagonal: a uniform random rotation
        q, r = np.linalg.qr(np.random.default_rng([seed, 1]).standard_normal((len(sizes),) * 2))
        rotation = q * np.sign(np.diag(r))
        return lambda x: standardised(x, sizes) @ rotation
    if name in ("noisy", "noise"):
        dims, scale = (len(sizes), 0.5) if name == "noisy" else (10, 1.0)
        table = np.random.default_rng([seed, 2 if name == "noisy" else 3]).standard_normal(
            (int(np.prod(sizes)), dims)) * scale

        def represent(x):
            noise = table[flat_index(np.asarray(x).astype(np.int64), sizes)]
            return standardised(x, sizes) + noise if name == "noisy" else noise
        return represent
    raise DcignError(f"unknown sanity code {name!r}; expected one of {', '.join(SANITY_CODES)}")
