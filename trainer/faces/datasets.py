"""Face data sets on disk: write atomically, load with validation.

A data set is a directory holding

* ``images.npy``  -- uint8 array (N, H, W), H == W == ``size``;
* ``factors.csv`` -- one row per image: identity, azimuth, elevation, light (degrees) and, for
  monovariant sets, ``batch`` (batch id) and ``batch_type`` (one of :data:`BATCH_TYPES`);
* ``manifest.json`` -- format, generator version, seed, parameters, counts and the sha256 of the
  two files above.

The directory is first written under a temporary sibling name and renamed into place when complete,
so a killed render leaves nothing that loads as a data set. :func:`load_dataset` checks the manifest,
the shapes and (by default) the checksums, and raises :class:`~trainer.errors.DatasetError` with a
one-line message when anything is missing or does not match.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.errors import DatasetError
from trainer.io import atomic_write_json, default_mode, sha256_file

FORMAT = "dcign-faces"
FORMAT_VERSION = 1
FACTOR_NAMES = ("identity", "azimuth", "elevation", "light")
# The original code's four batch types (monovariant_main.lua), one active factor each.
BATCH_TYPES = ("AZ_VARIED", "EL_VARIED", "LIGHT_VARIED", "SHAPE_VARIED")
DATA_FILES = ("images.npy", "factors.csv")


@dataclass
class FaceDataset:
    """A loaded data set. ``images`` is memory-mapped read-only; index it to get uint8 arrays."""

    path: Path
    images: np.ndarray
    factors: pd.DataFrame
    manifest: dict
    _batches: dict | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def checksum(self) -> str:
        """sha256 of the manifest, which itself pins the data files: one id for the whole set."""
        return sha256_file(self.path / "manifest.json")

    def __len__(self) -> int:
        return len(self.factors)

    def batches(self) -> dict[str, np.ndarray]:
        """Monovariant sets: ``{batch_type: (n_batches, batch_size) row indices}``."""
        if self.kind != "monovariant":
            raise DatasetError(f"{self.path}: a {self.kind!r} data set has no monovariant batches")
        if self._batches is None:
            bsize = int(self.manifest["params"]["batch_size"])
            per_batch = self.factors.groupby("batch")["batch_type"].agg(["size", "nunique"])
            wrong = per_batch[(per_batch["size"] != bsize) | (per_batch["nunique"] != 1)]
            if len(wrong):
                b = wrong.index[0]
                raise DatasetError(f"{self.path / 'factors.csv'}: batch {b} has "
                                   f"{wrong.loc[b, 'size']} rows of {wrong.loc[b, 'nunique']} "
                                   f"batch types; a monovariant batch is {bsize} rows of one")
            out = {}
            for btype, rows in self.factors.groupby("batch_type", sort=False):
                ids = rows["batch"].to_numpy()
                order = np.argsort(ids, kind="stable")
                idx = rows.index.to_numpy()[order]
                out[btype] = idx.reshape(-1, bsize)
            self._batches = {b: out[b] for b in BATCH_TYPES if b in out}
        return self._batches


class DatasetWriter:
    """Write a data set chunk by chunk into a temporary directory; rename it into place at the end.

    ``images`` is a writable memory map of shape (count, size, size), so sets larger than memory
    can be rendered. Use as a context manager: on an exception the partial directory is removed.
    """

    def __init__(self, path: str | os.PathLike, count: int, size: int):
        self.path = Path(path)
        if self.path.exists():
            raise DatasetError(f"{self.path} already exists; remove it first")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial",
                                             dir=self.path.parent))
        except OSError as e:
            raise DatasetError(f"cannot write to {self.path.parent}: {e.strerror}") from None
        self.images = np.lib.format.open_memmap(self.tmp / "images.npy", mode="w+",
                                                dtype=np.uint8, shape=(count, size, size))

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.images = None
            shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, factors: pd.DataFrame, manifest: dict) -> FaceDataset:
        """Write factors and manifest, then rename the directory into place; return it loaded."""
        count, size = self.images.shape[0], self.images.shape[1]
        if len(factors) != count:
            raise DatasetError(f"{len(factors)} factor rows for {count} images")
        missing = [c for c in FACTOR_NAMES if c not in factors.columns]
        if missing:
            raise DatasetError(f"factors lack columns {missing}")
        self.images.flush()
        self.images = None
        factors.reset_index(drop=True).to_csv(self.tmp / "factors.csv", index=False)
        full = dict(manifest)
        full.update(format=FORMAT, format_version=FORMAT_VERSION, size=int(size), count=int(count),
                    files={name: {"sha256": sha256_file(self.tmp / name),
                                  "bytes": (self.tmp / name).stat().st_size} for name in DATA_FILES})
        atomic_write_json(self.tmp / "manifest.json", full)
        os.chmod(self.tmp, default_mode(directory=True))
        os.rename(self.tmp, self.path)
        return load_dataset(self.path, verify=False)


def write_dataset(path: str | os.PathLike, images: np.ndarray, factors: pd.DataFrame,
                  manifest: dict) -> FaceDataset:
    """Write a complete data set to ``path`` atomically and return it loaded.

    ``manifest`` holds the caller's fields (kind, seed, params, generator_version, ...); the format,
    size, count and file checksums are added here. ``path`` must not exist yet.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DatasetError(f"images must be uint8 (N, S, S), got {images.dtype} {images.shape}")
    with DatasetWriter(path, len(images), images.shape[1]) as writer:
        writer.images[:] = images
        return writer.finish(factors, manifest)


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the data set at ``path``; DatasetError if it is missing or not ours."""
    path = Path(path)
    mfile = path / "manifest.json"
    if not path.is_dir():
        raise DatasetError(f"no data set at {path} (directory not found)")
    if not mfile.is_file():
        raise DatasetError(f"{path} is not a complete data set (manifest.json missing)")
    try:
        manifest = json.loads(mfile.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DatasetError(f"{mfile} is corrupt (not valid JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a dcign-eval face data set")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path} has format version {manifest.get('format_version')}, "
                           f"this version reads {FORMAT_VERSION}; re-render it")
    return manifest


def read_factors(path: Path, monovariant: bool) -> pd.DataFrame:
    """``factors.csv``, with every column's type and values checked (DatasetError otherwise)."""
    try:
        factors = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{path} is not a valid factor table ({why})") from None
    integers = ("identity", "batch") if monovariant else ("identity",)
    needed = FACTOR_NAMES + (("batch", "batch_type") if monovariant else ())
    missing = [c for c in needed if c not in factors.columns]
    if missing:
        raise DatasetError(f"{path} lacks the column {missing[0]!r}")
    for column in needed:
        values = factors[column]
        if column in integers:
            ok = pd.api.types.is_integer_dtype(values)
            what = "integers"
        elif column == "batch_type":
            ok = values.isin(BATCH_TYPES).all()
            what = f"one of {', '.join(BATCH_TYPES)}"
        else:
            ok = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) \
                and np.isfinite(values.to_numpy(np.float64)).all()
            what = "finite numbers (degrees)"
        if not ok:
            bad = next((v for v in values if not _fits_column(v, column, integers)), values.iloc[0])
            raise DatasetError(f"{path}: column {column!r} must hold {what}, found {bad!r}")
    return factors


def _fits_column(value, column: str, integers: tuple[str, ...]) -> bool:
    if column == "batch_type":
        return value in BATCH_TYPES
    try:  # a column with one bad value is read as strings: the others still parse
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number.is_integer() if column in integers else bool(np.isfinite(number))


def load_dataset(path: str | os.PathLike, *, verify: bool = True,
                 expect_size: int | None = None, expect_kind: str | None = None) -> FaceDataset:
    """Load and validate the data set at ``path``.

    Args:
        verify: also check the sha256 of every data file against the manifest (reads all bytes).
        expect_size: raise if the images are not ``expect_size`` pixels square.
        expect_kind: raise if the manifest's kind (``grid`` or ``monovariant``) differs.
    """
    path = Path(path)
    manifest = read_manifest(path)
    for name in DATA_FILES:
        f = path / name
        info = manifest["files"][name]
        if not f.is_file():
            raise DatasetError(f"{path} is incomplete ({name} missing)")
        if f.stat().st_size != info["bytes"]:
            raise DatasetError(f"{f} is truncated or altered ({f.stat().st_size} bytes, "
                               f"manifest says {info['bytes']})")
        if verify and sha256_file(f) != info["sha256"]:
            raise DatasetError(f"{f} is corrupt (sha256 does not match the manifest)")
    try:
        images = np.load(path / "images.npy", mmap_mode="r")
    except (ValueError, OSError) as e:
        raise DatasetError(f"{path / 'images.npy'} cannot be read: {e}") from None
    factors = read_factors(path / "factors.csv", monovariant=manifest.get("kind") == "monovariant")
    size = int(manifest["size"])
    if images.dtype != np.uint8 or images.shape != (manifest["count"], size, size):
        raise DatasetError(f"{path / 'images.npy'} holds {images.dtype} {images.shape}, "
                           f"manifest says uint8 ({manifest['count']}, {size}, {size})")
    if len(factors) != len(images):
        raise DatasetError(f"{path}: {len(factors)} factor rows for {len(images)} images")
    if expect_size is not None and size != expect_size:
        raise DatasetError(f"{path} holds {size}x{size} images, expected {expect_size}x{expect_size}")
    if expect_kind is not None and manifest.get("kind") != expect_kind:
        raise DatasetError(f"{path} is a {manifest.get('kind')!r} data set, expected {expect_kind!r}")
    return FaceDataset(path=path, images=images, factors=factors, manifest=manifest)
