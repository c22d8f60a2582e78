"""The main job (dcign-eval demo, dcign_eval/pipeline.py): the ``tiny`` profile's run (the
``demo`` fixture of tests/conftest.py), reuse of its runs and caches, and the profiles' recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcign_eval.pipeline import QUICK, TINY, profile, recipe_jobs
from trainer.errors import DcignError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_demo_trains_both_models_and_writes_the_report(demo):
    from dcign_eval import load_model

    result = demo["result"]
    assert result.report.is_file() and result.report.name == "index.html"
    dcign, vae = load_model(result.runs["dcign"]), load_model(result.runs["vae"])
    assert dcign.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    assert vae.latent_names == {}
    steps = {"dcign": 8, "vae": 6}
    for role, run in result.runs.items():
        state = json.loads((run / "state.json").read_text())
        assert state["step"] == steps[role] and state["status"] == "finished"
    # both start from the shipped pretraining, which nothing retrains
    from trainer.checkpoint import SHIPPED_DIR
    assert not (result.runs["vae"].parent / "pretrain").exists()
    assert dcign.config["train"]["init_from"] == str(SHIPPED_DIR / "vae-pretrain")
    assert vae.config["train"]["init_from"] == str(SHIPPED_DIR / "vae-pretrain")
    assert set(result.seconds) == {"data", "training", "evaluation and report", "total"}
    assert any("training dcign" in line for line in demo["log"])


def test_demo_again_reuses_runs_and_report_caches(demo):
    from dcign_eval.pipeline import run_demo

    lines: list[str] = []
    again = run_demo(TINY, demo["root"] / "out", data_root=demo["root"] / "data",
                     cache_dir=demo["root"] / "cache", log=lines.append)
    assert sum("already trained" in line for line in lines) == 2  # dcign, vae
    page = again.report.read_text()
    assert "these values come from the report cache" in page  # metrics
    assert "Taken from the report cache." in page  # recognition


def test_a_failed_training_is_one_line_with_the_trainers_error(tmp_path):
    from dcign_eval.pipeline import _Job, train_models

    run = tmp_path / "runs" / "dcign"
    job = _Job("dcign", run, ["--data", str(tmp_path / "nowhere"), "--out", str(run), "--steps",
                              "5"], 5)
    with pytest.raises(DcignError) as e:
        train_models([job], parallel=False, log=lambda line: None)
    message = str(e.value)
    assert "\n" not in message and "training dcign failed" in message
    assert "no data directory" in message  # the trainer's own error line, from its log


def test_profiles_train_the_shipped_recipes():
    quick, full = QUICK, profile("full")
    assert quick.recipes["dcign"] == quick.recipes["vae"]
    assert Path(quick.recipes["dcign"]).name == "quick.toml"
    assert {k: Path(v).name for k, v in full.recipes.items()} == {"dcign": "dcign.toml",
                                                                   "vae": "vae.toml"}
    # one recipe for both, each model a branch from the shipped pretraining: nothing first
    first, models, runs = recipe_jobs(quick, Path("o"), Path("d"))
    assert first == []
    assert [j.run for j in models] == [Path("o/dcign"), Path("o/vae")]
    assert runs == {"dcign": Path("o/dcign"), "vae": Path("o/vae")}
    assert models[0].argv[-2:] == ["--stage", "dcign"] and "--set=data=d" in models[0].argv
    # a recipe a model: each whole, its output directory the model
    first, models, runs = recipe_jobs(full, Path("o"), Path("d"))
    assert first == [] and runs == {"dcign": Path("o/dcign"), "vae": Path("o/vae")}
    assert [j.run for j in models] == [Path("o/dcign/decoder-wide"), Path("o/vae/decoder-wide")]
    assert "--stage" not in models[0].argv
