"""Small synthetic monovariant data sets for the trainer's tests, and a check of their layout.

A "face" here is a shaded ellipse: identity sets its radii and texture, azimuth and elevation move
it, light turns its shading gradient. Crude, but each factor changes the image, so monovariant
batches mean what they should, and rendering 300 of them takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trainer.faces.datasets import BATCH_TYPES, load_dataset, write_dataset

BATCH = 20


def render_face(identity: int, azimuth: float, elevation: float, light: float,
                size: int) -> np.ndarray:
    rng = np.random.default_rng(identity)
    ra, rb = 0.22 + 0.1 * rng.random(), 0.28 + 0.1 * rng.random()
    freq = 3 + 4 * rng.random()
    cx, cy = 0.5 + 0.2 * azimuth / 90, 0.5 - 0.15 * elevation / 25
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    u, v = (xx - cx) / ra, (yy - cy) / rb
    inside = u ** 2 + v ** 2 <= 1
    lx = np.sin(np.deg2rad(light))
    shade = 0.55 + 0.35 * lx * u + 0.1 * np.sin(freq * np.pi * v)
    img = np.where(inside, np.clip(shade, 0.05, 1), 0.0)
    return (img * 255).round().astype(np.uint8)


def make_split(path: Path, size: int, identities: range, batches_per_type: int, seed: int,
               types=BATCH_TYPES):
    """One monovariant data set: ``batches_per_type`` batches of 20 for each batch type."""
    rng = np.random.default_rng(seed)
    images, rows, batch_id = [], [], 0
    ids = list(identities)
    for btype in types:
        for _ in range(batches_per_type):
            base = dict(identity=int(rng.choice(ids)), azimuth=float(rng.uniform(-60, 60)),
                        elevation=float(rng.uniform(-20, 20)), light=float(rng.uniform(-60, 60)))
            varied = {"AZ_VARIED": ("azimuth", np.linspace(-80, 80, BATCH)),
                      "EL_VARIED": ("elevation", np.linspace(-23, 23, BATCH)),
                      "LIGHT_VARIED": ("light", np.linspace(-80, 80, BATCH)),
                      "SHAPE_VARIED": ("identity", rng.choice(ids, BATCH))}[btype]
            for value in varied[1]:
                f = dict(base, **{varied[0]: value})
                f["identity"] = int(f["identity"])
                images.append(render_face(f["identity"], f["azimuth"], f["elevation"],
                                          f["light"], size))
                rows.append(dict(f, batch=batch_id, batch_type=btype))
            batch_id += 1
    manifest = {"kind": "monovariant", "seed": seed, "generator_version": "test-ellipses",
                "params": {"batch_size": BATCH}}
    return write_dataset(path, np.stack(images), pd.DataFrame(rows), manifest)


def make_monovariant_data(root: Path, size: int = 64, batches_per_type: int = 3,
                          test_size: int | None = None, types=BATCH_TYPES) -> Path:
    """root/train (identities 0..49) and root/test (identities 100..119)."""
    make_split(root / "train", size, range(0, 50), batches_per_type, seed=1, types=types)
    make_split(root / "test", test_size or size, range(100, 120), 1, seed=2, types=types)
    return root


def test_synthetic_data_is_monovariant(tmp_path):
    root = make_monovariant_data(tmp_path / "d", size=64, batches_per_type=2)
    ds = load_dataset(root / "train", expect_kind="monovariant", expect_size=64)
    batches = ds.batches()
    assert set(batches) == set(BATCH_TYPES)
    for btype, factor in [("AZ_VARIED", "azimuth"), ("LIGHT_VARIED", "light")]:
        rows = ds.factors.iloc[batches[btype][0]]
        assert rows[factor].nunique() == BATCH
        others = [c for c in ("identity", "azimuth", "elevation", "light") if c != factor]
        assert (rows[others].nunique() == 1).all()
    assert ds.images[batches["AZ_VARIED"][0]].std(axis=0).mean() > 1


def rewrite_factors(path: Path, edit) -> None:
    """Change factors.csv with ``edit(frame)`` and re-hash the manifest, as a careful forger
    would: the checksums pass, so only the values can tell."""
    import json

    from trainer.io import sha256_file

    factors = pd.read_csv(path / "factors.csv")
    edit(factors)
    factors.to_csv(path / "factors.csv", index=False)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["factors.csv"] = {"sha256": sha256_file(path / "factors.csv"),
                                        "bytes": (path / "factors.csv").stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_factor_tables_with_bad_values_are_refused(tmp_path):
    import pytest

    from trainer.errors import DatasetError

    def identity_abc(f):
        f["identity"] = f["identity"].astype(object)
        f.loc[3, "identity"] = "abc"

    def unknown_type(f):
        f.loc[5, "batch_type"] = "COLOUR_VARIED"

    def nan_azimuth(f):
        f.loc[0, "azimuth"] = float("nan")

    def short_batch(f):
        f.loc[0, "batch"] = 1  # batch 0 now has 19 rows, batch 1 has 21

    cases = [(identity_abc, "column 'identity' must hold integers, found 'abc'"),
             (unknown_type, "column 'batch_type' must hold one of AZ_VARIED, EL_VARIED, "
                            "LIGHT_VARIED, SHAPE_VARIED, found 'COLOUR_VARIED'"),
             (nan_azimuth, "column 'azimuth' must hold finite numbers (degrees), found nan"),
             (lambda f: f.__delitem__("batch"), "lacks the column 'batch'")]
    for i, (edit, expected) in enumerate(cases):
        path = make_split(tmp_path / f"s{i}", 16, range(0, 30), 1, seed=1)
        rewrite_factors(path.path, edit)
        with pytest.raises(DatasetError) as e:
            load_dataset(path.path)
        assert str(e.value) == f"{path.path / 'factors.csv'}: {expected}" \
            or str(e.value) == f"{path.path / 'factors.csv'} {expected}", str(e.value)
    path = make_split(tmp_path / "short", 16, range(0, 30), 1, seed=1)
    rewrite_factors(path.path, short_batch)
    with pytest.raises(DatasetError) as e:
        load_dataset(path.path).batches()
    assert str(e.value) == (f"{path.path / 'factors.csv'}: batch 0 has 19 rows of 1 batch "
                            f"types; a monovariant batch is 20 rows of one")
