"""Recipes: a model's whole training, stage by stage, in one TOML file.

``dcign-eval train --recipe FILE --out DIR`` (or ``python -m trainer --recipe FILE --out DIR``)
renders the data when it is missing, then trains the stages in order, each in its own run
directory ``DIR/<stage>``. Run the same command again after a kill or Ctrl-C: finished stages are
skipped and the unfinished one resumes exactly, so the final weights are bit-identical to an
uninterrupted run. ``DIR`` itself loads as the last stage's model (``load_model(DIR)``,
``--model DIR``), and ``DIR/<stage>`` as that stage's.

The format (docs/training.md has the whole of it)::

    deviations = ["..."]      # optional: how the recipe departs from the paper, one line each
    width = 0.25              # top level: training options (TrainConfig keys) for every stage
    seed = 0                  # where they mean something (a monovariant-only option skips the
    invariance_strength = 100 # vae stages)

    [data]                    # `dcign-eval render monovariant` options; rendered when missing
    out = "data/monovariant"  # (or, instead of the table: data = "DIR", an existing data set)

    [[stage]]                 # stages, in order; each starts from the previous one's weights
    name = "pretrain"
    mode = "vae"
    steps = 6000

    [[stage]]
    name = "dcign"
    mode = "monovariant"
    steps = 12934
    init_from = "pretrain"    # optional: start from another earlier stage instead,
    init_step = 4000          # optionally at an earlier step of it (kept as DIR/pretrain@4000)

``init_from`` may also name a shipped model (``dcign_eval/models/<name>/``, e.g.
``"vae-pretrain"``) when no earlier stage has that name: the stage starts from its weights, as
the first stage of its own lineage would.

Every mistake -- an unknown key, an unknown or duplicate stage name, an ``init_from`` that is
missing, later in the file or neither a stage nor a shipped model, an option a stage's mode would
ignore, bad TOML, a stage already trained with other options -- raises
:class:`~trainer.errors.DcignError` before anything trains.

The final run records its whole lineage (the recipe's text, every stage it descends from); see
:func:`trainer.checkpoint.read_lineage`.
"""

from __future__ import annotations

import difflib
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch.distributed as dist

from trainer import checkpoint as ckpt_io
from trainer.config import MODES, RENAMED, TrainConfig, mode_of, renamed_keys
from trainer.errors import ArgumentParser, DcignError
from trainer.model import DECODER_SHAPE, ENCODER_SHAPE
from trainer.train import TrainResult, setup_distributed, train

#: TrainConfig keys the runner sets itself (``init_from`` is a stage's name in a recipe)
RUNNER_KEYS = ("out", "resume", "init_from")
#: a [[stage]] table's own keys, beside training options
STAGE_KEYS = ("name", "init_from", "init_step")
#: the [data] table: `dcign-eval render monovariant`'s options and their types
DATA_KEYS = {"out": str, "train_batches": int, "test_batches": int, "train_identities": int,
             "test_identities": int, "step": float, "seed": int, "size": int}
DEFAULT_DATA_DIR = "data/monovariant"
#: options that may change when a recipe's run is continued: where and how it runs, not what
RUNTIME_KEYS = ("data", "device", "quiet", "compile", "verify_data")
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A one-line warning on stderr (e.g. a deprecated option name)."""
    _stderr(f"warning: {message}")


@dataclass
class Stage:
    """One stage: its name, the training options it gets, and what it starts from.

    ``start``: the stage whose weights it starts from (None: from scratch); ``start_step``: the
    step of ``start`` (None: its last); ``start_model``: instead of a stage, the shipped model
    it starts from (its name).
    """

    name: str
    options: dict
    start: str | None = None
    start_step: int | None = None
    start_model: str | None = None

    def config(self, root: str | Path, recipe: "Recipe") -> TrainConfig:
        """Its TrainConfig for the recipe's output directory ``root``."""
        init_from = str(ckpt_io.SHIPPED_DIR / self.start_model) if self.start_model else ""
        if self.start is not None:
            full = recipe.stage(self.start).options.get("steps", TrainConfig.steps)
            step = None if self.start_step in (None, full) else self.start_step
            init_from = str(ckpt_io.stage_dir(root, self.start, step))
        return TrainConfig(**self.options, out=str(ckpt_io.stage_dir(root, self.name)),
                           init_from=init_from)


@dataclass
class Recipe:
    """A parsed, checked recipe (:func:`parse_recipe`)."""

    text: str
    file: str
    stages: list[Stage]
    data: dict | None = None  # the [data] table, with its defaults filled in
    overrides: tuple[str, ...] = ()
    deviations: tuple[str, ...] = ()  # how it departs from the paper (the report lists them)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> str:
        return self.stages[-1].name

    def lineage_of(self, name: str) -> list[Stage]:
        """The stages ``name`` descends from, earliest first, and ``name`` itself."""
        names = {s.name for s in self.stages}
        if name not in names:
            raise DcignError(f"{self.file} has no stage named {name!r} (stages: "
                             f"{', '.join(s.name for s in self.stages)})")
        chain = [self.stage(name)]
        while chain[0].start is not None:
            chain.insert(0, self.stage(chain[0].start))
        return chain

    def kept_steps(self) -> dict[str, list[int]]:
        """Stage -> the earlier steps of it that other stages start from (kept as copies)."""
        kept: dict[str, set[int]] = {}
        for s in self.stages:
            if s.start is not None and s.start_step is not None and \
                    s.start_step != self.stage(s.start).options.get("steps", TrainConfig.steps):
                kept.setdefault(s.start, set()).add(s.start_step)
        return {k: sorted(v) for k, v in kept.items()}

    def lineage_text(self) -> str:
        """The recipe's text as its runs record it (with the command line's overrides)."""
        if not self.overrides:
            return self.text
        return (self.text.rstrip("\n") + "\n# overridden on the command line: "
                + " ".join(f"--set {o}" for o in self.overrides) + "\n")

    def describe(self) -> list[str]:
        """One line a stage: what it trains and what it starts from."""
        lines = []
        for i, s in enumerate(self.stages, 1):
            o = s.options
            start = (f"from the shipped model {s.start_model}" if s.start_model else
                     "from scratch" if s.start is None else
                     f"from {s.start}" + (f" at step {s.start_step:,}" if s.start_step else ""))
            own = ", ".join(f"{k} {_show(v)}" for k, v in o.items()
                            if k not in ("mode", "steps", "data", "quiet")
                            and v != getattr(TrainConfig(), k))
            lines.append(f"{i}. {s.name}: {o.get('mode', 'monovariant')}, "
                         f"{o.get('steps', TrainConfig.steps):,} steps, {start}"
                         + (f" ({own})" if own else ""))
        return lines


def _show(v) -> str:
    return " ".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else f"{v}"


# -- parsing ---------------------------------------------------------------------------------------

def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read and check the recipe file ``path``; ``overrides``: ``KEY=VALUE`` strings (see
    :func:`apply_overrides`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DcignError(f"recipe {path} not found") from None
    except IsADirectoryError:
        raise DcignError(f"recipe {path} is a directory, not a TOML file") from None
    except UnicodeDecodeError:
        raise DcignError(f"recipe {path} is not UTF-8 text") from None
    return parse_recipe(text, str(path), overrides)


def parse_recipe(text: str, source: str = "the recipe",
                 overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Parse and check a recipe's TOML text (every error of the module docstring)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DcignError(f"{source} is not valid TOML: {e}") from None
    apply_overrides(raw, overrides)
    known_options = [f.name for f in fields(TrainConfig) if f.name not in RUNNER_KEYS]

    def unknown(key: str, where: str, known: list[str]) -> DcignError:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        return DcignError(f"unknown key {key!r} {where} of {source}{hint}")

    # the top level: options for every stage, [data], [[stage]]
    top = {}
    for key, value in raw.items():
        if key in ("stage", "data", "deviations"):
            continue
        if key in RUNNER_KEYS:
            raise DcignError(f"{key!r} at the top level of {source}: "
                             + ("a stage names the stage it starts from with init_from"
                                if key == "init_from" else
                                "the runner sets it (--out DIR on the command line)"))
        name = RENAMED.get(key, key)
        if name not in known_options:
            raise unknown(key, "at the top level", known_options + ["data", "stage", "deviations"])
        top[key] = value
    top = _options(top, f"the top level of {source}")

    data = raw.get("data")
    data_table = None
    if isinstance(data, dict):
        for key in data:
            if key not in DATA_KEYS:
                raise unknown(key, "in [data]", list(DATA_KEYS))
        data_table = {"out": DEFAULT_DATA_DIR, **{k: _typed(v, DATA_KEYS[k], f"data.{k}", source)
                                                   for k, v in data.items()}}
        top["data"] = data_table["out"]
    elif data is not None:
        top["data"] = _typed(data, str, "data", source)
    if not top.get("data"):
        raise DcignError(f"{source} names no data: give data = \"DIR\" (an existing monovariant "
                         f"set) or a [data] table of `dcign-eval render monovariant` options")

    tables = raw.get("stage")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict)
                                                             for t in tables):
        raise DcignError(f"{source} has no stages: add [[stage]] tables, each with a name")
    stages: list[Stage] = []
    for i, table in enumerate(tables, 1):
        name = table.get("name")
        where = f"stage {name!r}" if isinstance(name, str) else f"stage {i}"
        if not isinstance(name, str) or not STAGE_NAME.fullmatch(name):
            raise DcignError(f"{where} of {source} needs a name of letters, digits and _ . - "
                             f"(it names its folder), got {name!r}")
        if any(s.name == name for s in stages):
            raise DcignError(f"two stages of {source} are named {name!r}; stage names must "
                             f"be unique")
        own = {}
        for key, value in table.items():
            if key in STAGE_KEYS:
                continue
            if key in RUNNER_KEYS:
                raise DcignError(f"{where} of {source} sets {key!r}; the runner sets it")
            if RENAMED.get(key, key) not in known_options:
                raise unknown(key, f"in {where}", known_options + list(STAGE_KEYS))
            own[key] = value
        own = _options(own, f"{where} of {source}")
        mode = own.get("mode", top.get("mode", TrainConfig.mode))
        if mode not in MODES:
            raise DcignError(f"{where} of {source}: mode must be one of {', '.join(MODES)}, "
                             f"got {mode!r}")
        ignored = [k for k in own if mode not in mode_of(k)]
        if ignored:
            raise DcignError(f"{where} of {source} sets {ignored[0]}, which {mode} mode ignores "
                             f"(it applies to {' and '.join(mode_of(ignored[0]))} training only)")
        options = {**{k: v for k, v in top.items() if mode in mode_of(k)}, **own}

        start, start_step, start_model = (stages[-1].name if stages else None), None, None
        if "init_from" in table:
            start = table["init_from"]
            names = [s.name for s in stages]
            if not isinstance(start, str):
                raise DcignError(f"{where} of {source}: init_from must be a stage's or a shipped "
                                 f"model's name, got {start!r}")
            later = start == name or any(t.get("name") == start for t in tables[i:])
            if start not in names and not later and start in ckpt_io.shipped_models():
                start, start_model = None, start
            elif start not in names:
                shipped = ", ".join(ckpt_io.shipped_models()) or "none installed"
                raise DcignError(
                    f"{where} of {source} starts from {start!r}, "
                    + ("a later stage; a stage starts from one before it" if later
                       else f"which names no earlier stage nor shipped model (stages: "
                            f"{', '.join(names + [name])}; shipped models: {shipped})"))
        if "init_step" in table:
            start_step = table["init_step"]
            if "init_from" not in table:
                raise DcignError(f"{where} of {source} sets init_step without init_from")
            if start_model is not None:
                raise DcignError(f"{where} of {source} sets init_step, but it starts from the "
                                 f"shipped model {start_model!r}, which keeps its last step only")
            if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 1:
                raise DcignError(f"{where} of {source}: init_step must be a step >= 1, "
                                 f"got {start_step!r}")
            full = next(s for s in stages if s.name == start).options.get("steps",
                                                                          TrainConfig.steps)
            if start_step > full:
                raise DcignError(f"{where} of {source} starts from step {start_step:,} of "
                                 f"{start!r}, which trains {full:,} steps")
        stages.append(Stage(name, options, start, start_step, start_model))

    unused = [k for k in top if k != "data" and not any(k in s.options for s in stages)]
    if unused:
        raise DcignError(f"{unused[0]} at the top level of {source} applies to no stage (it "
                         f"means something in {' and '.join(mode_of(unused[0]))} mode only)")
    recipe = Recipe(text=text, file=Path(source).name, stages=stages, data=data_table,
                    overrides=tuple(overrides), deviations=recipe_deviations(raw, source))
    _check_stages(recipe, source)
    return recipe


def recipe_deviations(raw: dict, source: str = "the recipe") -> tuple[str, ...]:
    """A parsed recipe's ``deviations``: the lines that say how it departs from the paper."""
    value = raw.get("deviations", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DcignError(f"deviations in {source} must be a list of sentences (strings), "
                         f"got {value!r}")
    return tuple(v.strip() for v in value)


def _options(options: dict, where: str) -> dict:
    """Training options with old names renamed and values checked against TrainConfig's types
    (a list of numbers becomes a tuple, a whole number a float where a float is wanted)."""
    for old, new in RENAMED.items():
        if old in options:
            warn(f"{old!r} in {where} is deprecated; call it {new!r}")
    options = renamed_keys(options, where)
    ckpt_io.check_field_types(TrainConfig, options, where, DcignError)
    defaults = TrainConfig()
    out = {}
    for key, value in options.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if len(value) != len(default):
                raise DcignError(f"{where}: {key} must be a list of {len(default)} numbers, "
                                 f"got {value!r}")
            value = tuple(float(v) for v in value)
        elif isinstance(default, float):
            value = float(value)
        out[key] = value
    return out


def _typed(value, kind: type, key: str, where: str):
    """A [data] value as ``kind`` (a whole number is a float too), or an error."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    raise DcignError(f"{key} in {where} must be {names.get(kind, kind.__name__)}, "
                     f"got {value!r}")


def _check_stages(recipe: Recipe, source: str) -> None:
    """Each stage's TrainConfig validates, and its network fits the stage it starts from."""
    for s in recipe.stages:
        cfg = s.config("DIR", recipe)
        try:
            cfg.validate()
        except DcignError as e:
            raise DcignError(f"stage {s.name!r} of {source}: {e}") from None
        if s.start is None and s.start_model is None:
            continue
        # the networks' shapes (their image size and latent names do not change them)
        if s.start_model is not None:
            start = f"the shipped model {s.start_model!r}"
            theirs = TrainConfig.from_run_config(ckpt_io.read_config(cfg.init_from), start,
                                                 DcignError).model_config(64, {})
        else:
            start = repr(s.start)
            theirs = recipe.stage(s.start).config("DIR", recipe).model_config(64, {})
        mine = cfg.model_config(64, {})
        for key in ENCODER_SHAPE:
            if getattr(mine, key) != getattr(theirs, key):
                raise DcignError(f"stage {s.name!r} of {source} has {key} {getattr(mine, key)} "
                                 f"but starts from {start}, which has {getattr(theirs, key)}")
        same_decoder = all(getattr(mine, k) == getattr(theirs, k) for k in DECODER_SHAPE)
        if cfg.widen_decoder and same_decoder:
            raise DcignError(f"stage {s.name!r} of {source} sets widen_decoder but its decoder "
                             f"has the shape of {start}'s; set a wider decoder_width, or "
                             f"leave widen_decoder out")
        if not same_decoder and not (cfg.freeze_encoder or cfg.widen_decoder):
            raise DcignError(f"stage {s.name!r} of {source} has another decoder than "
                             f"{start} ({mine.decoder_channels} maps against "
                             f"{theirs.decoder_channels}); grow it with widen_decoder, or start "
                             f"it afresh with freeze_encoder")


def apply_overrides(raw: dict, overrides) -> None:
    """Apply ``KEY=VALUE`` overrides to a parsed recipe (in place).

    ``KEY`` is a training option (set at the top level and in every stage that sets it),
    ``data.KEY`` (the [data] table) or ``STAGE.KEY`` (one stage). ``VALUE`` is a TOML value;
    anything that is not one is taken as a string.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DcignError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        head, dot, tail = key.partition(".")
        if dot and head == "data":
            if "data" in raw and not isinstance(raw["data"], dict):
                raise DcignError(f"--set {item}: the recipe names its data directory "
                                 f"(data = ...), not a [data] table to render")
            raw.setdefault("data", {})[tail] = value
        elif dot:
            stages = [t for t in raw.get("stage", []) if isinstance(t, dict)
                      and t.get("name") == head]
            if not stages:
                raise DcignError(f"--set {item}: the recipe has no stage named {head!r}")
            stages[0][tail] = value
        else:
            raw[key] = value
            for table in raw.get("stage", []):
                if isinstance(table, dict):
                    for name in (key, RENAMED.get(key), *[o for o, n in RENAMED.items()
                                                          if n == key]):
                        if name and name in table:
                            table[name] = value


# -- running ---------------------------------------------------------------------------------------

@dataclass
class RecipeResult:
    """How a recipe's run ended: "finished" or "interrupted" (in ``stage``, by ``signal``)."""

    status: str
    out: Path
    stage: str
    step: int = 0
    signal: int | None = None


def differing_option(saved: dict, planned: dict) -> str | None:
    """The first training option (a TrainConfig dict's key) that a stage's saved config and the
    recipe's plan for it disagree on, None when none; runtime keys, paths, the start and the
    length are not compared (the length is checked against the stage's progress)."""
    for key, value in planned.items():
        if key not in RUNTIME_KEYS + ("out", "resume", "init_from", "steps") \
                and saved[key] != value:
            return key
    return None


def check_output(recipe: Recipe, root: str | Path) -> None:
    """Before anything trains: ``root`` is new, or this recipe's earlier run, each stage already
    there trained with the options the recipe gives it (a continued run does what it says)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DcignError(f"--out {root} is a file, not a directory")
    if ckpt_io.is_run_dir(root):
        raise DcignError(f"{root} holds a training run, not a recipe's stages; choose another "
                         f"--out")
    if root.is_dir() and not (root / ckpt_io.RECIPE_RUN).is_file():
        names = {s.name for s in recipe.stages}
        other = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and p.name.split("@")[0] not in names)
        if other:
            raise DcignError(f"{root} holds {other[0]}/, which is no stage of this recipe; "
                             f"choose another --out")
    kept = recipe.kept_steps()
    for s in recipe.stages:
        run = ckpt_io.stage_dir(root, s.name)
        if not ckpt_io.is_run_dir(run):
            continue
        saved = TrainConfig.from_run_config(ckpt_io.read_config(run),
                                            str(run / ckpt_io.CONFIG)).to_dict()
        planned = s.config(root, recipe).to_dict()
        key = differing_option(saved, planned)
        if key is not None:
            raise DcignError(f"{run} was trained with {key} = {_show(saved[key])}, the recipe "
                             f"says {_show(planned[key])}; choose another --out (or remove {run} "
                             f"and the stages after it)")
        if Path(saved["init_from"]).name != Path(planned["init_from"]).name:
            raise DcignError(f"{run} started from {saved['init_from'] or 'scratch'}, the recipe "
                             f"starts it from {planned['init_from'] or 'scratch'}; choose "
                             f"another --out")
        state = ckpt_io.load_checkpoint(run, verify=False).state
        step, steps = int(state["step"]), planned["steps"]
        if step > steps or (state.get("status") == "finished" and step != steps):
            raise DcignError(f"{run} has trained {step:,} steps, the recipe asks for "
                             f"{steps:,}; choose another --out")
        if saved["lr_schedule"] == "cosine" and saved["steps"] != steps:
            raise DcignError(f"{run} follows a cosine schedule over {saved['steps']:,} steps, "
                             f"the recipe asks for {steps:,}; choose another --out")
        for k in kept.get(s.name, []):
            if step > k and not ckpt_io.is_run_dir(ckpt_io.stage_dir(root, s.name, k)):
                raise DcignError(f"a stage starts from step {k:,} of {s.name!r}, which has "
                                 f"trained past it ({step:,}) without keeping it; choose "
                                 f"another --out")


def render_data(recipe: Recipe, log: Log) -> None:
    """Render the recipe's [data] set (reused when it is already there)."""
    if recipe.data is None:
        return
    from trainer.faces import BATCH_SIZE, BATCH_TYPES, MonovariantSpec, render_monovariant

    d, spec_defaults = recipe.data, MonovariantSpec()
    spec = MonovariantSpec(
        batches_per_type={"train": d.get("train_batches", spec_defaults.batches_per_type["train"]),
                          "test": d.get("test_batches", spec_defaults.batches_per_type["test"])},
        identities={"train": d.get("train_identities", spec_defaults.identities["train"]),
                    "test": d.get("test_identities", spec_defaults.identities["test"])},
        step=d.get("step", spec_defaults.step), seed=d.get("seed", spec_defaults.seed))
    size = d.get("size", 64)
    total = sum(spec.batches_per_type.values()) * len(BATCH_TYPES) * BATCH_SIZE
    log(f"recipe: monovariant data {d['out']} ({total:,} faces, {size}x{size}; reused when "
        f"already rendered)")
    # two recipes sharing one data set (the DC-IGN's and the baseline's, started together):
    # the second waits while the first renders or checks it, then reuses it
    render_monovariant(d["out"], spec, size=size, wait=True)


def run_recipe(recipe: Recipe, out: str | Path, log: Log = _stderr,
               stage: str | None = None) -> RecipeResult:
    """Train the recipe's stages into ``out`` (see the module docstring); returns when all are
    finished or one was interrupted (SIGINT / SIGTERM: it checkpoints and stops).

    ``stage``: train only that stage and the stages it descends from (two branches of one
    recipe can so train side by side, one process each).

    Under torchrun every replica runs this, in one process group for all the stages; the first
    replica alone writes (the record, the data, the kept steps) while the others wait.
    """
    rank = setup_distributed(recipe.stages[0].config(out, recipe).device)[0]
    try:
        return _run_recipe(recipe, Path(out), log, stage, master=rank == 0)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _run_recipe(recipe: Recipe, root: Path, log: Log, stage: str | None,
                master: bool) -> RecipeResult:
    log = log if master else (lambda line: None)
    todo = {s.name for s in recipe.lineage_of(stage)} if stage else None
    check_output(recipe, root)
    if master:
        root.mkdir(parents=True, exist_ok=True)
        ckpt_io.write_recipe_run(root, {
            "final": recipe.final, "recipe_file": recipe.file, "recipe": recipe.text,
            "overrides": list(recipe.overrides),
            "stages": [{"name": s.name, "start": s.start, "start_step": s.start_step,
                        "start_model": s.start_model, "options": s.options}
                       for s in recipe.stages]})
        render_data(recipe, log)
    _barrier()
    kept = recipe.kept_steps()
    record = {"recipe": recipe.lineage_text(), "recipe_file": recipe.file}
    last = None
    for s in recipe.stages:
        if todo is not None and s.name not in todo:
            continue
        cfg = s.config(root, recipe)
        run = Path(cfg.out)
        state = ckpt_io.run_progress(run)
        if state is not None and state[1] == "finished":
            log(f"recipe: stage {s.name} already finished ({state[0]:,} steps); skipped")
            continue
        log(f"recipe: stage {s.name} ({cfg.mode}, {cfg.steps:,} steps"
            + (f", from {Path(cfg.init_from).name}" if cfg.init_from else ", from scratch")
            + (f", continuing at step {state[0]:,}" if state else "") + f") in {run}")
        for k in kept.get(s.name, []):
            copy = ckpt_io.stage_dir(root, s.name, k)
            if ckpt_io.is_run_dir(copy):
                continue
            if (state[0] if state else 0) < k:
                last = train(replace(cfg, resume=state is not None), stop_at=k,
                             record={**record, "stage": s.name})
                if last.status == "interrupted":
                    return _interrupted(last, s.name, root)
                state = ckpt_io.run_progress(run)
            if master:
                _copy_run(run, copy)
            _barrier()
        last = train(replace(cfg, resume=state is not None), record={**record, "stage": s.name})
        if last.status == "interrupted":
            return _interrupted(last, s.name, root)
    if stage:
        log(f"recipe: stage {stage} finished; {root / stage} loads as its model")
    else:
        log(f"recipe: all {len(recipe.stages)} stages finished; {root} loads as the final model "
            f"({recipe.final}), {root}/<stage> as each stage's")
    return RecipeResult("finished", root, stage or recipe.final, last.step if last else 0)


def _interrupted(result: TrainResult, stage: str, root: Path) -> RecipeResult:
    return RecipeResult("interrupted", root, stage, result.step, result.signal)


def _copy_run(run: Path, dest: Path) -> None:
    """Copy a run directory's checkpoint to ``dest`` whole or not at all (temp + rename)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        shutil.copytree(run, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".checkpoint-*", "*.tmp"))
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the command line ------------------------------------------------------------------------------

def main(argv: list[str], prog: str = "python -m trainer") -> int:
    """``--recipe FILE --out DIR [--set KEY=VALUE ...] [--stage NAME] [--plan]``; returns the
    exit status."""
    import signal

    p = ArgumentParser(prog=prog,
                       description="Train a recipe's stages in order (trainer/recipe.py).")
    p.add_argument("--recipe", required=True, metavar="FILE", help="the recipe (TOML)")
    p.add_argument("--out", metavar="DIR", help="where the stages' run directories go")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override an option: KEY (every stage), data.KEY or STAGE.KEY; "
                        "VALUE in TOML (e.g. --set steps=10 --set data.size=64)")
    p.add_argument("--stage", metavar="NAME",
                   help="train only this stage and the stages it descends from")
    p.add_argument("--plan", action="store_true", help="print the stages and stop")
    try:
        args = p.parse_args(argv)
    except DcignError as e:
        extra = [a for a in argv if a.startswith("--") and a.split("=")[0] not in
                 ("--recipe", "--out", "--set", "--plan", "--stage")]
        if extra:
            raise DcignError(f"{extra[0]} cannot go with --recipe: set training options in the "
                             f"recipe, or with --set KEY=VALUE") from None
        raise e
    recipe = load_recipe(args.recipe, args.overrides)
    if args.plan:
        print("\n".join(recipe.describe()))
        return 0
    if not args.out:
        raise DcignError("--recipe needs --out DIR (where the stages' run directories go)")
    if args.stage:
        recipe.lineage_of(args.stage)  # an unknown name fails before anything trains
    result = run_recipe(recipe, args.out, stage=args.stage)
    if result.status == "interrupted":
        name = signal.Signals(result.signal).name if result.signal else "a signal"
        _stderr(f"interrupted by {name} in stage {result.stage} at step {result.step}; run the "
                f"same command again to continue")
        return 128 + (result.signal or 0)
    return 0
