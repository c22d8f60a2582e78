"""The synthetic monovariant data sets of the trainer's tests (tests/conftest.py): their layout,
and what loading a forged or inconsistent set refuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainer.faces.datasets import BATCH_TYPES, load_dataset

def test_synthetic_data_is_monovariant(tmp_path, make_monovariant_data):
    root = make_monovariant_data(tmp_path / "d", size=64, batches_per_type=2)
    ds = load_dataset(root / "train", expect_kind="monovariant", expect_size=64)
    batches = ds.batches()
    assert set(batches) == set(BATCH_TYPES)
    for btype, factor in [("AZ_VARIED", "azimuth"), ("LIGHT_VARIED", "light")]:
        rows = ds.factors.iloc[batches[btype][0]]
        assert rows[factor].nunique() == 20
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


def test_factor_tables_with_bad_values_are_refused(tmp_path, make_monovariant_data):
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
        path = make_monovariant_data(tmp_path / f"s{i}", size=16, batches_per_type=1) / "train"
        rewrite_factors(path, edit)
        with pytest.raises(DatasetError) as e:
            load_dataset(path)
        assert str(e.value) == f"{path / 'factors.csv'}: {expected}" \
            or str(e.value) == f"{path / 'factors.csv'} {expected}", str(e.value)
    path = make_monovariant_data(tmp_path / "short", size=16, batches_per_type=1) / "train"
    rewrite_factors(path, short_batch)
    with pytest.raises(DatasetError) as e:
        load_dataset(path).batches()
    assert str(e.value) == (f"{path / 'factors.csv'}: batch 0 has 19 rows of 1 batch "
                            f"types; a monovariant batch is 20 rows of one")
