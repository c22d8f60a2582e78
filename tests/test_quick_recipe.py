"""recipes/quick.toml: what `make demo` trains. Until recipes run by themselves, the demo's quick
profile must train exactly what the recipe says; the tiny profile, the same at a tiny scale, runs
end to end in tests/test_report.py."""

from pathlib import Path

import pytest

from dcign_eval.pipeline import QUICK
from trainer.train import TrainConfig

tomllib = pytest.importorskip("tomllib")
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quick.toml"


def stages() -> tuple[dict, dict[str, dict]]:
    raw = tomllib.loads(RECIPE.read_text())
    data = raw.pop("data")
    common = {k: v for k, v in raw.items() if k != "stage"}
    return data, {s["name"]: {**common, **{k: v for k, v in s.items() if k != "name"}}
                  for s in raw["stage"]}


def test_quick_recipe_parses_into_valid_training_configs():
    data, by_name = stages()
    assert list(by_name) == ["pretrain", "vae", "dcign"]
    for name, options in by_name.items():
        init = options.pop("init_from", None)
        assert init is None or list(by_name).index(init) < list(by_name).index(name)
        cfg = TrainConfig.from_dict({**options, "data": data["out"], "out": f"runs/{name}",
                                     "init_from": f"runs/{init}" if init else ""})
        cfg.validate()
    # both models continue from one pretraining for the same number of steps
    assert by_name["vae"]["steps"] == by_name["dcign"]["steps"]


def test_the_quick_profile_trains_the_quick_recipe():
    data, by_name = stages()
    assert (QUICK.train_batches, QUICK.test_batches) == (data["train_batches"],
                                                        data["test_batches"])
    assert QUICK.pretrain_steps == by_name["pretrain"]["steps"]
    assert QUICK.dcign_steps == by_name["dcign"]["steps"]
    # the baseline continues the pretraining's own run up to its total steps
    assert QUICK.vae_steps == by_name["pretrain"]["steps"] + by_name["vae"]["steps"]
    assert QUICK.width == by_name["dcign"]["width"]
    for role, key in (("dcign", "dcign"), ("vae", "vae")):
        extra = getattr(QUICK, role)
        for option in ("code_width", "named_latents", "invariance_scale",
                       "invariance_strength", "ratio", "lr"):
            if option in by_name[key] or option in extra:
                assert extra.get(option) == by_name[key].get(option), (role, option)


def test_the_tiny_profile_is_the_quick_one_scaled_down():
    from dcign_eval.pipeline import TINY

    assert TINY.pretrain_steps > 0 and TINY.vae_steps == TINY.pretrain_steps + TINY.dcign_steps
    for role in ("dcign", "vae"):
        quick, tiny = getattr(QUICK, role), getattr(TINY, role)
        assert {k: tiny[k] for k in quick} == quick, role
