"""Run directories: what a training run leaves on disk, written atomically, loaded with validation.

A run directory holds

* ``model.safetensors`` -- the weights (float32, the unwrapped model's state dict);
* ``config.json``       -- ``{"format": "dcign-run", "format_version", "model": ModelConfig,
  "train": TrainConfig, "latent_layout": {...}, "data": {train/test manifest checksums, size}}``;
* ``optimizer.pt``      -- the optimizer's state dict (tensors and plain containers only);
* ``rng.pt``            -- the global torch RNG states (tensors only); a relative-invariance
  run adds its running spread estimates;
* ``history.csv``       -- one row per training step and per validation: step, split, batch_type,
  neg_elbo, bce, kl (per-image means), seconds since the run started;
* ``state.json``        -- step, status (running / finished / interrupted), the hardware it last
  ran on and the sha256 of every other file. It is written last and is what makes a directory a
  checkpoint;
* ``lineage.json``, ``lineage.csv`` -- only in a run that starts from another (``--init-from``, a
  recipe's stages): every stage it descends from, earliest first (options, steps, images, wall
  time, hardware; the recipe's text), and their histories, one ``stage`` column more than
  ``history.csv``. :func:`read_lineage` joins them with the run's own record.

A recipe's output directory (``dcign-eval train --recipe FILE --out DIR``) holds ``recipe.json``
(the recipe's text and its stages) and one run directory per stage, ``DIR/<stage>``; a stage that
another starts from at an earlier step keeps that step's checkpoint in ``DIR/<stage>@<step>``.
:func:`resolve_run_dir` turns ``DIR`` into its last stage's run directory, so every loader takes
``DIR`` as the recipe's final model.

Nothing is ever unpickled as code: weights load with safetensors, the two ``.pt`` files with
``torch.load(weights_only=True)``.

Writing: every file goes into a temporary directory inside the run directory first; the files are
then renamed into place with ``state.json`` last. A reader never sees half a file, and the
checksums in ``state.json`` reveal a mix of two checkpoints (a crash between renames, a window of
microseconds) instead of loading it silently. Every problem on loading raises
:class:`~trainer.errors.CheckpointError` with a one-line message.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
import time
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from trainer.errors import CheckpointError
from trainer.io import atomic_write_json, remove_stale, sha256_file
from trainer.model import REMOVED_FIELDS, ModelConfig

FORMAT = "dcign-run"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, OPTIMIZER, RNG, HISTORY, STATE = (
    "model.safetensors", "config.json", "optimizer.pt", "rng.pt", "history.csv", "state.json")
LINEAGE, LINEAGE_HISTORY = "lineage.json", "lineage.csv"
RECIPE_RUN, RECIPE_FORMAT = "recipe.json", "dcign-recipe-run"
HISTORY_COLUMNS = ("step", "split", "batch_type", "neg_elbo", "bce", "kl", "seconds")
LINEAGE_COLUMNS = ("stage",) + HISTORY_COLUMNS
CONFIG_KEYS = {"format", "format_version", "model", "train", "latent_layout", "data"}
DATA_KEYS = {"path": str, "image_size": int, "train_checksum": str, "test_checksum": str,
             "train_images": int, "test_images": int}  # config.json's "data" section
_TMP_PREFIX, _TMP_SUFFIX = ".checkpoint-", ".tmp"  # a checkpoint being written
#: the shipped models: run directories installed with the package (dcign_eval/models/<name>/).
#: The trainer reads them as runs to start from (a recipe's init_from) and imports nothing above.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "dcign_eval" / "models"


@dataclass
class Checkpoint:
    """A loaded run directory. ``optimizer`` and ``rng`` are None when not asked for."""

    path: Path
    config: dict
    state: dict
    weights: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    optimizer: dict | None = None
    rng: dict | None = None
    lineage: dict | None = None  # with training_state: lineage.json, its "history" from the csv

    @property
    def model_config(self) -> ModelConfig:
        return model_config_from_dict(self.config["model"], self.path / CONFIG)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def weights_sha256(self) -> str:
        """The sha256 of the weights file, as state.json records it: the model's fingerprint."""
        return str(self.state["files"][WEIGHTS])


def latent_layout(model_config: ModelConfig) -> dict:
    """Human-readable layout: named latents and the intrinsic block as [first, last]."""
    layout = dict(model_config.latent_names)
    if model_config.latent_names:
        layout["intrinsic"] = [model_config.intrinsic.start, model_config.intrinsic.stop - 1]
    return layout


def model_config_from_dict(d: dict, source) -> ModelConfig:
    for key, value in REMOVED_FIELDS.items():  # an old config's field at its no-op value
        if key in d:
            if d[key] != value:
                raise CheckpointError(f"{source} has model {key} = {d[key]!r}, which this "
                                      f"version no longer builds (only {value!r})")
            d = {k: v for k, v in d.items() if k != key}
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{source} has unknown model config key {unknown[0]!r} "
                              f"(known: {', '.join(sorted(known))})")
    check_field_types(ModelConfig, d, source, CheckpointError, section="model")
    names = d.get("latent_names", {})
    bad = [k for k, v in names.items() if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        raise CheckpointError(f"{source}: model.latent_names.{bad[0]} must be a latent index "
                              f"(an integer), got {names[bad[0]]!r}")
    return ModelConfig(**d)


def check_field_types(cls, values: dict, source, error=CheckpointError,
                      section: str = "") -> None:
    """Raise ``error`` naming the first value of ``values`` whose type does not fit the field of
    the dataclass ``cls`` (JSON gives lists for tuples and ints for floats: both fit)."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in hints and not _fits(hints[key], value):
            name = f"{section}.{key}" if section else key
            raise error(f"{source}: {name} must be {_type_name(hints[key])}, got {value!r}")


def _fits(hint, value) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(h, value) for h in typing.get_args(hint))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {type(None): value is None, bool: isinstance(value, bool), str: isinstance(value, str),
              int: isinstance(value, int) and not isinstance(value, bool),
              float: number and math.isfinite(value), dict: isinstance(value, dict),
              tuple: isinstance(value, (list, tuple)) and all(
                  isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)}
    return checks.get(hint, True)


def _type_name(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return {type(None): "null", bool: "true or false", str: "a string", int: "an integer",
            float: "a finite number", dict: "an object", tuple: "a list of numbers"}.get(
                hint, getattr(hint, "__name__", str(hint)))


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a complete checkpoint (its state.json exists)."""
    return (Path(path) / STATE).is_file()


def save_checkpoint(run_dir: str | os.PathLike, *, model: torch.nn.Module, config: dict,
                    state: dict, optimizer: torch.optim.Optimizer | None = None,
                    rng: dict | None = None, history: list[dict] | None = None,
                    lineage: dict | None = None) -> None:
    """Write a complete checkpoint into ``run_dir`` atomically (see the module docstring).

    ``config`` is the ``config.json`` body without the format fields; ``state`` must hold
    ``step``; the file checksums are added here. ``lineage``: as :func:`new_lineage` makes it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=run_dir))
    try:
        blobs = {WEIGHTS: safetensors_save(
            {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in
             model.state_dict().items()}, metadata={"format": FORMAT})}
        full_config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
        blobs[CONFIG] = (json.dumps(full_config, indent=2, sort_keys=True) + "\n").encode()
        if optimizer is not None:
            blobs[OPTIMIZER] = _torch_bytes(optimizer.state_dict())
        if rng is not None:
            blobs[RNG] = _torch_bytes(rng)
        blobs[HISTORY] = _history_bytes(history or [])
        if lineage is not None:
            record = {k: v for k, v in lineage.items() if k != "history"}
            blobs[LINEAGE] = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
            blobs[LINEAGE_HISTORY] = _history_bytes(lineage.get("history", []), LINEAGE_COLUMNS)
        full_state = dict(state, saved_at=time.time(), torch_version=torch.__version__,
                          files={name: _sha256(data) for name, data in blobs.items()})
        blobs[STATE] = (json.dumps(full_state, indent=2, sort_keys=True) + "\n").encode()
        for name, data in blobs.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for name in blobs:  # state.json last: it commits the checkpoint
            os.replace(tmp / name, run_dir / name)
        _fsync_dir(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_checkpoints(run_dir: str | os.PathLike) -> None:
    """Remove the temporary checkpoint folders a killed process left in ``run_dir`` (call it
    while holding the run's lock)."""
    remove_stale(run_dir, f"{_TMP_PREFIX}*{_TMP_SUFFIX}")


def read_config(run_dir: str | os.PathLike) -> dict:
    """The validated ``config.json`` of a run directory (format, keys, model config)."""
    run_dir = _check_run_dir(run_dir)
    config = _read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{run_dir / CONFIG} is not a dcign-eval run config")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{run_dir} has run format version {config.get('format_version')}, "
                              f"this version reads {FORMAT_VERSION}")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise CheckpointError(f"{run_dir / CONFIG} has unknown config key {unknown[0]!r}")
    for key in ("model", "train", "data"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{run_dir / CONFIG} lacks its {key!r} section")
    model_config_from_dict(config["model"], run_dir / CONFIG)
    from trainer.config import TrainConfig  # trainer.config imports this module
    check_field_types(TrainConfig, config["train"], run_dir / CONFIG, section="train")
    for key, kind in DATA_KEYS.items():
        if key in config["data"] and not isinstance(config["data"][key], kind):
            raise CheckpointError(f"{run_dir / CONFIG}: data.{key} must be "
                                  f"{_type_name(kind)}, got {config['data'][key]!r}")
    return config


def load_checkpoint(run_dir: str | os.PathLike, *, training_state: bool = False,
                    verify: bool = True) -> Checkpoint:
    """Load and validate a run directory.

    Args:
        training_state: also load the optimizer state, RNG states and history (to resume).
        verify: check every file's sha256 against ``state.json``.
    """
    run_dir = _check_run_dir(run_dir)
    config = read_config(run_dir)
    state = _read_state(run_dir)
    needed = [WEIGHTS, CONFIG] + ([OPTIMIZER, RNG, HISTORY] if training_state else [])
    if training_state and LINEAGE in state["files"]:
        needed += [LINEAGE, LINEAGE_HISTORY]
    _check_files(run_dir, state, needed, verify)
    try:
        weights = safetensors_load((run_dir / WEIGHTS).read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{run_dir / WEIGHTS} is corrupt ({_one_line(e)})") from None
    ckpt = Checkpoint(path=run_dir, config=config, state=state, weights=weights)
    if training_state:
        ckpt.optimizer = _torch_load(run_dir / OPTIMIZER)
        ckpt.rng = _torch_load(run_dir / RNG)
        ckpt.history = _read_history(run_dir / HISTORY)
        if LINEAGE in state["files"]:
            ckpt.lineage = _read_lineage_files(run_dir)
    return ckpt


def load_weights_into(model: torch.nn.Module, ckpt: Checkpoint,
                      only: tuple[str, ...] | None = None) -> None:
    """Copy the checkpoint's weights into ``model``; CheckpointError if they do not fit.

    ``only``: copy just the weights whose names start with one of these prefixes (e.g. the
    encoder's), leaving the rest of ``model`` as it is.
    """
    def wanted(key: str) -> bool:
        return only is None or key.startswith(only)
    own = {k: v for k, v in model.state_dict().items() if wanted(k)}
    theirs = {k for k in ckpt.weights if wanted(k)}
    missing, extra = sorted(set(own) - theirs), sorted(theirs - set(own))
    if missing or extra:
        raise CheckpointError(f"{ckpt.path / WEIGHTS} does not fit this model "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in own.items():
        if tuple(ckpt.weights[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{ckpt.path / WEIGHTS}: {k} has shape "
                                  f"{tuple(ckpt.weights[k].shape)}, the model needs "
                                  f"{tuple(v.shape)}")
    model.load_state_dict({k: ckpt.weights[k] for k in own}, strict=only is None)


# -- lineage: the stages a run descends from ------------------------------------------------------

@dataclass
class Lineage:
    """Every stage a run descends from, earliest first, and the run itself last.

    ``stages``: one record a stage (:func:`stage_record`): ``name``, ``mode``, ``train`` (its
    options), ``model``, ``data``, ``steps``, ``images``, ``seconds`` (wall time), ``hardware``,
    ``torch_version``, ``status`` and ``start`` (``{"stage", "step"}`` it started from, or None).
    ``history``: the stages' histories joined, with ``stage``, ``stage_index`` and
    ``stage_step`` (the step inside the stage) added and ``step`` / ``seconds`` counted from the
    first stage's start.
    ``recipe``: the recipe's text when a recipe made it, else None.
    """

    stages: list[dict]
    history: list[dict]
    recipe: str | None = None
    recipe_file: str | None = None

    @property
    def steps(self) -> int:
        return sum(s["steps"] for s in self.stages)

    @property
    def images(self) -> int:
        return sum(s["images"] for s in self.stages)

    @property
    def seconds(self) -> float:
        return sum(s["seconds"] for s in self.stages)

    def boundaries(self) -> list[tuple[str, int, int]]:
        """``(stage, first step, last step)`` of each stage on the joined step axis."""
        out, start = [], 0
        for s in self.stages:
            out.append((s["name"], start + 1, start + s["steps"]))
            start += s["steps"]
        return out


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """A run directory itself, or a recipe's output directory's last stage (its final model).

    CheckpointError when the recipe's last stage has not finished yet.
    """
    path = Path(path)
    if (path / STATE).is_file() or not (path / RECIPE_RUN).is_file():
        return path
    record = read_recipe_run(path)
    final = path / record["final"]
    state = _read_json(final / STATE) if (final / STATE).is_file() else {}
    if not isinstance(state, dict) or state.get("status") != "finished":
        raise CheckpointError(f"{path} is a recipe's run whose last stage {record['final']!r} "
                              f"has not finished; run `dcign-eval train --recipe "
                              f"{record.get('recipe_file') or 'FILE'} --out {path}` again to "
                              f"finish it, or load one stage's run directory")
    return final


def shipped_models() -> list[str]:
    """The names of the shipped models installed (each a run directory under SHIPPED_DIR)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / WEIGHTS).is_file())


def stage_dir(root: str | os.PathLike, stage: str, step: int | None = None) -> Path:
    """A recipe stage's run directory under ``root`` (``step``: the copy kept at that step)."""
    return Path(root) / (stage if step is None else f"{stage}@{step}")


def read_recipe_run(root: str | os.PathLike) -> dict:
    """The ``recipe.json`` record of a recipe's output directory."""
    record = _read_json(Path(root) / RECIPE_RUN)
    if not isinstance(record, dict) or record.get("format") != RECIPE_FORMAT \
            or not isinstance(record.get("final"), str) or not record["final"] \
            or "/" in record["final"] or record["final"].startswith("."):
        raise CheckpointError(f"{Path(root) / RECIPE_RUN} is not a dcign-eval recipe record")
    return record


def write_recipe_run(root: str | os.PathLike, record: dict) -> None:
    """Write ``root/recipe.json`` atomically (``record`` holds at least ``final``)."""
    atomic_write_json(Path(root) / RECIPE_RUN, {"format": RECIPE_FORMAT, **record})


def stage_record(run_dir: str | os.PathLike, config: dict, state: dict, history: list[dict],
                 name: str | None = None, start: dict | None = None) -> dict:
    """One stage's record, from its run directory's config, state and history."""
    train = config.get("train", {})
    steps = int(state.get("step", 0))
    per_step = (int(train.get("batch_size", 0)) * int(train.get("batches_per_step", 1))
                * int(state.get("world_size", 1)))
    seconds = max((float(h["seconds"]) for h in history), default=0.0)
    return {"name": name or Path(run_dir).name, "mode": train.get("mode"), "train": train,
            "model": config.get("model", {}), "data": config.get("data", {}), "steps": steps,
            "images": steps * per_step, "seconds": seconds,
            "hardware": state.get("hardware", "unknown"),
            "torch_version": state.get("torch_version", "unknown"),
            "status": state.get("status", "unknown"), "start": start}


def new_lineage(parent: str | os.PathLike | None, *, stage: str | None = None,
                recipe: str | None = None, recipe_file: str | None = None) -> dict | None:
    """The lineage a run starting from run directory ``parent`` records (:func:`save_checkpoint`):
    ``parent``'s own lineage and ``parent`` itself as the last ancestor. None when there is
    nothing to record (no parent, no stage name, no recipe)."""
    if parent is None and stage is None and recipe is None:
        return None
    ancestors, history = [], []
    if parent is not None:
        lineage = read_lineage(parent)
        # the stages' histories are told apart by name: two runs of one name get #2, #3, ...
        names: list[str] = []
        for s in lineage.stages:
            name, n = s["name"], 1
            while name in names:
                n += 1
                name = f"{s['name']}#{n}"
            names.append(name)
        ancestors = [dict(s, name=name) for s, name in zip(lineage.stages, names)]
        history = [{"stage": names[h["stage_index"]], **{k: h[k] for k in HISTORY_COLUMNS},
                    "step": h["stage_step"],
                    "seconds": round(h["seconds"] - h["stage_offset_seconds"], 3)}
                   for h in lineage.history]
        if recipe is None:
            recipe, recipe_file = lineage.recipe, lineage.recipe_file
    return {"stage": stage, "recipe": recipe, "recipe_file": recipe_file,
            "start": ({"stage": ancestors[-1]["name"], "step": ancestors[-1]["steps"]}
                      if ancestors else None),
            "ancestors": ancestors, "history": history}


def read_lineage(run_dir: str | os.PathLike, verify: bool = True) -> Lineage:
    """The whole lineage of a run directory (or of a recipe's final model): every stage it
    descends from and itself, with one joined history (see :class:`Lineage`)."""
    run_dir = _check_run_dir(run_dir)
    config = read_config(run_dir)
    state = _read_state(run_dir)
    names = [HISTORY] + ([LINEAGE, LINEAGE_HISTORY] if LINEAGE in state["files"] else [])
    _check_files(run_dir, state, names, verify)
    own_history = _read_history(run_dir / HISTORY)
    lineage = _read_lineage_files(run_dir) if LINEAGE in state["files"] else {
        "ancestors": [], "history": [], "stage": None, "recipe": None, "start": None}
    own = stage_record(run_dir, config, state, own_history, name=lineage.get("stage"),
                       start=lineage.get("start"))
    stages = list(lineage["ancestors"]) + [own]
    by_stage: dict[str, list[dict]] = {}
    for h in lineage["history"]:
        by_stage.setdefault(h["stage"], []).append(h)
    history, step0, seconds0 = [], 0, 0.0
    for i, s in enumerate(stages):
        rows = own_history if i == len(stages) - 1 else by_stage.get(s["name"], [])
        for h in rows:
            if h["step"] > s["steps"]:  # a stage another starts from at an earlier step
                continue
            history.append({**{k: h[k] for k in HISTORY_COLUMNS}, "stage": s["name"],
                            "stage_index": i, "stage_step": h["step"],
                            "step": step0 + h["step"],
                            "stage_offset_seconds": seconds0,
                            "seconds": round(seconds0 + h["seconds"], 3)})
        step0 += s["steps"]
        seconds0 += s["seconds"]
    return Lineage(stages=stages, history=history, recipe=lineage.get("recipe"),
                   recipe_file=lineage.get("recipe_file"))


def read_state(run_dir: str | os.PathLike) -> dict:
    """A run directory's ``state.json`` (step, status, hardware, file checksums), checked to be
    one of ours; CheckpointError otherwise (no run there yet included)."""
    run_dir = _check_run_dir(run_dir)
    return _read_state(run_dir)


def run_progress(run_dir: str | os.PathLike) -> tuple[int, str] | None:
    """(step, status) of a run directory's last checkpoint, from its state.json alone (the
    weights are not read); None before its first checkpoint, CheckpointError for a state that
    is not ours."""
    if not is_run_dir(run_dir):
        return None
    state = read_state(run_dir)
    return int(state["step"]), str(state.get("status", ""))


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The training history of a run directory, a dict per row (:data:`HISTORY_COLUMNS`); [] for
    a run without one. CheckpointError for a history of other columns."""
    path = Path(run_dir) / HISTORY
    return _read_history(path) if path.is_file() else []


# -- helpers ---------------------------------------------------------------------------------------

def _check_run_dir(run_dir) -> Path:
    run_dir = resolve_run_dir(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"no run directory at {run_dir}")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run directory (expected a directory "
                              f"holding {WEIGHTS}, {CONFIG} and {STATE})")
    for name in (CONFIG, STATE):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is not a dcign-eval run directory ({name} missing)")
    return run_dir


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is corrupt (not valid JSON)") from None


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message suggests the unsafe way round: not ours
        raise CheckpointError(f"{path} is not a checkpoint file dcign-eval wrote: it holds "
                              f"pickled objects other than tensors, which are never loaded") \
            from None
    except Exception as e:  # torch raises several types for foreign or damaged files
        raise CheckpointError(f"{path} is not a checkpoint file dcign-eval wrote, or it is "
                              f"damaged ({_one_line(e)})") from None


def _history_bytes(history: list[dict], columns: tuple[str, ...] = HISTORY_COLUMNS) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue().encode()


def _read_history(path: Path, columns: tuple[str, ...] = HISTORY_COLUMNS) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != columns:
            raise CheckpointError(f"{path} has columns {reader.fieldnames}, "
                                  f"expected {list(columns)}")
        try:
            for row in reader:
                rows.append({**({"stage": row["stage"]} if "stage" in columns else {}),
                             "step": int(row["step"]), "split": row["split"],
                             "batch_type": row["batch_type"],
                             **{k: float(row[k]) for k in ("neg_elbo", "bce", "kl", "seconds")}})
        except (TypeError, ValueError):
            raise CheckpointError(f"{path} is corrupt (line {reader.line_num})") from None
    return rows


def _read_state(run_dir: Path) -> dict:
    state = _read_json(run_dir / STATE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) \
            or not isinstance(state.get("files"), dict):
        raise CheckpointError(f"{run_dir / STATE} is not a dcign-eval checkpoint state")
    return state


def _check_files(run_dir: Path, state: dict, names: list[str], verify: bool) -> None:
    for name in names:
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is incomplete ({name} missing)")
        if name not in state["files"]:
            raise CheckpointError(f"{run_dir / STATE} lists no checksum for {name}")
        if verify and sha256_file(run_dir / name) != state["files"][name]:
            raise CheckpointError(f"{run_dir / name} is corrupt or from another checkpoint "
                                  f"(sha256 does not match state.json)")


def _read_lineage_files(run_dir: Path) -> dict:
    lineage = _read_json(run_dir / LINEAGE)
    if not isinstance(lineage, dict) or not isinstance(lineage.get("ancestors"), list):
        raise CheckpointError(f"{run_dir / LINEAGE} is not a dcign-eval lineage")
    lineage["history"] = _read_history(run_dir / LINEAGE_HISTORY, LINEAGE_COLUMNS)
    return lineage


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
