"""The paper's per-neuron fits and diagnostics (:mod:`dcign_eval.metrics.factor_fit`) and the
`dcign-eval diagnose` command."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dcign_eval.metrics import factor_fit
from dcign_eval.metrics.factor_fit import (GRID_FACTORS, describe_shape, fold_fit,
                                           neuron_diagnostics)
from trainer.errors import DcignError


def test_monotone_fit():
    x = np.repeat(np.arange(10.0), 5)
    assert factor_fit.monotone_fit(np.exp(x / 3), x) == {"spearman": 1.0, "r2": 1.0}
    dec = factor_fit.monotone_fit(-x**3, x)
    assert dec["spearman"] == pytest.approx(1.0) and dec["r2"] == pytest.approx(1.0)
    noise = factor_fit.monotone_fit(np.random.default_rng(0).normal(size=50), x)
    assert noise["spearman"] < 0.4 and noise["r2"] < 0.4
    assert factor_fit.monotone_fit(np.zeros(50), x) == {"spearman": 0.0, "r2": 0.0}
    with pytest.raises(DcignError, match="NaN"):
        factor_fit.monotone_fit(np.full(50, np.nan), x)


def test_named_neuron_fits():
    x = np.linspace(-80, 80, 60)
    codes = np.column_stack([np.tanh(x / 50), np.zeros(60), x[::-1]])
    fits = factor_fit.named_neuron_fits(codes, {"azimuth": x, "light": x},
                                        {"azimuth": 0, "light": 2})
    assert list(fits) == ["azimuth", "light"]
    assert fits["azimuth"] == {"neuron": 0, "spearman": 1.0, "r2": 1.0}
    assert fits["light"]["spearman"] == pytest.approx(1.0)
    with pytest.raises(DcignError, match="outside"):
        factor_fit.named_neuron_fits(codes, {"azimuth": x}, {"azimuth": 5})


def test_intrinsic_invariance():
    rng = np.random.default_rng(8)
    identity = np.repeat(np.arange(6), 20)
    per_identity = rng.normal(size=(6, 4))
    invariant = per_identity[identity]
    assert factor_fit.intrinsic_invariance(invariant, identity) == 0.0
    noisy = invariant + rng.normal(0, 0.1, invariant.shape)
    assert 0 < factor_fit.intrinsic_invariance(noisy, identity) < 0.2
    assert factor_fit.intrinsic_invariance(rng.normal(size=(120, 4)), identity) == \
        pytest.approx(1.0, abs=0.1)
    assert factor_fit.intrinsic_invariance(np.zeros((120, 4)), identity) == 0.0
    sub = factor_fit.intrinsic_invariance(noisy, identity, max_points=60, random_state=0)
    assert sub == factor_fit.intrinsic_invariance(noisy, identity, max_points=60, random_state=0)
    # chunking does not change the means
    w1 = factor_fit.within_between_distances(noisy, identity)
    w2 = factor_fit.within_between_distances(noisy, identity, chunk=7)
    np.testing.assert_allclose(w1, w2)
    with pytest.raises(DcignError, match="two identities"):
        factor_fit.intrinsic_invariance(noisy, np.zeros(120))


def _grid_frame():
    idx = pd.MultiIndex.from_product([range(4), [-60.0, 0.0, 60.0], [-20.0, 0.0, 20.0],
                                      [-40.0, 40.0]], names=list(GRID_FACTORS))
    return idx.to_frame(index=False)


def test_neuron_diagnostics_separates_precision_from_invariance():
    f = _grid_frame()
    sd = np.full(len(f), 0.5)
    clean = neuron_diagnostics(f.elevation / 20, sd, f, "elevation")
    assert clean["spearman"] == pytest.approx(1) and clean["within_cell"] == pytest.approx(1)
    assert clean["eta2_identity"] == pytest.approx(0) and clean["eta2_azimuth"] == pytest.approx(0)
    assert clean["code_sd"] == pytest.approx(np.sqrt(2 / 3)) and clean["posterior_sd"] == 0.5
    # an identity-dependent offset: perfect inside every cell, worse over the grid
    shifted = neuron_diagnostics(f.elevation / 20 + 1.5 * f.identity, sd, f, "elevation")
    assert shifted["within_cell"] == pytest.approx(1) and shifted["offset_free"] == pytest.approx(1)
    assert shifted["spearman"] < 0.5 and shifted["eta2_identity"] > 0.8
    assert clean["gain_cv"] == pytest.approx(0, abs=1e-9)
    assert shifted["gain_cv"] == pytest.approx(0, abs=1e-9)  # offsets leave the gain alone
    # a gain that grows with |azimuth|: still perfect inside each cell, not once offsets are gone
    gain = 1 + np.abs(f.azimuth) / 30  # 1 at 0, 3 at +-60: slopes 1/20 and 3/20 per degree
    scaled = neuron_diagnostics(gain * f.elevation / 20, sd, f, "elevation")
    assert scaled["within_cell"] == pytest.approx(1) and scaled["offset_free"] < 1
    assert scaled["gain_cv"] == pytest.approx(np.std([1, 3, 3]) / np.mean([1, 3, 3]))
    # a neuron that ignores its factor
    blind = neuron_diagnostics(f.azimuth.to_numpy() + 0.0, sd, f, "elevation")
    assert blind["within_cell"] == 0 and blind["spearman"] == 0 and blind["eta2_azimuth"] == 1


def test_fold_fit_flags_a_neuron_that_encodes_how_far_not_which_way():
    azimuth = np.repeat(np.arange(-90.0, 91.0, 15.0), 5)
    noise = np.random.default_rng(0).normal(0, 0.1, len(azimuth))
    # a quick demo's azimuth neuron: its mean at -90, -75, ..., 90 degrees, lowest at -15
    means = [2.15, 2.07, 1.96, 1.52, 0.84, 0.17, 0.20, 0.61, 1.41, 2.19, 2.66, 2.86, 2.88]
    u = np.repeat(means, 5) + noise
    fit = fold_fit(u, azimuth)
    assert fit["u_shaped"] and fit["fold_at"] == -15
    assert fit["folded_r2"] > 0.9 > 0.7 > fit["monotone_r2"]
    assert "U-shaped" in describe_shape("azimuth", fit) and "-15" in describe_shape("azimuth", fit)
    # monotone neurons, straight or saturating, are not U-shaped, whatever their sign
    for mono in (azimuth / 40 + noise, -np.tanh(azimuth / 30) + noise):
        fit = fold_fit(mono, azimuth)
        assert not fit["u_shaped"] and fit["monotone_r2"] > fit["folded_r2"]
        assert describe_shape("azimuth", fit) is None
    # a neuron that ignores its factor is neither
    assert not fold_fit(noise, azimuth)["u_shaped"]
    assert fold_fit(np.ones_like(azimuth), azimuth) == {
        "monotone_r2": 0.0, "folded_r2": 0.0, "fold_at": pytest.approx(np.nan, nan_ok=True),
        "u_shaped": False}


def test_neuron_diagnostics_sees_a_u_under_a_nuisance_shift():
    f = _grid_frame()
    sd = np.full(len(f), 0.5)
    # U-shaped in azimuth, shifted by light twice as far as azimuth moves it
    shifted_u = np.abs(f.azimuth) / 60 + 2 * f.light / 40
    d = neuron_diagnostics(shifted_u.to_numpy(), sd, f, "azimuth")
    assert d["u_shaped"] and d["fold_at"] == 0 and d["folded_r2"] == pytest.approx(1)
    d = neuron_diagnostics((f.azimuth / 60 + 2 * f.light / 40).to_numpy(), sd, f, "azimuth")
    assert not d["u_shaped"] and d["monotone_r2"] == pytest.approx(1)


def test_neuron_diagnostics_rejects_bad_input():
    f = _grid_frame()
    with pytest.raises(DcignError, match="unknown factor"):
        neuron_diagnostics(f.elevation, np.ones(len(f)), f, "identity")
    with pytest.raises(DcignError, match="lack the columns"):
        neuron_diagnostics(f.elevation, np.ones(len(f)), f.drop(columns="light"), "elevation")
    with pytest.raises(DcignError, match="posterior_sd has"):
        neuron_diagnostics(f.elevation, np.ones(3), f, "elevation")


def test_diagnose_command_writes_both_tables_and_a_baseline_gets_its_budget(tmp_path,
                                                                          tiny_runs):
    from dcign_eval.cli import app

    runs = tiny_runs
    grid = ["--identities", "2", "--grid-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(app, ["diagnose", "--model", str(runs["tiny-dcign"]),
                                      "--out", str(tmp_path / "d"), *grid])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "d" / "diagnostics.csv")
    assert list(df.neuron) == ["azimuth", "elevation", "light"]
    assert df.eta2_azimuth.isna().tolist() == [True, False, False]
    assert (df.posterior_sd > 0).all()
    budget = pd.read_csv(tmp_path / "d" / "code_budget.csv")
    assert list(budget.block) == ["azimuth", "elevation", "light", "intrinsic", "total"]
    assert budget.latents.tolist()[:3] == [1, 1, 1]
    assert budget.latents.iloc[-1] == budget.latents.iloc[-2] + 3
    n_latents = budget.latents.iloc[-1]
    parts = budget.kl_nats[:4].sum()
    assert budget.kl_nats.iloc[-1] == pytest.approx(parts) and parts > 0
    result = CliRunner().invoke(app, ["diagnose", "--model", str(runs["tiny-vae"]),
                                      "--out", str(tmp_path / "v"), *grid])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "v" / "diagnostics.csv").exists()
    budget = pd.read_csv(tmp_path / "v" / "code_budget.csv")
    assert list(budget.block) == ["code"] and budget.latents[0] == n_latents


def test_code_budget_is_the_gaussian_kl_by_block():
    from dcign_eval.metrics.factor_fit import code_budget

    rng = np.random.default_rng(0)
    mu, sd = rng.normal(size=(50, 5)), np.full((50, 5), 1.0)
    mu[:, 3:] = 0  # two latents at the prior: no information, not active
    rows = {r["block"]: r for r in code_budget(mu, sd, {"azimuth": 0, "light": 1})}
    assert rows["azimuth"]["kl_nats"] == pytest.approx(0.5 * np.mean(mu[:, 0] ** 2))
    assert rows["intrinsic"]["latents"] == 3 and rows["intrinsic"]["active"] == 1
    assert rows["total"]["kl_nats"] == pytest.approx(0.5 * np.mean((mu ** 2).sum(1)))
    narrow = code_budget(np.zeros((4, 2)), np.full((4, 2), 0.5), {})
    assert narrow == [{"block": "code", "latents": 2, "active": 2,
                       "kl_nats": pytest.approx(2 * (0.5 * (0.25 - 1) - np.log(0.5)))}]
    with pytest.raises(DcignError, match="positive"):
        code_budget(np.zeros((2, 2)), np.zeros((2, 2)), {})
    with pytest.raises(DcignError, match="shape"):
        code_budget(np.zeros((2, 2)), np.ones((2, 3)), {})
