"""dcign_eval/reconstruction.py: the held-out faces every reconstruction measure uses, and the
reconstruction table's intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcign_eval import reconstruction as rc
from trainer.errors import DcignError


def test_held_out_faces_are_seeded_and_never_training_identities():
    from trainer.faces import TEST_IDENTITY_OFFSET

    a, b = rc.held_out_faces(6, 1), rc.held_out_faces(6, 1)
    pd.testing.assert_frame_equal(a, b)
    assert (a["identity"] >= TEST_IDENTITY_OFFSET + rc.RECONSTRUCTION_FIRST_IDENTITY).all()
    assert a["identity"].is_unique
    with pytest.raises(DcignError):
        rc.held_out_faces(0)


def _scored(n: int, errors: dict[str, np.ndarray]) -> rc.Reconstructions:
    """Reconstructions of ``n`` held-out faces scored as given (no rendering): model -> per-face
    MSE; SSIM falls as MSE rises."""
    faces = rc.held_out_faces(n, 4)
    for label, error in errors.items():
        faces[f"mse:{label}"] = error
        faces[f"ssim:{label}"] = 1 - 5 * error
    return rc.Reconstructions(faces, np.zeros((n, 2, 2), np.float32),
                              {label: np.zeros((n, 2, 2), np.float32) for label in errors})


def test_reconstruction_table_intervals_over_faces_and_paired_differences():
    from dcign_eval.intervals import difference_verdict

    rng = np.random.default_rng(0)
    error = rng.uniform(0.01, 0.05, 40)
    rec = _scored(40, {"a": error, "same": error.copy(), "worse": error + 0.01})
    table = rc.reconstruction_table(rec, resamples=300, random_state=1)
    pd.testing.assert_frame_equal(table, rc.reconstruction_table(rec, 300, 1))
    t = table.set_index("model")
    assert list(t.columns[:7]) == ["faces", "mse", "mse_low", "mse_high", "ssim", "ssim_low",
                                   "ssim_high"]
    assert (t["faces"] == 40).all() and (t["resamples"] == 300).all()
    assert t.loc["a", "mse"] == pytest.approx(error.mean())
    assert ((t["mse_low"] <= t["mse"]) & (t["mse"] <= t["mse_high"])).all()
    assert ((t["ssim_low"] <= t["ssim"]) & (t["ssim"] <= t["ssim_high"])).all()
    verdict = {m: difference_verdict(t.loc[m, "mse_difference_low"],
                                     t.loc[m, "mse_difference_high"], "lower")
               for m in ("same", "worse")}
    assert verdict == {"same": "not significant", "worse": "significant: higher (worse)"}
    assert difference_verdict(t.loc["worse", "ssim_difference_low"],
                              t.loc["worse", "ssim_difference_high"]) \
        == "significant: lower (worse)"
    assert np.isnan(t.loc["a", "mse_difference"])
    # 8 faces (the report's sheet): a wider interval than 40
    few = rc.reconstruction_table(_scored(8, {"a": error[:8]}), 300, 1).iloc[0]
    assert few["mse_high"] - few["mse_low"] > t.loc["a", "mse_high"] - t.loc["a", "mse_low"]
    assert np.isnan(rc.reconstruction_table(rec, resamples=0)["mse_low"]).all()
