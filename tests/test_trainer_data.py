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
