"""The invariant face-recognition experiment (dcign_eval.recognition) on tiny set-ups.

The pure functions are hit with hand-made features: an identity one-hot (an oracle) must score
100%, random features must score at chance. The end-to-end runs render 32x32 faces of a handful of
identities on a coarse grid, so the whole file stays well under a minute on two cores.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from dcign_eval import recognition as rec
from trainer.errors import DcignError
from trainer.faces import TEST_IDENTITY_OFFSET

# Coarse grid: azimuth -90..90 step 45, elevation -30/0/30, light -80/0/80; the default
# several-views gallery (0, +-45, +-90 at elevation 0, light 0) lies on it.
TINY = rec.ProbeGrid(azimuth_step=45, elevation_step=30, light_step=80, probes_per_azimuth=2)


def _views(frame: pd.DataFrame) -> set:
    return set(map(tuple, frame[["azimuth", "elevation", "light"]].to_numpy()))


# -- the faces --------------------------------------------------------------------------------

def test_gallery_and_probes_differ_in_view():
    f = rec.recognition_factors(5, TINY, random_state=0)
    assert set(f["view"]) == {"reference", "gallery", "probe"}
    for identity, rows in f.groupby("identity"):
        reference = rows[rows["view"] == "reference"]
        assert _views(reference) == {(0.0, 0.0, 0.0)}
        gallery = rows[rows["view"] != "probe"]
        assert _views(gallery) == {tuple(map(float, v)) for v in TINY.gallery_views}
        probes = rows[rows["view"] == "probe"]
        assert not _views(probes) & _views(gallery)
        # Balanced: probes_per_azimuth probes at every grid azimuth, none repeated.
        assert (probes.groupby("azimuth").size() == 2).all()
        assert len(probes["azimuth"].unique()) == 5
        assert len(_views(probes)) == len(probes)
    for protocol in rec.PROTOCOLS:
        gallery, probes = rec.protocol_rows(f, protocol)
        assert not set(gallery) & set(probes)
        assert not _views(f.iloc[gallery]) & _views(f.iloc[probes])
    assert len(rec.protocol_rows(f, "one-view")[0]) == 5
    assert len(rec.protocol_rows(f, "several-views")[0]) == 25


def test_identities_are_disjoint_from_training():
    f = rec.recognition_factors(7, TINY, random_state=0)
    held_out = set(f["identity"])
    assert held_out == set(range(TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET + 7))
    train = rec.training_faces(n_identities=20, n_images=10, size=16, random_state=0)
    assert set(train.factors["identity"]) <= set(range(20))
    assert not held_out & set(train.factors["identity"])


def test_probe_draw_is_seeded_and_full_grid_option():
    a = rec.recognition_factors(4, TINY, random_state=3)
    pd.testing.assert_frame_equal(a, rec.recognition_factors(4, TINY, random_state=3))
    assert not a.equals(rec.recognition_factors(4, TINY, random_state=4))
    full = rec.ProbeGrid(azimuth_step=45, elevation_step=30, light_step=80, probes_per_azimuth=None)
    probes = rec.recognition_factors(2, full)
    probes = probes[probes["view"] == "probe"]
    # 5 azimuths x 3 elevations x 3 lights, minus the 5 gallery views, per identity.
    assert len(probes) == 2 * (45 - 5)


def test_bad_input_is_one_line_dcign_error():
    with pytest.raises(DcignError, match="at least 2"):
        rec.recognition_factors(1, TINY)
    with pytest.raises(DcignError, match="at least 2"):
        rec.run_recognition(n_identities=1, grid=TINY, size=32)
    with pytest.raises(DcignError, match="reference"):
        rec.ProbeGrid(gallery_views=((45, 0, 0),))
    with pytest.raises(DcignError, match="out of range"):
        rec.ProbeGrid(gallery_views=((0, 0, 0), (120, 0, 0)))
    with pytest.raises(DcignError, match="probes per azimuth"):
        rec.ProbeGrid(probes_per_azimuth=0)
    with pytest.raises(DcignError, match="unknown classifier"):
        rec.run_recognition(n_identities=3, grid=TINY, size=32, classifiers=("knn5",))
    with pytest.raises(DcignError, match="no model 'no/such/model'"):
        rec.run_recognition(["no/such/model"], n_identities=3, grid=TINY, size=32)
    f = rec.recognition_factors(3, TINY)
    with pytest.raises(DcignError, match="one row per face"):
        rec.identification_predictions({"x": np.zeros((2, 3))}, f)


# -- the pure core: oracle and random features ------------------------------------------------

def _oracle(f: pd.DataFrame) -> np.ndarray:
    ids = np.unique(f["identity"])
    return (f["identity"].to_numpy()[:, None] == ids[None, :]).astype(float)


def test_oracle_feature_scores_100_percent():
    f = rec.recognition_factors(6, TINY, random_state=0)
    pred = rec.identification_predictions({"oracle": _oracle(f)}, f)
    assert set(pred["classifier"]) == set(rec.CLASSIFIERS)
    assert set(pred["protocol"]) == set(rec.PROTOCOLS)
    assert pred["correct"].all()
    summary = rec.summary_table(pred)
    assert (summary["accuracy"] == 1).all() and (summary["accuracy_large_pose"] == 1).all()
    ver = rec.verification_table(rec.verification_pairs({"oracle": _oracle(f)}, f), False)
    assert ver.loc[0, "auc"] == 1.0 and ver.loc[0, "eer"] == 0.0


def test_random_features_score_at_chance():
    n_ids = 10
    f = rec.recognition_factors(n_ids, rec.ProbeGrid(probes_per_azimuth=3), random_state=0)
    rng = np.random.default_rng(0)
    features = {"random": rng.normal(size=(len(f), 32))}
    pred = rec.identification_predictions(features, f)
    for (classifier, protocol), group in pred.groupby(["classifier", "protocol"]):
        k, n = int(group["correct"].sum()), len(group)
        assert binomtest(k, n, 1 / n_ids).pvalue > 1e-3, (classifier, protocol, k / n)
    ver = rec.verification_table(rec.verification_pairs(features, f), False)
    assert abs(ver.loc[0, "auc"] - 0.5) < 0.06
    assert abs(ver.loc[0, "eer"] - 0.5) < 0.06


def test_accuracy_table_is_tidy_and_bins_abs_azimuth():
    f = rec.recognition_factors(4, TINY, random_state=0)
    x = _oracle(f)
    x[f["azimuth"].to_numpy() < 0] = 1.0  # left-turned probes all look alike: wrong often
    pred = rec.identification_predictions({"oracle": _oracle(f), "half": x}, f,
                                          classifiers=("1nn-cosine",), protocols=("one-view",))
    table = rec.accuracy_table(pred, 45, 30, 80)
    assert list(table.columns) == ["feature", "classifier", "protocol", "abs_azimuth",
                                   "elevation", "light", "accuracy", "accuracy_low",
                                   "accuracy_high", "correct", "n", "resamples"]
    assert set(table["abs_azimuth"]) == {0.0, 45.0, 90.0}
    n_probes = (f["view"] == "probe").sum()
    assert table.groupby("feature")["n"].sum().tolist() == [n_probes, n_probes]
    by_az = rec.accuracy_by(table, "abs_azimuth")
    assert by_az["feature"].tolist()[:3] == ["oracle"] * 3
    assert np.allclose(by_az["accuracy"], by_az["correct"] / by_az["n"])
    comparison = rec.pose_comparison(pred, reference="oracle", large_pose=45)
    assert comparison.loc[0, "other"] == "half"
    assert comparison.loc[0, "accuracy_reference"] == 1.0
    assert comparison.loc[0, "only_other"] == 0


# -- intervals: the bootstrap over held-out identities -----------------------------------------

def _probes(correct_by_identity: dict[int, list[bool]], feature: str = "f") -> pd.DataFrame:
    """Hand-made predictions: one row per probe, its identity and whether it was identified."""
    rows = [(feature, "1nn-cosine", "one-view", identity, 0.0, bool(c))
            for identity, correct in correct_by_identity.items() for c in correct]
    return pd.DataFrame(rows, columns=["feature", "classifier", "protocol", "identity", "azimuth",
                                       "correct"])


def test_bootstrap_interval_over_identities_known_answers():
    keys = ["feature", "classifier", "protocol"]
    # every probe right: every resample is right, [1, 1]; every probe wrong: [0, 0]
    right = rec.identity_intervals(_probes({i: [True] * 3 for i in range(5)}), keys)
    assert (right["low"].item(), right["high"].item()) == (1.0, 1.0)
    wrong = rec.identity_intervals(_probes({i: [False] * 3 for i in range(5)}), keys)
    assert (wrong["low"].item(), wrong["high"].item()) == (0.0, 0.0)
    # two identities, one always right, one always wrong: a resample draws both (accuracy 0.5)
    # with probability 1/2, one of them twice (0 or 1) with 1/4 each: the 95% interval is [0, 1]
    half = _probes({1: [True] * 4, 2: [False] * 4})
    out = rec.identity_intervals(half, keys, resamples=2000)
    assert (out["low"].item(), out["high"].item()) == (0.0, 1.0)
    # identities are the unit: 10 identities, each with 20 probes all right or all wrong, give a
    # far wider interval than 200 independent probes would (binomial: about +-0.07)
    clustered = _probes({i: [i % 2 == 0] * 20 for i in range(10)})
    out = rec.identity_intervals(clustered, keys).iloc[0]
    assert out["high"] - out["low"] > 0.4
    # a fixed seed gives identical intervals; another seed other draws
    again = rec.identity_intervals(clustered, keys).iloc[0]
    assert (again["low"], again["high"]) == (out["low"], out["high"])
    ids, weights = rec.identity_weights(clustered["identity"], 100, random_state=0)
    assert list(ids) == list(range(10)) and (weights.sum(axis=1) == 10).all()
    assert not np.array_equal(weights, rec.identity_weights(clustered["identity"], 100, 1)[1])
    # no resamples: no interval
    none = rec.identity_intervals(clustered, keys, resamples=0)
    assert none[["low", "high"]].isna().all(axis=None)
    with pytest.raises(DcignError, match="resamples"):
        rec.identity_intervals(clustered, keys, resamples=-1)


def test_summary_and_comparison_carry_the_intervals():
    pred = pd.concat([_probes({i: [True, True] for i in range(6)}, "oracle"),
                      _probes({i: [i < 3, False] for i in range(6)}, "half")],
                     ignore_index=True).assign(azimuth=90.0)
    pred["probe"] = np.tile(np.arange(12), 2)
    summary = rec.summary_table(pred, resamples=500)
    assert list(summary.columns) == ["feature", "classifier", "protocol", "accuracy",
                                     "accuracy_low", "accuracy_high", "n", "accuracy_large_pose",
                                     "accuracy_large_pose_low", "accuracy_large_pose_high",
                                     "n_large_pose", "resamples"]
    oracle, half = summary.iloc[0], summary.iloc[1]
    assert (oracle["accuracy_low"], oracle["accuracy_high"]) == (1.0, 1.0)
    assert half["accuracy"] == 0.25 and half["accuracy_low"] < 0.25 < half["accuracy_high"]
    # all probes are at |azimuth| 90: the large-pose interval is the overall one
    assert half["accuracy_large_pose_low"] == half["accuracy_low"]
    comparison = rec.pose_comparison(pred, "oracle", resamples=500)
    row = comparison.iloc[0]
    assert row["difference"] == 0.75
    # paired on the same resamples: oracle's 1 minus half's interval
    assert row["difference_low"] == pytest.approx(1 - half["accuracy_high"])
    assert row["difference_high"] == pytest.approx(1 - half["accuracy_low"])


def test_weighted_auc_and_eer_count_a_weight_as_copies():
    rng = np.random.default_rng(0)
    for _ in range(25):
        n = int(rng.integers(4, 40))
        same = rng.random(n) < 0.5
        same[:2] = [True, False]
        similarity = np.round(rng.normal(size=n) + same, 1)  # ties included
        weights = rng.integers(0, 3, n)
        weights[:2] = 1
        copies = np.repeat(np.arange(n), weights)
        auc, eer = rec.weighted_auc_eer(same, similarity, np.stack([np.ones(n), weights]))
        assert (auc[0], eer[0]) == pytest.approx(rec._roc_auc_eer(same, similarity))
        assert (auc[1], eer[1]) == pytest.approx(rec._roc_auc_eer(same[copies],
                                                                  similarity[copies]))
    # a weight row without a different pair: undefined
    auc, eer = rec.weighted_auc_eer([True, False], [0.9, 0.1], [[1.0, 0.0]])
    assert np.isnan(auc[0]) and np.isnan(eer[0])


def test_equal_error_rate_on_hand_made_curves():
    assert rec._equal_error_rate(np.array([0, 0, 1.0]), np.array([0, 1, 1.0])) == 0.0
    # The chance diagonal crosses fpr = fnr at 0.5.
    assert rec._equal_error_rate(np.linspace(0, 1, 11), np.linspace(0, 1, 11)) == pytest.approx(0.5)
    auc, eer = rec._roc_auc_eer(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.8, 0.1]))
    assert auc == 0.75 and eer == pytest.approx(0.5)


# -- end to end on rendered faces -------------------------------------------------------------

def test_run_recognition_writes_outputs_and_is_reproducible(tmp_path):
    kw = dict(n_identities=4, grid=TINY, size=32, pca_components=8, pca_identities=10,
              pca_images=40, random_state=0)
    first = rec.run_recognition(out=tmp_path / "a", **kw)
    csv = pd.read_csv(tmp_path / "a" / "recognition.csv")
    for col in ("feature", "classifier", "protocol", "abs_azimuth", "elevation", "light",
                "accuracy", "accuracy_low", "accuracy_high", "n", "resamples"):
        assert col in csv.columns
    verification = pd.read_csv(tmp_path / "a" / "verification_summary.csv")
    assert list(verification.columns[2:8]) == ["auc", "auc_low", "auc_high", "eer", "eer_low",
                                               "eer_high"]
    assert (verification["auc_low"] <= verification["auc_high"]).all()
    assert first.params["interval"]["resamples"] == 1000
    assert set(csv["feature"]) == {"pca", "pixels"}
    for name in ("summary.csv", "verification.csv", "verification_summary.csv",
                 "comparison.csv", "run.json", "accuracy_vs_azimuth.png",
                 "accuracy_vs_light.png", "verification_vs_azimuth.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    assert any((tmp_path / "a" / "cache").glob("faces-*"))
    # A re-run (from the cache) and an uncached run give identical numbers.
    again = rec.run_recognition(out=tmp_path / "a", **kw)
    pd.testing.assert_frame_equal(first.accuracy, again.accuracy)
    fresh = rec.run_recognition(out=None, **kw)
    pd.testing.assert_frame_equal(first.accuracy, fresh.accuracy)
    pd.testing.assert_frame_equal(first.verification, fresh.verification)
    pd.testing.assert_frame_equal(first.summary, fresh.summary)  # the intervals too
    # Pixels recognise a frontal probe with the reference's pose better than chance.
    frontal = first.predictions[(first.predictions["azimuth"] == 0)
                                & (first.predictions["protocol"] == "one-view")]
    assert frontal["correct"].mean() > 1 / 4


# -- with a (tiny, untrained) model through the loader ----------------------------------------

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from trainer.checkpoint import latent_layout, save_checkpoint
    from trainer.model import DCIGN, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, latent_dim=10, width=0.0625)
    path = tmp_path_factory.mktemp("runs") / "tiny"
    save_checkpoint(path, model=DCIGN(cfg), config={"model": cfg.to_dict(), "train": {},
                                                    "latent_layout": latent_layout(cfg),
                                                    "data": {}}, state={"step": 0})
    return path


def test_tiny_model_features_and_code_cache(tiny_model_dir, tmp_path):
    grid = rec.ProbeGrid(azimuth_step=90, elevation_step=30, light_step=80, probes_per_azimuth=1,
                         gallery_views=((0, 0, 0), (90, 0, 0)))
    result = rec.run_recognition([str(tiny_model_dir)], n_identities=3,
                                 grid=grid, pca_components=None, classifiers=("1nn-cosine",),
                                 code_cache_dir=tmp_path / "codes", random_state=0)
    assert result.params["size"] == 64
    assert result.params["features"] == {"tiny: intrinsic block": 7, "tiny: full code": 10,
                                         "pixels": 4096}
    assert len(list((tmp_path / "codes").rglob("*.npy"))) == 1  # encoded once, shared
    assert list(result.summary["feature"].unique()) == ["tiny: intrinsic block",
                                                        "tiny: full code", "pixels"]
    assert result.params["reference"] == "tiny: intrinsic block"
    assert result.summary.groupby("feature", sort=False)["model"].first().to_dict() == {
        "tiny: intrinsic block": "tiny", "tiny: full code": "tiny", "pixels": ""}
    assert set(result.comparison["other"]) == {"tiny: full code", "pixels"}


def test_models_of_several_sizes_see_the_same_faces_at_their_own_size(tiny_model_dir, tmp_path):
    """A 64-pixel run and a 32-pixel outside model whose code is its image's mean brightness."""
    from dcign_eval.protocol import Model

    class Brightness:
        image_size = 32
        name = "brightness"

        def encode(self, images):
            return np.asarray(images, np.float32).mean(axis=(1, 2))[:, None] / 255

    small = Model(Brightness())
    result = rec.run_recognition([str(tiny_model_dir), small], n_identities=3, grid=TINY,
                                 pca_components=None, classifiers=("1nn-cosine",),
                                 code_cache_dir=tmp_path / "codes", random_state=0)
    assert result.params["size"] == 64 and result.params["features"]["pixels"] == 64 * 64
    assert result.params["features"]["brightness: full code"] == 1
    assert result.params["models"]["brightness"]["image size"] == 32
    truth = rec.recognition_faces(3, TINY, 32, 0).images.mean(axis=(1, 2)) / 255
    feature = rec.extract_features(rec.model_feature_sets(small), rec.recognition_faces(
        3, TINY, 32, 0).images)["brightness: full code"]
    np.testing.assert_allclose(feature[:, 0], truth, rtol=1e-5)


def test_cli_errors_are_one_line(monkeypatch, capsys, tmp_path):
    from dcign_eval import cli

    for args, expected in ((["--model", "none", "--identities", "1"],
                            "at least 2 held-out identities"),
                           (["--model", str(tmp_path / "missing")], "no model")):
        monkeypatch.setattr(sys, "argv", ["dcign-eval", "recognition", "--out",
                                          str(tmp_path / "o"), *args])
        with pytest.raises(SystemExit) as e:
            cli.main()
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err
