"""The face world: identity splits, factor grids, the two kinds of data set, and the ground-truth
data interface that metrics and experiments sample from.

* Factor grid (``kind="grid"``): every combination identities x azimuth x elevation x light, in
  C order of those four axes, like dSprites or 3dshapes.
* Monovariant batches (``kind="monovariant"``), like the original DC-IGN data: batches of 20 faces
  in which one factor varies -- AZ_VARIED, EL_VARIED, LIGHT_VARIED (one identity, the other
  factors fixed per batch) and SHAPE_VARIED (20 identities, pose and light fixed). A monovariant
  directory holds ``train/`` and ``test/`` sets whose identities are disjoint.

Identities: the training split uses identities ``0 .. n-1``; held-out identities start at
:data:`TEST_IDENTITY_OFFSET`, so "never seen in training" holds by construction.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from trainer.errors import DatasetError, DcignError
from trainer.faces.datasets import (BATCH_TYPES, FACTOR_NAMES, DatasetWriter, FaceDataset,
                                    load_dataset, read_manifest)
from trainer.faces.render import FACTOR_RANGES, render_faces
from trainer.io import DirectoryLock, remove_stale

GENERATOR_VERSION = "faces-1"  # bump when the renderer or head asset changes the pixels
TEST_IDENTITY_OFFSET = 1_000_000
SPLITS = ("train", "test")
BATCH_SIZE = 20
# Batch type -> the factor it varies.
VARIED = {"AZ_VARIED": "azimuth", "EL_VARIED": "elevation", "LIGHT_VARIED": "light",
          "SHAPE_VARIED": "identity"}
RENDER_CHUNK = 1024

ProgressFn = Callable[[int], None]


def split_identities(split: str, count: int) -> np.ndarray:
    """The first ``count`` identities of a split: train 0.., test TEST_IDENTITY_OFFSET.."""
    if split not in SPLITS:
        raise DcignError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if count < 1:
        raise DcignError(f"the number of identities must be >= 1, got {count}")
    start = 0 if split == "train" else TEST_IDENTITY_OFFSET
    return np.arange(start, start + count, dtype=np.int64)


def factor_values(name: str, step: float) -> np.ndarray:
    """Grid values of an angle factor: its range in steps of ``step`` degrees, centred on 0."""
    if name not in FACTOR_RANGES:
        raise DcignError(f"unknown factor {name!r}; choose from {', '.join(FACTOR_RANGES)}")
    if not step > 0:
        raise DcignError(f"{name} step must be > 0 degrees, got {step:g}")
    lo, hi = FACTOR_RANGES[name]
    k = np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1)
    return np.round(k * step, 6)


@dataclass
class GridSpec:
    """A factor grid. ``fixed`` pins angle factors to one value, e.g. ``{"light": 0}``."""

    identities: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    light: np.ndarray

    @classmethod
    def make(cls, split: str = "test", n_identities: int = 10, azimuth_step: float = 10,
             elevation_step: float = 10, light_step: float = 20,
             fixed: dict[str, float] | None = None) -> "GridSpec":
        values = {"azimuth": factor_values("azimuth", azimuth_step),
                  "elevation": factor_values("elevation", elevation_step),
                  "light": factor_values("light", light_step)}
        for name, value in (fixed or {}).items():
            if name not in FACTOR_RANGES:
                raise DcignError(f"unknown factor {name!r}; choose from {', '.join(FACTOR_RANGES)}")
            lo, hi = FACTOR_RANGES[name]
            if not lo <= value <= hi:
                raise DcignError(f"{name} {value:g} is out of range [{lo:g}, {hi:g}] degrees")
            values[name] = np.array([float(value)])
        return cls(split_identities(split, n_identities), **values)

    @property
    def axes(self) -> tuple[np.ndarray, ...]:
        return (self.identities, self.azimuth, self.elevation, self.light)

    @property
    def factor_sizes(self) -> list[int]:
        return [len(a) for a in self.axes]

    def factors_of(self, index: np.ndarray) -> pd.DataFrame:
        """Factor values of (n, 4) grid indices."""
        index = np.asarray(index)
        return pd.DataFrame({name: axis[index[:, k]] for k, (name, axis)
                             in enumerate(zip(FACTOR_NAMES, self.axes))})

    def all_factors(self) -> pd.DataFrame:
        index = np.stack(np.unravel_index(np.arange(int(np.prod(self.factor_sizes))),
                                          self.factor_sizes), -1)
        return self.factors_of(index)

    def params(self) -> dict:
        return {name: axis.tolist() for name, axis in zip(FACTOR_NAMES, self.axes)}


def _render_rows(writer: DatasetWriter, factors: pd.DataFrame, size: int,
                 progress: ProgressFn | None) -> None:
    for start in range(0, len(factors), RENDER_CHUNK):
        rows = factors.iloc[start:start + RENDER_CHUNK]
        writer.images[start:start + len(rows)] = render_faces(
            rows["identity"].to_numpy(), rows["azimuth"].to_numpy(),
            rows["elevation"].to_numpy(), rows["light"].to_numpy(), size=size)
        if progress:
            progress(len(rows))


def _reuse_existing(path: Path, manifest: dict, force: bool) -> FaceDataset | None:
    """An existing complete set made with the same parameters is reused; otherwise refuse."""
    if not path.exists():
        return None
    if force:
        return None
    existing = read_manifest(path)
    same = all(existing.get(k) == v for k, v in manifest.items())
    if not same:
        raise DatasetError(f"{path} holds a data set made with other parameters; "
                           f"choose another --out or pass --force to replace it")
    return load_dataset(path)


def _remove_leftovers(path: Path) -> None:
    """The partial and swap folders of ``path`` that a killed render left (under its lock)."""
    if path.parent.is_dir():
        remove_stale(path.parent, f".{path.name}.*.partial", f"{path.name}.new")
        old = path.with_name(path.name + ".old")
        if old.is_dir() and not path.exists():  # killed between the two renames of _replace
            os.rename(old, path)
        remove_stale(path.parent, f"{path.name}.old")


def _replace(path: Path, writer_fn) -> FaceDataset:
    """Write a new set next to ``path`` and swap it in, so the old one survives a failure."""
    if not path.exists():
        return writer_fn(path)
    new = path.with_name(path.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    writer_fn(new)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    os.rename(new, path)
    shutil.rmtree(old, ignore_errors=True)
    return load_dataset(path, verify=False)


def render_grid(out: str | os.PathLike, spec: GridSpec, size: int = 64, force: bool = False,
                progress: ProgressFn | None = None, wait: bool = False) -> FaceDataset:
    """Render (or reuse) the factor grid ``spec`` at ``out``.

    While rendering, ``out`` is locked: another process rendering it is refused, or, with
    ``wait``, waits for it and then reuses what it rendered.
    """
    out = Path(out)
    manifest = {"kind": "grid", "generator_version": GENERATOR_VERSION, "size": size,
                "params": {"grid": spec.params()}}
    with DirectoryLock(out, wait=wait):
        _remove_leftovers(out)
        reused = _reuse_existing(out, manifest, force)
        if reused is not None:
            return reused
        factors = spec.all_factors()

        def write(path: Path) -> FaceDataset:
            with DatasetWriter(path, len(factors), size) as writer:
                _render_rows(writer, factors, size, progress)
                return writer.finish(factors, manifest)
        return _replace(out, write)


@dataclass
class MonovariantSpec:
    """How monovariant batches are drawn. Angles come from grids with ``step`` degrees."""

    batches_per_type: dict[str, int] = field(default_factory=lambda: {"train": 3000, "test": 350})
    identities: dict[str, int] = field(default_factory=lambda: {"train": 500, "test": 100})
    step: float = 2.5
    seed: int = 0

    def params(self) -> dict:
        return {"batches_per_type": self.batches_per_type, "identities": self.identities,
                "step": self.step, "batch_size": BATCH_SIZE, "batch_types": list(BATCH_TYPES)}


def monovariant_factors(spec: MonovariantSpec, split: str) -> pd.DataFrame:
    """The factor table of a split's monovariant batches (deterministic in ``spec.seed``)."""
    n_batches = spec.batches_per_type[split]
    ids = split_identities(split, spec.identities[split])
    if len(ids) < BATCH_SIZE:
        raise DcignError(f"SHAPE_VARIED batches need >= {BATCH_SIZE} {split} identities, "
                         f"got {len(ids)}")
    grids = {name: factor_values(name, spec.step) for name in FACTOR_RANGES}
    rng = np.random.default_rng([spec.seed, SPLITS.index(split)])
    frames = []
    batch = 0
    for btype in BATCH_TYPES:
        varied = VARIED[btype]
        for _ in range(n_batches):
            cols = {"identity": np.full(BATCH_SIZE, rng.choice(ids))}
            for name, grid in grids.items():
                cols[name] = np.full(BATCH_SIZE, rng.choice(grid))
            pool = ids if varied == "identity" else grids[varied]
            cols[varied] = rng.choice(pool, BATCH_SIZE, replace=len(pool) < BATCH_SIZE)
            cols["batch"] = np.full(BATCH_SIZE, batch)
            cols["batch_type"] = [btype] * BATCH_SIZE
            frames.append(pd.DataFrame(cols))
            batch += 1
    return pd.concat(frames, ignore_index=True)[
        ["identity", "azimuth", "elevation", "light", "batch", "batch_type"]]


def render_monovariant(out: str | os.PathLike, spec: MonovariantSpec, size: int = 64,
                       force: bool = False, progress: ProgressFn | None = None,
                       wait: bool = False) -> dict[str, FaceDataset]:
    """Render (or reuse) monovariant ``train`` and ``test`` sets under ``out``.

    While rendering, ``out`` is locked: another process rendering it is refused, or, with
    ``wait``, waits for it and then reuses what it rendered.
    """
    out = Path(out)
    result = {}
    with DirectoryLock(out, wait=wait):
        for split in SPLITS:
            manifest = {"kind": "monovariant", "split": split,
                        "generator_version": GENERATOR_VERSION, "seed": spec.seed, "size": size,
                        "params": spec.params()}
            path = out / split
            _remove_leftovers(path)
            reused = _reuse_existing(path, manifest, force)
            if reused is not None:
                result[split] = reused
                continue
            factors = monovariant_factors(spec, split)

            def write(p: Path, factors=factors, manifest=manifest) -> FaceDataset:
                with DatasetWriter(p, len(factors), size) as writer:
                    _render_rows(writer, factors, size, progress)
                    return writer.finish(factors, manifest)
            result[split] = _replace(path, write)
    return result


def load_monovariant(path: str | os.PathLike, verify: bool = True,
                     expect_size: int | None = None) -> dict[str, FaceDataset]:
    """Load ``path/train`` and ``path/test`` and check their identities are disjoint."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"no monovariant data at {path} (directory not found); "
                           f"render it with `dcign-eval render monovariant --out {path}`")
    sets = {s: load_dataset(path / s, verify=verify, expect_size=expect_size,
                            expect_kind="monovariant") for s in SPLITS}
    shared = set(sets["train"].factors["identity"]) & set(sets["test"].factors["identity"])
    if shared:
        raise DatasetError(f"{path}: train and test share {len(shared)} identities")
    return sets


class FaceWorld:
    """Ground-truth data in disentanglement_lib's shape (``GroundTruthData``) over a factor grid.

    Factors are grid indices: ``factor_sizes[k]`` values for factor ``factor_names[k]``.
    Observations are uint8 images (n, size, size), looked up from a rendered grid data set when
    one is given and rendered on demand otherwise.
    """

    factor_names = FACTOR_NAMES

    def __init__(self, spec: GridSpec, size: int = 64, dataset: FaceDataset | None = None):
        self.spec = spec
        self.size = size
        self.dataset = dataset

    @classmethod
    def from_dataset(cls, dataset: FaceDataset) -> "FaceWorld":
        if dataset.kind != "grid":
            raise DatasetError(f"{dataset.path} is a {dataset.kind!r} set; a factor grid is needed")
        grid = dataset.manifest["params"]["grid"]
        spec = GridSpec(*(np.asarray(grid[name]) for name in FACTOR_NAMES))
        return cls(spec, dataset.size, dataset)

    @property
    def factor_sizes(self) -> list[int]:
        return self.spec.factor_sizes

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, num: int, random_state: np.random.Generator) -> np.ndarray:
        """(num, 4) grid indices drawn uniformly and independently per factor."""
        return np.stack([random_state.integers(0, s, num) for s in self.factor_sizes], -1)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.asarray(factors).T), self.factor_sizes)

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         random_state: np.random.Generator | None = None
                                         ) -> np.ndarray:
        """Images (n, size, size) uint8 for (n, 4) grid indices (no randomness needed)."""
        factors = np.asarray(factors)
        if self.dataset is not None:
            flat = self.flat_index(factors)
            order = np.argsort(flat)
            images = np.empty((len(flat), self.size, self.size), np.uint8)
            images[order] = self.dataset.images[flat[order]]
            return images
        values = self.spec.factors_of(factors)
        return render_faces(values["identity"].to_numpy(), values["azimuth"].to_numpy(),
                            values["elevation"].to_numpy(), values["light"].to_numpy(),
                            size=self.size)

    def sample(self, num: int, random_state: np.random.Generator):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


def preview_sheet(identities: Sequence[int], size: int = 64, n_sweep: int = 7) -> np.ndarray:
    """A contact sheet (uint8): one row per identity; columns sweep azimuth, elevation, light
    in turn (the other factors at 0), separated by a thin gap."""
    identities = np.asarray(identities, dtype=np.int64)
    blocks = []
    for name, (lo, hi) in FACTOR_RANGES.items():
        sweep = np.linspace(lo, hi, n_sweep)
        cols = {k: np.zeros(len(identities) * n_sweep) for k in FACTOR_RANGES}
        cols[name] = np.tile(sweep, len(identities))
        imgs = render_faces(np.repeat(identities, n_sweep), cols["azimuth"], cols["elevation"],
                            cols["light"], size=size)
        imgs = imgs.reshape(len(identities), n_sweep, size, size)
        block = imgs.transpose(0, 2, 1, 3).reshape(len(identities) * size, n_sweep * size)
        blocks.append(block)
        blocks.append(np.full((block.shape[0], size // 4), 40, np.uint8))
    return np.concatenate(blocks[:-1], axis=1)
