"""recipes/quick.toml: what `make demo` trains (the tiny profile, the same at a tiny scale, runs
end to end in tests/test_report.py)."""

from pathlib import Path

from dcign_eval import load_model
from dcign_eval.pipeline import QUICK, TINY
from trainer.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quick.toml"
DCIGN_CHOICES = ("code_width", "named_latents", "invariance_scale", "invariance_strength")


def test_quick_recipe_branches_both_models_from_the_shipped_pretraining():
    recipe = load_recipe(RECIPE)  # the recipe runner's own parser and checks
    assert [s.name for s in recipe.stages] == ["vae", "dcign"]
    vae, dcign = recipe.stage("vae"), recipe.stage("dcign")
    assert vae.start is None and dcign.start is None
    assert vae.start_model == dcign.start_model == "vae-pretrain"
    assert load_model("vae-pretrain").latent_names == {}  # installed, loads, entangled
    assert vae.options["mode"] == "vae" and dcign.options["mode"] == "monovariant"
    # both models continue from one pretraining for the same number of steps
    assert vae.options["steps"] == dcign.options["steps"]
    assert Path(QUICK.recipes["dcign"]).resolve() == RECIPE.resolve()


def test_the_tiny_profile_keeps_the_quick_recipes_choices():
    quick = load_recipe(RECIPE).stage("dcign").options
    tiny = load_recipe(RECIPE, TINY.overrides).stage("dcign").options
    assert {k: tiny.get(k) for k in DCIGN_CHOICES} == {k: quick.get(k) for k in DCIGN_CHOICES}
    assert tiny["steps"] < quick["steps"]
