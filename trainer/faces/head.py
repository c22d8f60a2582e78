"""The head model: mean shape, identity directions and the seeded identity generator.

The asset ``assets/head.npz`` is derived from MakeHuman's CC0 base mesh and face targets (see
``assets/ASSET_CARD.md`` and ``scripts/build_head_asset.py``). Identity ``i`` is the coefficient
vector drawn from ``np.random.default_rng([IDENTITY_SEED, i])``: the same head forever, whatever
else is rendered, and independent of every other identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASSET = Path(__file__).with_name("assets") / "head.npz"
IDENTITY_SEED = 20151207  # NIPS 2015; fixed forever: changing it changes every identity
# Coefficient spread per identity direction. MakeHuman's targets at full weight are caricatures;
# this spread keeps heads plausible while distinct.
COEFF_STD = 0.30
COEFF_STD_MACRO = 0.45


@dataclass(frozen=True)
class HeadModel:
    vertices: np.ndarray  # (V, 3) float32, mean shape: eyes at y=0, crown at y=1; +z faces camera
    faces: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    basis: np.ndarray  # (K, V, 3) float32, identity directions
    basis_names: tuple[str, ...]
    albedo: np.ndarray  # (V,) float32

    @property
    def n_directions(self) -> int:
        return len(self.basis)

    def coefficients(self, identity: np.ndarray) -> np.ndarray:
        """The (n, K) identity coefficients of integer identities (n,)."""
        identity = np.asarray(identity)
        stds = np.array([COEFF_STD_MACRO if n.startswith("macro/") else COEFF_STD
                         for n in self.basis_names])
        draws = np.empty((len(identity), self.n_directions))
        for row, i in enumerate(identity):
            draws[row] = _standard_draw(int(i), self.n_directions)
        return np.clip(draws * stds, -1.0, 1.0)

    def shapes(self, identity: np.ndarray) -> np.ndarray:
        """Vertex positions (n, V, 3) float32 of integer identities (n,)."""
        w = self.coefficients(identity).astype(np.float32)
        flat = self.basis.reshape(self.n_directions, -1)
        return (self.vertices.reshape(1, -1) + w @ flat).reshape(len(w), -1, 3)


@lru_cache(maxsize=16384)
def _standard_draw(identity: int, n: int) -> np.ndarray:
    """Identity ``identity``'s N(0, 1) draws. Cached: seeding a generator costs more than the
    render of a small batch, and grids and monovariant sets render each identity many times."""
    draw = np.random.default_rng([IDENTITY_SEED, identity]).standard_normal(n)
    draw.flags.writeable = False
    return draw


@lru_cache(maxsize=1)
def load_head() -> HeadModel:
    with np.load(ASSET, allow_pickle=False) as z:
        return HeadModel(vertices=z["vertices"], faces=z["faces"], basis=z["basis"],
                         basis_names=tuple(str(s) for s in z["basis_names"]), albedo=z["albedo"])
