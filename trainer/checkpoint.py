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
* ``state.json``        -- step, status (running / finished / interrupted) and the sha256 of every
  other file. It is written last and is what makes a directory a checkpoint.

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
from trainer.io import remove_stale, sha256_file
from trainer.model import ModelConfig

FORMAT = "dcign-run"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, OPTIMIZER, RNG, HISTORY, STATE = (
    "model.safetensors", "config.json", "optimizer.pt", "rng.pt", "history.csv", "state.json")
HISTORY_COLUMNS = ("step", "split", "batch_type", "neg_elbo", "bce", "kl", "seconds")
CONFIG_KEYS = {"format", "format_version", "model", "train", "latent_layout", "data"}
DATA_KEYS = {"path": str, "image_size": int, "train_checksum": str, "test_checksum": str,
             "train_images": int, "test_images": int}  # config.json's "data" section
_TMP_PREFIX, _TMP_SUFFIX = ".checkpoint-", ".tmp"  # a checkpoint being written


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
                    rng: dict | None = None, history: list[dict] | None = None) -> None:
    """Write a complete checkpoint into ``run_dir`` atomically (see the module docstring).

    ``config`` is the ``config.json`` body without the format fields; ``state`` must hold
    ``step``; the file checksums are added here.
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
    from trainer.train import TrainConfig  # trainer.train imports this module
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
    state = _read_json(run_dir / STATE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) \
            or not isinstance(state.get("files"), dict):
        raise CheckpointError(f"{run_dir / STATE} is not a dcign-eval checkpoint state")
    needed = [WEIGHTS, CONFIG] + ([OPTIMIZER, RNG, HISTORY] if training_state else [])
    for name in needed:
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir} is incomplete ({name} missing)")
        if name not in state["files"]:
            raise CheckpointError(f"{run_dir / STATE} lists no checksum for {name}")
        if verify and sha256_file(run_dir / name) != state["files"][name]:
            raise CheckpointError(f"{run_dir / name} is corrupt or from another checkpoint "
                                  f"(sha256 does not match state.json)")
    try:
        weights = safetensors_load((run_dir / WEIGHTS).read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{run_dir / WEIGHTS} is corrupt ({_one_line(e)})") from None
    ckpt = Checkpoint(path=run_dir, config=config, state=state, weights=weights)
    if training_state:
        ckpt.optimizer = _torch_load(run_dir / OPTIMIZER)
        ckpt.rng = _torch_load(run_dir / RNG)
        ckpt.history = _read_history(run_dir / HISTORY)
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


# -- helpers ---------------------------------------------------------------------------------------

def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The training history of a run directory, a dict per row (:data:`HISTORY_COLUMNS`); [] for
    a run without one. CheckpointError for a history of other columns."""
    path = Path(run_dir) / HISTORY
    return _read_history(path) if path.is_file() else []


def _check_run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
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


def _history_bytes(history: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue().encode()


def _read_history(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != HISTORY_COLUMNS:
            raise CheckpointError(f"{path} has columns {reader.fieldnames}, "
                                  f"expected {list(HISTORY_COLUMNS)}")
        for row in reader:
            rows.append({"step": int(row["step"]), "split": row["split"],
                         "batch_type": row["batch_type"],
                         **{k: float(row[k]) for k in ("neg_elbo", "bce", "kl", "seconds")}})
    return rows


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
