"""Recipes: parsing and its errors, running stages, resuming after a crash, branching, lineage."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import trainer.train as train_mod
from dcign_eval import load_model
from dcign_eval.cli import app
from trainer.__main__ import main as trainer_main
from trainer.checkpoint import load_checkpoint, read_lineage
from trainer.config import TrainConfig
from trainer.errors import CheckpointError, DcignError
from trainer.recipe import load_recipe, parse_recipe, run_recipe
from trainer.train import train

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(mono64) -> Path:
    return mono64


TINY = """
width = 0.125
checkpoint_every = 2
val_every = 2
val_batches = 2
verify_data = false
quiet = true
invariance_strength = 10
"""


def recipe_text(data, stages: str, top: str = TINY) -> str:
    return f'data = "{data}"\n{top}\n{stages}'


TWO_STAGES = """
[[stage]]
name = "pretrain"
mode = "vae"
steps = 4

[[stage]]
name = "dcign"
steps = 6
"""


def error_of(text: str, *overrides) -> str:
    with pytest.raises(DcignError) as e:
        parse_recipe(text, "r.toml", overrides)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def weights(run) -> dict:
    return load_checkpoint(run).weights


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# -- parsing ---------------------------------------------------------------------------------------

def test_top_level_options_apply_where_they_mean_something():
    r = parse_recipe(recipe_text("d", TWO_STAGES), "r.toml")
    assert [s.name for s in r.stages] == ["pretrain", "dcign"]
    pre, dcign = r.stages
    assert "invariance_strength" not in pre.options  # vae mode: nothing is clamped
    assert dcign.options["invariance_strength"] == 10.0
    assert pre.start is None and dcign.start == "pretrain"
    cfg = dcign.config("OUT", r)
    assert cfg.out == str(Path("OUT") / "dcign") and cfg.init_from == str(Path("OUT") / "pretrain")
    assert cfg.width == 0.125 and cfg.steps == 6 and cfg.mode == "monovariant"


@pytest.mark.parametrize("stages,top,expected", [
    ("[[stage]]\nname = 'a'\nlrr = 1e-3\nsteps = 2\n", TINY, "unknown key 'lrr' in stage 'a'"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n", TINY + "stepz = 3\n", "unknown key 'stepz' at the top"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'a'\nsteps = 2\n", TINY,
     "two stages of r.toml are named 'a'"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'b'\ninit_from = 'c'\n", TINY,
     "'c', which names no earlier stage nor shipped model"),
    ("[[stage]]\nname = 'a'\ninit_from = 'b'\n[[stage]]\nname = 'b'\nsteps = 2\n", TINY,
     "'b', a later stage"),
    ("[[stage]]\nname = 'a'\nmode = 'vae'\ninvariance_strength = 1.0\n", TINY,
     "stage 'a' of r.toml sets invariance_strength, which vae mode ignores"),
    ("[[stage]]\nname = 'a'\nmode = 'vae'\n", TINY,
     "invariance_strength at the top level of r.toml applies to no stage"),
    ("[[stage]]\nname = 'a'\nsteps = 'many'\n", TINY, "stage 'a' of r.toml: steps must be an "
                                                      "integer, got 'many'"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'b'\ninit_from = 'a'\n"
     "init_step = 3\n", TINY, "starts from step 3 of 'a', which trains 2 steps"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'b'\nwiden_decoder = true\n"
     "freeze_encoder = true\n", TINY, "sets widen_decoder but its decoder has the shape of 'a'"),
    ("[[stage]]\nname = 'a'\nfreeze_encoder = true\n", TINY, "freeze_encoder needs a trained"),
    ("[[stage]]\nname = 'a'\nout = 'x'\n", TINY, "sets 'out'; the runner sets it"),
    ("[[stage]]\nname = 'a/b'\n", TINY, "needs a name of letters"),
    ("[[stage]]\nname = 'a'\nmode = 'vea'\n", TINY, "stage 'a' of r.toml: mode must be one of "
                                                   "monovariant, vae, got 'vea'"),
    ("", TINY, "has no stages"),
    ("[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'b'\ndecoder_width = 1.0\n", TINY,
     "has another decoder than 'a' ((48, 96, 96) maps against (6, 12, 12))"),
])
def test_each_recipe_error_is_one_line(stages, top, expected):
    assert expected in error_of(recipe_text("d", stages, top))


def test_deviations_from_the_paper_are_the_recipes_own_lines():
    text = recipe_text("d", TWO_STAGES, 'deviations = ["A pretraining.", "Width 0.125."]\n' + TINY)
    assert parse_recipe(text, "r.toml").deviations == ("A pretraining.", "Width 0.125.")
    assert parse_recipe(recipe_text("d", TWO_STAGES), "r.toml").deviations == ()
    for bad in ('"A pretraining."', '[1, 2]', '[""]'):
        assert "deviations in r.toml must be a list of sentences (strings), got" in \
            error_of(recipe_text("d", TWO_STAGES, f"deviations = {bad}\n" + TINY))


def test_bad_toml_and_missing_data():
    assert "r.toml is not valid TOML" in error_of("width = \n[[stage]]\n")
    assert "names no data" in error_of("[[stage]]\nname = 'a'\n")
    assert "unknown key 'sise' in [data]" in error_of("[data]\nsise = 64\n[[stage]]\nname = 'a'\n")


def test_overrides_reach_every_stage_the_data_and_one_stage():
    text = TINY + "[data]\nout = 'd'\nsize = 150\n" + TWO_STAGES
    r = parse_recipe(text, "r.toml", ["steps=1", "data.size=64", "dcign.lr=0.002"])
    assert [s.options["steps"] for s in r.stages] == [1, 1]
    assert r.data["size"] == 64 and r.data["out"] == "d"
    assert r.stage("dcign").options["lr"] == 0.002 and "lr" not in r.stage("pretrain").options
    assert "--set steps=1" in r.lineage_text()
    assert "no stage named 'x'" in error_of(text, "x.lr=1")


def test_beta_is_read_as_the_kl_weight_with_a_warning(capsys):
    r = parse_recipe(recipe_text("d", "[[stage]]\nname = 'a'\nbeta = 0.2\n"), "r.toml")
    assert r.stages[0].options["kl_weight"] == 0.2 and "beta" not in r.stages[0].options
    assert "'beta' in stage 'a' of r.toml is deprecated" in capsys.readouterr().err


def test_shipped_recipes_parse():
    for path in sorted((ROOT / "recipes").rglob("*.toml")):
        recipe = load_recipe(path)
        assert recipe.stages, path
    dcign = load_recipe(ROOT / "recipes" / "dcign.toml")
    vae = load_recipe(ROOT / "recipes" / "vae.toml")
    # the shipped models' budget: at most the 78,934 steps of 20 images of the models they
    # replaced, and the baseline never trained less than the DC-IGN it is compared with
    steps = {name: sum(s.options["steps"] for s in recipe.stages)
             for name, recipe in (("dcign", dcign), ("vae", vae))}
    assert steps["dcign"] <= steps["vae"] <= 78_934


@pytest.mark.parametrize("name", ["dcign", "vae"])
def test_shipped_models_are_what_their_recipes_train(name):
    """Each shipped model's lineage is its recipe: the same stages, in order, each trained as
    long and with the options the recipe gives it (a recipe changed without re-shipping fails)."""
    from dcign_eval.models import SHIPPED_DIR
    from trainer.recipe import differing_option

    recipe = load_recipe(ROOT / "recipes" / f"{name}.toml")
    stages = read_lineage(SHIPPED_DIR / name).stages
    assert [s["name"] for s in stages] == [s.name for s in recipe.stages]
    for record, stage in zip(stages, recipe.stages):
        assert record["steps"] == stage.options.get("steps", TrainConfig.steps), stage.name
        saved = TrainConfig.from_run_config(record).to_dict()  # its "train" and "model"
        assert differing_option(saved, stage.config("runs", recipe).to_dict()) is None, stage.name


# -- running ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_stages(data, tmp_path_factory) -> Path:
    """TWO_STAGES trained once, uninterrupted."""
    out = tmp_path_factory.mktemp("recipe") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_recipe(parse_recipe(recipe_text(data, TWO_STAGES), "two.toml"), out,
                            log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished"
    return out


def test_two_stages_end_to_end(data, two_stages, tmp_path):
    recipe = parse_recipe(recipe_text(data, TWO_STAGES), "two.toml")
    out = two_stages
    assert load_checkpoint(out / "pretrain").step == 4
    assert load_checkpoint(out / "dcign").step == 6
    # DIR loads as the final stage's model, DIR/<stage> as that stage's
    assert load_model(out).path == out / "dcign"
    assert load_model(out).latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    assert load_model(out / "pretrain").latent_names == {}
    # the same stages trained by hand give the same weights
    by_hand = dict(data=str(data), width=0.125, checkpoint_every=2, val_every=2, val_batches=2,
                   verify_data=False, quiet=True)
    train(TrainConfig(**by_hand, out=str(tmp_path / "pre"), mode="vae", steps=4))
    train(TrainConfig(**by_hand, out=str(tmp_path / "mono"), steps=6, invariance_strength=10,
                      init_from=str(tmp_path / "pre")))
    assert_same_weights(out / "dcign", tmp_path / "mono")
    # the lineage: both stages, the recipe's text, one history across them
    lineage = read_lineage(out)
    assert [s["name"] for s in lineage.stages] == ["pretrain", "dcign"]
    assert lineage.steps == 10 and lineage.images == 10 * 20
    assert lineage.recipe == recipe.text and lineage.recipe_file == "two.toml"
    assert lineage.stages[0]["train"]["mode"] == "vae"
    assert lineage.stages[1]["start"] == {"stage": "pretrain", "step": 4}
    assert all(s["hardware"] != "unknown" and s["seconds"] > 0 for s in lineage.stages)
    assert lineage.boundaries() == [("pretrain", 1, 4), ("dcign", 5, 10)]
    steps = [h["step"] for h in lineage.history if h["split"] == "train"]
    assert steps == list(range(1, 11))
    assert [h["stage"] for h in lineage.history if h["split"] == "train"] == \
        ["pretrain"] * 4 + ["dcign"] * 6
    seconds = [h["seconds"] for h in lineage.history]
    assert seconds == sorted(seconds)
    # running it again trains nothing
    before = (out / "dcign" / "state.json").read_text()
    assert run_recipe(recipe, out, log=lambda line: None).status == "finished"
    assert (out / "dcign" / "state.json").read_text() == before


def test_one_stage_alone_is_the_whole_recipes_stage(data, two_stages, tmp_path):
    # `--stage pretrain`: how a shipped model that is a recipe's first stage is rebuilt
    recipe = parse_recipe(recipe_text(data, TWO_STAGES), "two.toml")
    result = run_recipe(recipe, tmp_path / "out", log=lambda line: None, stage="pretrain")
    assert result.status == "finished" and result.stage == "pretrain"
    assert not (tmp_path / "out" / "dcign").exists()
    assert_same_weights(two_stages / "pretrain", tmp_path / "out" / "pretrain")


def test_a_crash_mid_recipe_then_the_same_command_finishes_identically(data, two_stages,
                                                                       tmp_path, monkeypatch):
    recipe = parse_recipe(recipe_text(data, TWO_STAGES), "two.toml")

    real, calls = train_mod.forward_backward, {"n": 0}

    def dies_at_the_7th_step(*args):  # stage 2's third step: its step-2 checkpoint is written
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # as a kill -9 would, nothing more is written
        return real(*args)
    monkeypatch.setattr(train_mod, "forward_backward", dies_at_the_7th_step)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "crashed", log=lambda line: None)
    assert load_checkpoint(tmp_path / "crashed" / "dcign").step == 2
    with pytest.raises(CheckpointError) as e:  # DIR is not a model until its last stage ends
        load_model(tmp_path / "crashed")
    assert "has not finished" in str(e.value)
    monkeypatch.setattr(train_mod, "forward_backward", real)
    lines = []
    run_recipe(recipe, tmp_path / "crashed", log=lines.append)
    assert any("pretrain already finished" in line for line in lines)
    assert any("continuing at step 2" in line for line in lines)
    assert_same_weights(two_stages / "dcign", tmp_path / "crashed" / "dcign")


def test_kill_9_mid_recipe_then_the_same_command_finishes_identically(data, tmp_path):
    text = recipe_text(data, TWO_STAGES.replace("steps = 6", "steps = 12")).replace(
        "checkpoint_every = 2", "checkpoint_every = 1")
    (tmp_path / "r.toml").write_text(text)
    cmd = [sys.executable, "-m", "trainer", "--recipe", str(tmp_path / "r.toml"), "--out",
           str(tmp_path / "killed")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "dcign" / "state.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if state.is_file() and json.loads(state.read_text())["step"] >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= load_checkpoint(tmp_path / "killed" / "dcign").step < 12
    # the same command again, in this process: what is tested is what the kill left on disk
    assert trainer_main(cmd[3:]) == 0
    run_recipe(load_recipe(tmp_path / "r.toml"), tmp_path / "whole", log=lambda line: None)
    assert_same_weights(tmp_path / "whole" / "dcign", tmp_path / "killed" / "dcign")


def test_branching_with_init_from_and_init_step(data, two_stages, tmp_path):
    stages = TWO_STAGES + """
[[stage]]
name = "vae"
mode = "vae"
steps = 3
init_from = "pretrain"
init_step = 2
"""
    out = tmp_path / "out"
    run_recipe(parse_recipe(recipe_text(data, stages), "branch.toml"), out, log=lambda l: None)
    # the pretraining ran on to its end exactly as if it had never stopped at step 2
    assert_same_weights(out / "pretrain", two_stages / "pretrain")
    assert_same_weights(out / "dcign", two_stages / "dcign")
    # its step-2 checkpoint was kept, and the branch started from it
    assert load_checkpoint(out / "pretrain@2").step == 2
    lineage = read_lineage(out)
    assert [(s["name"], s["steps"]) for s in lineage.stages] == [("pretrain", 2), ("vae", 3)]
    assert lineage.stages[1]["start"] == {"stage": "pretrain", "step": 2}
    assert load_model(out).path == out / "vae"
    by_hand = dict(data=str(data), width=0.125, checkpoint_every=2, val_every=2, val_batches=2,
                   verify_data=False, quiet=True, mode="vae")
    train(TrainConfig(**by_hand, out=str(tmp_path / "pre2"), steps=2))
    train(TrainConfig(**by_hand, out=str(tmp_path / "vae"), steps=3,
                      init_from=str(tmp_path / "pre2")))
    assert_same_weights(out / "vae", tmp_path / "vae")


def test_a_changed_recipe_does_not_continue_silently(data, two_stages, tmp_path):
    out = two_stages
    changed = parse_recipe(recipe_text(data, TWO_STAGES.replace("steps = 6", "steps = 6\n"
                                                                "lr = 0.001")), "two.toml")
    with pytest.raises(DcignError) as e:
        run_recipe(changed, out, log=lambda line: None)
    assert "trained with lr = 0.0005, the recipe says 0.001" in str(e.value)
    longer = parse_recipe(recipe_text(data, TWO_STAGES.replace("steps = 4", "steps = 5")),
                          "two.toml")
    with pytest.raises(DcignError) as e:
        run_recipe(longer, out, log=lambda line: None)
    assert "has trained 4 steps, the recipe asks for 5" in str(e.value)
    (tmp_path / "other" / "mine").mkdir(parents=True)
    with pytest.raises(DcignError) as e:
        run_recipe(changed, tmp_path / "other", log=lambda line: None)
    assert "holds mine/, which is no stage of this recipe" in str(e.value)


def test_cli_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "bad.toml").write_text("data = 'd'\n[[stage]]\nname = 'a'\nmode = 'vae'\n"
                                       "ratio = [1, 1, 1, 1]\n")
    for args, expected in (
            (["--recipe", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")],
             "sets ratio, which vae mode ignores"),
            (["--recipe", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")],
             "none.toml not found"),
            (["--recipe", str(tmp_path / "bad.toml"), "--lr", "0.1"],
             "--lr cannot go with --recipe")):
        result = CliRunner().invoke(app, ["train", *args])
        assert result.exit_code != 0
        assert expected in str(result.exception), result.exception
    assert not (tmp_path / "o").exists()
    # the console script: one line, exit status 2
    proc = subprocess.run([sys.executable, "-c", "from dcign_eval.cli import main; main()",
                           "train", "--recipe", str(tmp_path / "bad.toml"), "--out",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr


def test_paper_150_at_a_tiny_scale(data, tmp_path):
    """The GPU recipe's stages and grouped batches run, on the tiny 64x64 set for one step each."""
    recipe = load_recipe(ROOT / "recipes" / "paper-150.toml",
                         [f"data={data}", "steps=1", "width=0.125", "checkpoint_every=1",
                          "val_every=1", "val_batches=1", "quiet=true", "verify_data=false"])
    assert recipe.data is None and all(s.options["batches_per_step"] == 8 for s in recipe.stages)
    assert run_recipe(recipe, tmp_path / "out", log=lambda line: None).status == "finished"
    lineage = read_lineage(tmp_path / "out")
    assert [s["name"] for s in lineage.stages] == [s.name for s in recipe.stages]
    assert lineage.steps == len(recipe.stages) and lineage.images == len(recipe.stages) * 8 * 20
    assert "--set steps=1" in lineage.recipe


def test_the_lineage_in_the_report_and_the_model_card(two_stages, tmp_path):
    import importlib.util

    from dcign_eval.report import (load_report_models, model_card, plot_training_curves,
                                   stage_boundaries, training_curves)
    models = load_report_models(two_stages)
    card = model_card(models[0])
    assert card["steps trained, all stages"] == "10 (200 images, 2 stages)"
    assert card["stages (the last one's settings above)"] == \
        "pretrain (vae, 4) → dcign (monovariant, 6)"
    assert "training time, all stages" in card
    curves = training_curves(models)
    train_rows = curves[curves["split"] == "train"]
    assert list(dict.fromkeys(train_rows["stage"])) == ["pretrain", "dcign"]
    assert train_rows["step"].min() == 1 and train_rows["step"].max() == 10
    bounds = stage_boundaries(models)
    assert list(bounds[["stage", "first_step", "last_step"]].itertuples(index=False, name=None)) \
        == [("pretrain", 1, 4), ("dcign", 5, 10)]
    fig = plot_training_curves(curves, bounds)
    assert [t.get_text() for t in fig.axes[0].texts] == ["dcign"]  # where the second stage starts

    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    text = ship.card("dcign", two_stages / "dcign", None)
    assert "2 stages, 10 steps = 200 images, " in text
    assert "| `pretrain` | vae mode (" in text and "| `dcign` | monovariant mode (" in text
    rebuild = next(line for line in text.splitlines() if line.startswith("dcign-eval train"))
    assert rebuild.startswith("dcign-eval train --recipe ") and "two.toml" in rebuild


def test_runs_by_hand_with_init_from_record_their_lineage_too(data, tmp_path):
    tiny = dict(data=str(data), width=0.125, checkpoint_every=5, val_every=0, quiet=True,
                verify_data=False, mode="vae")
    parent = ""
    for i, steps in enumerate((2, 3, 1)):  # three runs, each in a folder called "run"
        out = tmp_path / str(i) / "run"
        train(TrainConfig(**tiny, out=str(out), steps=steps, init_from=parent))
        parent = str(out)
    lineage = read_lineage(parent)
    assert [(s["name"], s["steps"]) for s in lineage.stages] == [("run", 2), ("run#2", 3),
                                                                 ("run", 1)]
    assert [h["stage_index"] for h in lineage.history] == [0, 0, 1, 1, 1, 2]
    assert [h["step"] for h in lineage.history] == [1, 2, 3, 4, 5, 6]
    assert lineage.recipe is None and lineage.steps == 6


def test_a_stage_whose_encoder_does_not_fit_the_one_it_starts_from():
    stages = "[[stage]]\nname = 'a'\nsteps = 2\n[[stage]]\nname = 'b'\nwidth = 0.25\n"
    assert "stage 'b' of r.toml has encoder_channels (24, 12) but starts from 'a', which has " \
           "(12, 6)" in error_of(recipe_text("d", stages))


def test_a_second_recipe_waits_for_the_data_another_one_renders(tmp_path, hold_lock):
    """The DC-IGN's and the baseline's recipes started together share one data set: the second
    waits while the first holds its lock, then reuses what it rendered."""
    from trainer.recipe import render_data
    data = tmp_path / "mv"
    recipe = parse_recipe(f"[data]\nout = '{data}'\ntrain_batches = 1\ntest_batches = 1\n"
                          "size = 32\n[[stage]]\nname = 'a'\nsteps = 1\n", "r.toml")
    holder = hold_lock(data)
    killer = subprocess.Popen([sys.executable, "-c",
                               f"import os, time; time.sleep(1); os.kill({holder.pid}, 9)"])
    start = time.perf_counter()
    render_data(recipe, log=lambda line: None)
    waited = time.perf_counter() - start
    killer.wait()
    holder.wait()
    assert waited > 0.5
    assert sorted(p.name for p in data.iterdir()) == ["test", "train"]


# -- a stage that starts from a shipped model ------------------------------------------------------

@pytest.fixture
def shipped(data, two_stages, tmp_path, monkeypatch) -> Path:
    """A shipped-models folder holding one model, "tiny-pretrain" (TWO_STAGES' pretraining)."""
    import shutil

    import trainer.checkpoint as ckpt_io
    folder = tmp_path / "models"
    shutil.copytree(two_stages / "pretrain", folder / "tiny-pretrain",
                    ignore=shutil.ignore_patterns("optimizer.pt", "rng.pt"))
    monkeypatch.setattr(ckpt_io, "SHIPPED_DIR", folder)
    return folder


FROM_SHIPPED = """
[[stage]]
name = "vae"
mode = "vae"
steps = 3
init_from = "tiny-pretrain"

[[stage]]
name = "dcign"
steps = 4
init_from = "tiny-pretrain"
"""


def test_init_from_names_a_shipped_model(data, shipped, two_stages, tmp_path):
    r = parse_recipe(recipe_text(data, FROM_SHIPPED), "q.toml")
    assert [(s.start, s.start_model) for s in r.stages] == [(None, "tiny-pretrain")] * 2
    assert r.stage("dcign").config("OUT", r).init_from == str(shipped / "tiny-pretrain")
    assert "dcign: monovariant, 4 steps, from the shipped model tiny-pretrain" in \
        "\n".join(r.describe())
    assert [s.name for s in r.lineage_of("dcign")] == ["dcign"]  # nothing of the recipe before
    out = tmp_path / "out"
    assert run_recipe(r, out, log=lambda line: None).status == "finished"
    # each model continues the shipped weights exactly as `--init-from` the folder does by hand
    by_hand = dict(data=str(data), width=0.125, checkpoint_every=2, val_every=2, val_batches=2,
                   verify_data=False, quiet=True, init_from=str(shipped / "tiny-pretrain"))
    train(TrainConfig(**by_hand, out=str(tmp_path / "dcign"), steps=4, invariance_strength=10))
    assert_same_weights(out / "dcign", tmp_path / "dcign")
    lineage = read_lineage(out / "vae")
    assert [(s["name"], s["steps"]) for s in lineage.stages] == [("pretrain", 4), ("vae", 3)]
    assert json.loads((out / "recipe.json").read_text())["stages"][1]["start_model"] == \
        "tiny-pretrain"
    # the same command again: both finished, nothing retrains
    assert run_recipe(r, out, log=lambda line: None).status == "finished"


@pytest.mark.parametrize("stages,expected", [
    (FROM_SHIPPED.replace('"tiny-pretrain"\n\n', '"tiny-pretrained"\n\n'),
     "stage 'vae' of r.toml starts from 'tiny-pretrained', which names no earlier stage nor "
     "shipped model (stages: vae; shipped models: tiny-pretrain)"),
    (FROM_SHIPPED.replace("steps = 4\n", "steps = 4\ninit_step = 2\n"),
     "sets init_step, but it starts from the shipped model 'tiny-pretrain', which keeps its last "
     "step only"),
    (FROM_SHIPPED.replace("steps = 4\n", "steps = 4\nwidth = 0.25\n"),
     "stage 'dcign' of r.toml has encoder_channels (24, 12) but starts from the shipped model "
     "'tiny-pretrain', which has (12, 6)"),
    (FROM_SHIPPED.replace('"tiny-pretrain"\n\n', '3\n\n'),
     "init_from must be a stage's or a shipped model's name, got 3"),
])
def test_a_bad_shipped_start_is_one_line(shipped, stages, expected):
    assert expected in error_of(recipe_text("d", stages))


def test_a_stage_name_wins_over_a_shipped_model_of_that_name(shipped):
    stages = "[[stage]]\nname = 'tiny-pretrain'\nmode = 'vae'\nsteps = 2\n" \
             "[[stage]]\nname = 'b'\ninit_from = 'tiny-pretrain'\n"
    r = parse_recipe(recipe_text("d", stages), "r.toml")
    assert (r.stage("b").start, r.stage("b").start_model) == ("tiny-pretrain", None)


def test_an_unknown_shipped_start_on_the_command_line_is_one_line_exit_2(tmp_path):
    (tmp_path / "r.toml").write_text("data = 'd'\n[[stage]]\nname = 'a'\nmode = 'vae'\n"
                                     "init_from = 'no-such-model'\n")
    # python -m trainer's own argv, in-process: the one DcignError its __main__ prints as one
    # "error:" line with exit status 2 (that wrapper in a real process: test_trainer_train.py)
    with pytest.raises(DcignError) as e:
        trainer_main(["--recipe", str(tmp_path / "r.toml"), "--out", str(tmp_path / "o")])
    message = str(e.value)
    assert message and "\n" not in message
    assert "'no-such-model', which names no earlier stage nor shipped model" in message
    assert not (tmp_path / "o").exists()
