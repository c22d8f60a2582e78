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
