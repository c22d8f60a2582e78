"""The training loop: monovariant DC-IGN training and the entangled baseline, in one file.

Read in order: set-up (distributed, device, data, model, optimizer, resume), then :func:`train`'s
loop; every option is a :class:`trainer.config.TrainConfig` field. One process by default; under
``torchrun --nproc_per_node N -m trainer`` each process is a DistributedDataParallel replica
(NCCL on CUDA, gloo on CPU) that draws its own batches; DDP averages the gradients.

Monovariant mode (Kulkarni et al. 2015, sec. 3.1): each step draws a batch type with the
azimuth : elevation : light : intrinsic ratio and one monovariant batch of that type; the latents
outside its active group are clamped and receive the invariance gradient
(:mod:`trainer.monovariant`). VAE mode (the original's main.lua): the same network on batches of
faces drawn at random from the whole training split; ``kl_weight`` != 1 makes it a beta-VAE.
``batches_per_step`` > 1 puts several batches (each monovariant batch with its own type and its
own clamp) into one optimiser step, to keep a GPU busy.

The objective is the *sum* over the batch of ``bce + kl_weight * kl`` (the original criteria had
``sizeAverage = false``). Adam is invariant to the loss scale, but the invariance gradient is not:
summing keeps ``invariance_strength`` at the original's scale relative to the reconstruction
gradient. The history logs per-image means; ``neg_elbo`` there always has KL weight 1.

Randomness is counter-based: step ``t`` of rank ``r`` draws its batch and its noise from
``numpy.random.default_rng([seed, r, t])``. The batch sequence is a pure function of
(seed, rank, step), so a resumed run continues exactly where the uninterrupted one would be.

Validation: every ``val_every`` steps, rank 0 computes the negative ELBO per image on the first
``val_batches`` test batches (round-robin over the batch types) *without* clamping -- the model's
bound as a plain VAE, comparable between modes -- with noise from a fixed seed.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from trainer import checkpoint as ckpt_io
from trainer.config import FIXED_ON_RESUME, SHAPE_OPTIONS, TrainConfig
from trainer.errors import CheckpointError, DatasetError, DcignError
from trainer.faces.datasets import BATCH_TYPES, FaceDataset, load_dataset
from trainer.io import DirectoryLock, check_writable_dir
from trainer.model import (DCIGN, DCIGN_LATENTS, DECODER_SHAPE, ENCODER_SHAPE, ModelConfig,
                           neg_elbo, permute_latents, widen_decoder)
from trainer.monovariant import (ACTIVE_GROUP, ActiveSpread, GroupedClamp, MonovariantClamp,
                                 batch_type_probabilities, inactive_mask, named_latent_order,
                                 order_scores, pick_named_latents, sample_monovariant_batch,
                                 spread_scores)

SPREAD_BATCHES = 50  # monovariant batches per type that pick the named latents (the first ones)
SPREAD_KEY = "invariance_spread"  # in rng.pt: the ActiveSpread of a relative-invariance run


class NonFiniteLoss(DcignError):
    """The loss became NaN or infinite; the run stopped and its last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int
    status: str  # "finished", "interrupted" or "paused" (at train's stop_at)
    model: DCIGN  # the unwrapped model, on its device
    history: list
    out: Path
    rank: int = 0
    signal: int | None = None


# -- set-up ----------------------------------------------------------------------------------------

def setup_distributed(device: str) -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) without it. A
    process group already set up (a recipe's, for all its stages) is used as it is."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DcignError(f"device {name!r} asked for, but no CUDA device is available")
        device = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
        torch.cuda.set_device(device)
        return device
    if name != "cpu":
        raise DcignError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return torch.device("cpu")


def load_splits(cfg: TrainConfig) -> tuple[FaceDataset, FaceDataset]:
    """The train and test monovariant data sets under ``cfg.data``, checked against the config."""
    root = Path(cfg.data)
    if not root.is_dir():
        raise DatasetError(f"no data directory at {root} (expected {root}/train and {root}/test)")
    train = load_dataset(root / "train", verify=cfg.verify_data, expect_kind="monovariant")
    test = load_dataset(root / "test", verify=cfg.verify_data, expect_kind="monovariant")
    if test.size != train.size:
        raise DatasetError(f"{test.path} holds {test.size}x{test.size} images but {train.path} "
                           f"holds {train.size}x{train.size}")
    if cfg.mode == "monovariant":
        bsize = int(train.manifest["params"]["batch_size"])
        if bsize != cfg.batch_size:
            raise DatasetError(f"{train.path} has monovariant batches of {bsize} faces, "
                               f"batch_size is {cfg.batch_size}")
        probs = batch_type_probabilities(cfg.ratio)
        missing = [b for b, p in zip(BATCH_TYPES, probs) if p > 0 and b not in train.batches()]
        if missing:
            raise DatasetError(f"{train.path} has no {missing[0]} batches; the ratio asks for them")
    return train, test


def to_batch(images: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 rows of a data set -> float (N, 1, S, S) in [0, 1], channels_last, on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device, non_blocking=True)
    return x.unsqueeze(1).float().div_(255).contiguous(memory_format=torch.channels_last)


def validation_rows(test: FaceDataset, n_batches: int) -> list[np.ndarray]:
    """The first ``n_batches`` test batches, round-robin over the batch types."""
    per_type = list(test.batches().values())
    rows = []
    for i in range(max(len(b) for b in per_type)):
        for b in per_type:
            if i < len(b) and len(rows) < n_batches:
                rows.append(b[i])
    return rows


@torch.no_grad()
def evaluate(model: DCIGN, test: FaceDataset, rows_list: list, device: torch.device, autocast,
             seed: int) -> dict:
    """Mean per-image neg_elbo, bce and kl on the given test batches, without clamping."""
    gen = torch.Generator().manual_seed(seed)
    totals, n = torch.zeros(3, dtype=torch.float64), 0
    for rows in rows_list:
        x = to_batch(test.images, rows, device)
        eps = torch.randn(len(rows), model.config.latent_dim, generator=gen).to(device)
        with autocast:
            logits, mu, logvar = model(x, eps)
        parts = neg_elbo(logits, x, mu, logvar)
        totals += torch.stack([p.sum() for p in parts]).double().cpu()
        n += len(rows)
    return dict(zip(("neg_elbo", "bce", "kl"), (totals / n).tolist()))


@torch.no_grad()
def name_from_pretraining(model: DCIGN, train: FaceDataset, device: torch.device,
                          how: str) -> dict[str, int]:
    """Renumber an entangled model's code so that each named latent is the pretrained latent
    :func:`trainer.monovariant.pick_named_latents` chooses (``how``: "spread" or "order"),
    measured on the first :data:`SPREAD_BATCHES` training batches of each type; returns where
    each came from."""
    names = model.config.latent_names
    codes, values = {}, {}
    for btype, batches in train.batches().items():
        batches = batches[:SPREAD_BATCHES]  # (n, batch_size) rows
        rows = batches.reshape(-1)
        mu = torch.cat([model.encode(to_batch(train.images, part, device))[0]
                        for part in np.array_split(rows, max(1, len(rows) // 500))])
        codes[btype] = mu.view(*batches.shape, -1).cpu().numpy()
        values[btype] = train.factors.iloc[rows]
    if how == "spread":
        scores = spread_scores({b: c.var(1).mean(0) for b, c in codes.items()}, names)
    else:
        by_name = {ACTIVE_GROUP[b]: b for b in codes}
        scores = order_scores({n: codes[by_name[n]].reshape(-1, codes[by_name[n]].shape[-1])
                               for n in names},
                              {n: values[by_name[n]][n].to_numpy() for n in names})
    picked = pick_named_latents(scores, names)
    permute_latents(model, torch.from_numpy(named_latent_order(picked, names,
                                                               model.config.latent_dim)))
    return picked


def forward_backward(fwd, x: torch.Tensor, eps: torch.Tensor, clamp, kl_weight: float,
                     autocast) -> torch.Tensor:
    """One forward and backward pass; returns [neg_elbo, bce, kl] per-image means and the loss.

    The loss is the batch *sum* of bce + kl_weight * kl (see the module docstring).
    """
    with autocast:
        logits, mu, logvar = fwd(x, eps, clamp)
    nelbo, bce, kl = neg_elbo(logits, x, mu, logvar)
    loss = (bce + kl_weight * kl).sum()
    loss.backward()
    return torch.stack([nelbo.mean(), bce.mean(), kl.mean(), loss]).detach()


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of (0-based) ``step``: ``cfg.lr``, or its cosine decay toward 0."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    return cfg.lr


def check_resumable(cfg: TrainConfig, ckpt: ckpt_io.Checkpoint, train: FaceDataset) -> None:
    saved = TrainConfig.from_run_config(ckpt.config, str(ckpt.path / ckpt_io.CONFIG))
    fixed = FIXED_ON_RESUME + (("steps",) if saved.lr_schedule == "cosine" else ())
    for key in fixed:
        if getattr(saved, key) != getattr(cfg, key):
            raise CheckpointError(f"{ckpt.path} was trained with {key}={getattr(saved, key)!r}; "
                                  f"a resumed run cannot change it to {getattr(cfg, key)!r}")
    if ckpt.config["data"].get("train_checksum") != train.checksum:
        raise CheckpointError(f"{ckpt.path} was trained on other data than {train.path} "
                              f"(manifest checksums differ)")


def check_fits(ckpt: ckpt_io.Checkpoint, model_cfg: ModelConfig,
               keys: tuple[str, ...] = ENCODER_SHAPE + DECODER_SHAPE) -> None:
    """``--init-from``: the checkpoint's network must have this run's shape (in ``keys``)."""
    theirs = ckpt.model_config
    for key in keys:
        if getattr(theirs, key) != getattr(model_cfg, key):
            raise CheckpointError(f"{ckpt.path} holds a model with {key}={getattr(theirs, key)}, "
                                  f"this run needs {key}={getattr(model_cfg, key)}")


class Progress:
    """A rich progress bar with loss and images/s on a terminal; plain lines otherwise."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.enabled, self.bar = enabled, None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress
            from rich.progress import TimeRemainingColumn
            self.bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                console=Console(stderr=True))
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, stats: dict, images_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step,
                            info=f"neg-ELBO {stats['neg_elbo']:.1f}  {images_per_s:.0f} img/s")

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- the loop --------------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, stop_at: int | None = None,
          record: dict | None = None) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; returns when done or interrupted.

    Args:
        stop_at: stop after this step with a checkpoint (status "paused"), as an interruption
            would; resuming then continues exactly (a recipe keeps a stage's earlier step so).
        record: what the run's lineage says of it: ``stage`` (its name), ``recipe`` (the
            recipe's text) and ``recipe_file``; see :func:`trainer.checkpoint.new_lineage`.
    Raises DcignError subclasses for bad input (data, checkpoints, config) and
    :class:`NonFiniteLoss` when the loss stops being finite.
    """
    cfg.validate()
    own_group = not dist.is_initialized()  # else the caller's, which it tears down itself
    rank, local_rank, world = setup_distributed(cfg.device)
    try:
        # the master alone writes the run directory, and holds it against other processes
        if rank == 0:
            check_writable_dir(cfg.out)
        with DirectoryLock(cfg.out) if rank == 0 else contextlib.nullcontext():
            result = _train(cfg, rank, local_rank, world, stop_at, record or {})
        if world > 1:
            # the master writes the last checkpoint after the others are done; tearing gloo down
            # while a peer is still busy can abort that peer (SIGABRT), so all finish together
            dist.barrier()
        return result
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def hardware(device: torch.device, world: int = 1) -> str:
    """What a run trains on, in words: the accelerator, or the CPU and its cores."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{world} x {name}" if world > 1 else name
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    procs = f"{world} processes, " if world > 1 else ""
    threads = torch.get_num_threads()
    return (f"{cpu} CPU, {os.cpu_count()} cores, {procs}{threads} torch "
            f"thread{'s' if threads != 1 else ''}")


def _train(cfg: TrainConfig, rank: int, local_rank: int, world: int, stop_at: int | None,
           record: dict) -> TrainResult:
    master = rank == 0
    device = pick_device(cfg.device, local_rank)
    cuda = device.type == "cuda"
    out = Path(cfg.out)
    train_set, test_set = load_splits(cfg)

    resumed = None
    if cfg.resume:
        resumed = ckpt_io.load_checkpoint(out, training_state=True)
        check_resumable(cfg, resumed, train_set)
        if cfg.steps < resumed.step or (cfg.steps == resumed.step
                                        and resumed.state.get("status") != "finished"):
            raise CheckpointError(f"{out} is at step {resumed.step} "
                                  f"({resumed.state.get('status')}); --steps {cfg.steps} would "
                                  f"train nothing: pass --steps above {resumed.step}")
        if cfg.steps == resumed.step:  # nothing to do, and nothing to write
            if master:
                print(f"{out} already finished at step {resumed.step}; nothing to train",
                      file=sys.stderr)
            model = DCIGN(resumed.model_config)
            ckpt_io.load_weights_into(model, resumed)
            return TrainResult(step=resumed.step, status="finished", model=model,
                               history=list(resumed.history), out=out, rank=rank)
    elif ckpt_io.is_run_dir(out):
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it "
                              f"or choose another --out")
    if master:  # fail now, not at the first checkpoint, when the run cannot be written
        check_writable_dir(out)
        ckpt_io.remove_stale_checkpoints(out)

    # model
    start_from = resumed if resumed is not None else (
        ckpt_io.load_checkpoint(cfg.init_from) if cfg.init_from else None)
    if cfg.freeze_encoder:  # a frozen encoder keeps its latents' meaning
        names = start_from.model_config.latent_names
    else:
        names = dict(DCIGN_LATENTS) if cfg.mode == "monovariant" else {}
    model_cfg = cfg.model_config(train_set.size, names)
    torch.manual_seed(cfg.seed)
    model = DCIGN(model_cfg)
    new_decoder = None  # how a decoder of another shape than --init-from's starts
    reshaped = start_from is not None and any(
        getattr(start_from.model_config, k) != getattr(model_cfg, k) for k in DECODER_SHAPE)
    if resumed is None and start_from is not None and cfg.widen_decoder and not reshaped:
        raise DcignError(f"widen_decoder: {cfg.init_from}'s decoder already has this shape "
                         f"({start_from.model_config.decoder_channels} maps); set a wider "
                         f"decoder_width or leave widen_decoder out")
    if resumed is None and start_from is not None and (cfg.freeze_encoder or cfg.widen_decoder) \
            and reshaped:
        check_fits(start_from, model_cfg, ENCODER_SHAPE)
        if cfg.widen_decoder:
            narrow = DCIGN(start_from.model_config)
            ckpt_io.load_weights_into(narrow, start_from)
            widen_decoder(narrow, model, torch.Generator().manual_seed(cfg.seed))
            new_decoder = "grown from the old one, computing the same function"
        else:
            ckpt_io.load_weights_into(model, start_from, only=DCIGN.ENCODER_KEYS)
            new_decoder = "from random weights"
    elif start_from is not None:
        check_fits(start_from, model_cfg)
        ckpt_io.load_weights_into(model, start_from)
    if cfg.freeze_encoder:
        for part in model.encoder_modules():
            part.requires_grad_(False)
    model.to(device, memory_format=torch.channels_last)  # faster on CPU (oneDNN) and GPU alike
    pretrained_latents = (resumed.config.get("latent_layout", {}).get("pretrained_latents")
                          if resumed is not None else None)
    if resumed is None and cfg.named_latents != "first":
        if start_from.model_config.latent_names:
            raise CheckpointError(f"{cfg.init_from} already names its latents "
                                  f"{start_from.model_config.latent_names}; named_latents "
                                  f"{cfg.named_latents!r} picks them from an entangled (vae) run")
        pretrained_latents = name_from_pretraining(model, train_set, device, cfg.named_latents)

    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=cfg.lr, betas=tuple(cfg.betas),
                                 eps=cfg.eps, fused=True if cuda else None)
    if resumed is not None:
        try:
            optimizer.load_state_dict(resumed.optimizer)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{out / ckpt_io.OPTIMIZER} does not fit this model ({e})") \
                from None
        torch.set_rng_state(resumed.rng["torch_cpu"])
        if cuda and "torch_cuda" in resumed.rng:
            torch.cuda.set_rng_state(resumed.rng["torch_cuda"], device)

    fwd = torch.compile(model) if cfg.compile else model
    if world > 1:
        fwd = DDP(fwd, device_ids=[device.index] if cuda else None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
                else contextlib.nullcontext())

    # monovariant batches and their clamps
    monovariant = cfg.mode == "monovariant"
    spread = None  # relative invariance: per-replica running spread, saved with the RNG state
    if monovariant:
        train_batches = train_set.batches()
        probabilities = batch_type_probabilities(cfg.ratio)
        if cfg.invariance_scale in ("relative", "split"):
            spread = ActiveSpread(cfg.latent_dim, device=device)
            if resumed is not None:
                if SPREAD_KEY not in resumed.rng:
                    raise CheckpointError(f"{out / ckpt_io.RNG} lacks the invariance spread a "
                                          f"relative-invariance run saves")
                spread.load_state_dict(resumed.rng[SPREAD_KEY])
        # the named latents come first, the intrinsic block after them
        named = torch.arange(cfg.latent_dim, device=device) < len(model_cfg.latent_names)
        absolute = named if cfg.invariance_scale == "split" else None
        strength = (torch.where(named, cfg.invariance_strength, cfg.intrinsic_strength)
                    if cfg.intrinsic_strength else cfg.invariance_strength)
        clamps = {b: MonovariantClamp(inactive_mask(b, model_cfg.latent_names, cfg.latent_dim)
                                      .to(device), strength, spread, absolute)
                  for b in BATCH_TYPES}
    val_rows = validation_rows(test_set, cfg.val_batches) if cfg.val_every else []

    layout = ckpt_io.latent_layout(model_cfg)
    if pretrained_latents:  # where each named latent was in the entangled pretraining
        layout["pretrained_latents"] = pretrained_latents
    run_config = {"model": model_cfg.to_dict(),
                  "train": {k: v for k, v in cfg.to_dict().items() if k not in SHAPE_OPTIONS},
                  "latent_layout": layout,
                  "data": {"path": str(cfg.data), "image_size": train_set.size,
                           "train_checksum": train_set.checksum,
                           "test_checksum": test_set.checksum,
                           "train_images": len(train_set), "test_images": len(test_set)}}
    history = list(resumed.history) if resumed is not None else []
    start = resumed.step if resumed is not None else 0
    last_saved = start if resumed is not None else None
    lineage = resumed.lineage if resumed is not None else ckpt_io.new_lineage(
        cfg.init_from or None, stage=record.get("stage"), recipe=record.get("recipe"),
        recipe_file=record.get("recipe_file"))
    host = hardware(device, world)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)

    def save(step: int, status: str) -> None:
        nonlocal last_saved
        rng = {"torch_cpu": torch.get_rng_state(),
               "scheme": "batches and noise: numpy default_rng([seed, rank, step])"}
        if cuda:
            rng["torch_cuda"] = torch.cuda.get_rng_state(device)
        if spread is not None:
            rng[SPREAD_KEY] = spread.state_dict()
        ckpt_io.save_checkpoint(out, model=model, config=run_config, optimizer=optimizer, rng=rng,
                                history=history, lineage=lineage,
                                state={"step": step, "status": status, "world_size": world,
                                       "hardware": host})
        last_saved = step

    # SIGINT / SIGTERM: finish the step, write a checkpoint, stop. A second signal leaves at once.
    stop = {"signal": None}

    def on_signal(signum, frame):
        if stop["signal"] is not None:
            raise KeyboardInterrupt
        stop["signal"] = signum

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    progress = Progress(master and not cfg.quiet, start, cfg.steps)
    if pretrained_latents and resumed is None:
        progress.note("named latents from the pretraining's " + ", ".join(
            f"{name} = latent {j}" for name, j in pretrained_latents.items()))
    if new_decoder:
        progress.note(f"encoder from {cfg.init_from}; a decoder with "
                      f"{model_cfg.decoder_channels} maps starts {new_decoder}")
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    images_per_s, status, done_steps = 0.0, "finished", start
    try:
        for step in range(start, end):
            t_step = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, rank, step])
            groups = []  # (batch type, rows, clamp) of each batch in this step
            for _ in range(cfg.batches_per_step):
                # (a share of 0 draws nothing, so runs without it keep their batch sequence)
                unclamped = cfg.unclamped_share > 0 and rng.random() < cfg.unclamped_share
                if monovariant and not unclamped:
                    batch_type, rows = sample_monovariant_batch(train_batches, probabilities, rng)
                    groups.append((batch_type, rows, clamps[batch_type]))
                else:
                    rows = rng.choice(len(train_set), size=cfg.batch_size, replace=False)
                    groups.append(("MIXED", rows, None))
            if len(groups) == 1:
                batch_type, rows, clamp = groups[0]
            else:
                batch_type = f"{len(groups)} BATCHES"
                rows = np.concatenate([g[1] for g in groups])
                clamp = GroupedClamp([g[2] for g in groups], cfg.batch_size)
            x = to_batch(train_set.images, rows, device)
            noise = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            eps = torch.randn(len(rows), cfg.latent_dim,
                                                  generator=noise).to(device)

            optimizer.zero_grad(set_to_none=True)
            stats = forward_backward(fwd, x, eps, clamp, cfg.kl_weight, autocast).cpu()

            # every replica must agree to stop (bad loss anywhere, or a signal) before stepping
            flags = torch.tensor([float(not torch.isfinite(stats).all()),
                                  float(stop["signal"] is not None)])
            if world > 1:
                flags = flags.to(device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                flags = flags.cpu()
            if flags[0]:
                where = (f"the last good checkpoint (step {last_saved}) is kept in {out}"
                         if last_saved is not None else "no checkpoint had been written yet")
                raise NonFiniteLoss(f"loss became {stats[3].item()} at step {step + 1} "
                                    f"({batch_type} batch); training stopped and {where}")
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            optimizer.step()

            stats = dict(zip(("neg_elbo", "bce", "kl"), stats[:3].tolist()))
            history.append({"step": step + 1, "split": "train", "batch_type": batch_type, **stats,
                            "seconds": round(time.time() - t0, 3)})
            rate = len(rows) * world / (time.perf_counter() - t_step)
            images_per_s = rate if images_per_s == 0 else 0.9 * images_per_s + 0.1 * rate
            progress.update(step + 1, stats, images_per_s)

            done = step + 1 == cfg.steps
            paused = not done and step + 1 == end
            if master and cfg.val_every and ((step + 1) % cfg.val_every == 0 or done):
                val = evaluate(model, test_set, val_rows, device, autocast, seed=cfg.seed)
                history.append({"step": step + 1, "split": "test", "batch_type": "ALL", **val,
                                "seconds": round(time.time() - t0, 3)})
                progress.note(f"step {step + 1}/{cfg.steps}  train neg-ELBO {stats['neg_elbo']:.1f}"
                              f"  test neg-ELBO {val['neg_elbo']:.1f}  {images_per_s:.0f} img/s")
            if flags[1]:
                status = "interrupted"
            elif paused:
                status = "paused"
            if master and ((step + 1) % cfg.checkpoint_every == 0 or done or flags[1] or paused):
                save(step + 1, status if done or flags[1] or paused else "running")
            done_steps = step + 1
            if flags[1]:
                break
        if master and cfg.steps == 0:  # the run is its initial weights (e.g. a widened decoder)
            save(0, "finished")
    finally:
        progress.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    if master and not cfg.quiet:
        progress.note(f"{status} at step {done_steps}; run directory {out}")
    return TrainResult(step=done_steps, status=status, model=model, history=history, out=out,
                       rank=rank, signal=stop["signal"])
