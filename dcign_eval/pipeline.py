"""The main job (``dcign-eval demo``): render the face world, train a DC-IGN and its entangled
baseline, evaluate them and write the report -- one command on a fresh machine.

Profiles (:data:`PROFILES`, :func:`profile`):

* ``quick`` -- at most about 15 minutes on a 2-core CPU: 300 monovariant batches per type at
  64x64, a VAE pretraining, then the DC-IGN and the VAE baseline at width 0.25 both from it,
  trained side by side (one process and one core each), then the report's quick preset
  (:data:`QUICK`; what was measured to choose it: docs/experiments.md).
* ``full`` -- the recipe of the shipped models, read from ``dcign_eval/models/*/config.json``
  when they are installed (otherwise the paper's 3000/350 batches per type, width 0.25, 16,000
  steps); on a GPU it trains at whatever scale those configs ask for (the paper's, 150x150 and
  width 1, if they do).
* ``tiny`` -- seconds: the plumbing check the tests run.

Training runs as ``python -m trainer`` subprocesses (the same entry point as ``dcign-eval
train``), so each gets its own thread pool, and an interrupted demo resumes: a finished run is
reused, an unfinished one continues with ``--resume``. A DC-IGN recipe that starts from a
pretrained baseline (``init_from`` in the shipped config) trains the baseline to the pretraining
step first, snapshots it, and then trains both on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from trainer.errors import DcignError

Log = Callable[[str], None]

#: Steps the DC-IGN's recipe pretrains as a VAE when the shipped config names an ``init_from``
#: whose own checkpoint is not on this machine (the shipped models' recipe).
DEFAULT_PRETRAIN_STEPS = 6000
#: Wall-clock budget of the quick profile's training, in steps of one model (the two models
#: train side by side on a CPU).
QUICK_STEPS = 2500
#: TrainConfig keys a profile takes from a shipped model's recipe.
RECIPE_KEYS = ("batch_size", "lr", "betas", "eps", "beta", "ratio", "clamp_reference",
               "invariance_strength", "latent_dim", "seed")


@dataclass(frozen=True)
class Profile:
    """Everything the main job does, at one scale.

    Attributes:
        name: quick, full or tiny.
        size: image size in pixels.
        train_batches, test_batches: monovariant batches per batch type.
        train_identities, test_identities: identities of the two splits.
        step: angle grid step of the batches, degrees.
        data: the monovariant data directory's name (under the data root).
        width: the models' channel multiplier.
        vae_steps, dcign_steps: training steps of the baseline and of the DC-IGN.
        pretrain_steps: the DC-IGN starts from the baseline's weights at this step (0: from
            scratch; its ``dcign_steps`` come on top).
        dcign, vae: further TrainConfig keys of each model (ratio, lr, ...).
        checkpoint_every, val_every: as the trainer's flags.
        report: the report preset (quick, full, tiny).
        parallel: train the two models side by side, one process each (CPU); else one after
            the other with every core (GPU).
        source: where the recipe came from.
    """

    name: str
    size: int = 64
    train_batches: int = 300
    test_batches: int = 30
    train_identities: int = 500
    test_identities: int = 100
    step: float = 2.5
    data: str = "monovariant-demo"
    width: float = 0.25
    vae_steps: int = QUICK_STEPS
    dcign_steps: int = QUICK_STEPS
    pretrain_steps: int = 0
    dcign: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)
    checkpoint_every: int = 250
    val_every: int = 500
    report: str = "quick"
    parallel: bool = True
    source: str = "built-in"

    def to_dict(self) -> dict:
        return asdict(self)


def shipped_recipe(models_dir: str | os.PathLike | None = None) -> dict | None:
    """The shipped models' configs ``{"dcign": config, "vae": config}`` (their config.json),
    or None when they are not installed."""
    from dcign_eval.models import SHIPPED_DIR

    root = Path(models_dir) if models_dir is not None else SHIPPED_DIR
    configs = {}
    for name in ("dcign", "vae"):
        try:
            configs[name] = json.loads((root / name / "config.json").read_text())
        except (OSError, ValueError):
            return None
    return configs


def _pretrain_steps(dcign_train: dict) -> int:
    """Steps of the baseline the DC-IGN was initialised from: its checkpoint's step when it is
    on this machine, else :data:`DEFAULT_PRETRAIN_STEPS`; 0 without ``init_from``."""
    init = dcign_train.get("init_from") or ""
    if not init:
        return 0
    try:
        return int(json.loads((Path(init) / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_PRETRAIN_STEPS


def full_profile(recipe: dict | None | str = "shipped") -> Profile:
    """A recipe's profile: ``recipe`` as :func:`shipped_recipe` returns it ("shipped": read the
    installed models' configs), or, with None or no shipped models, the paper's data and 16,000
    steps at width 0.25. A DC-IGN whose last stage was not monovariant (trained in stages) gives
    its data and width only, with the built-in steps and settings."""
    recipe = shipped_recipe() if isinstance(recipe, str) and recipe == "shipped" else recipe
    base = Profile("full", train_batches=3000, test_batches=350, data="monovariant",
                   width=0.25, vae_steps=16_000, dcign_steps=16_000, checkpoint_every=1000,
                   val_every=1000, report="full", parallel=not _cuda())
    if recipe is None:
        return replace(base, source="built-in (the shipped models are not installed)")
    d_train, v_train = recipe["dcign"].get("train", {}), recipe["vae"].get("train", {})
    data = recipe["dcign"].get("data", {})
    per_type = 4 * 20  # four batch types of 20 faces
    scaled = replace(
        base, size=int(recipe["dcign"].get("model", {}).get("image_size", 64)),
        train_batches=int(data.get("train_images", 3000 * per_type)) // per_type,
        test_batches=int(data.get("test_images", 350 * per_type)) // per_type,
        width=float(d_train.get("width", 0.25)))
    if d_train.get("mode", "monovariant") != "monovariant" or d_train.get("freeze_encoder"):
        # The shipped DC-IGN's last stage did not train it monovariantly (e.g. a decoder-alone
        # stage): its config holds that stage only, not the recipe; the stages are in its card.
        return replace(scaled, pretrain_steps=DEFAULT_PRETRAIN_STEPS,
                       source="the shipped models' data and width; they were trained in stages "
                              "(their model cards), so one built-in pretraining and monovariant "
                              "stage stands in")
    return replace(
        scaled, vae_steps=int(v_train.get("steps", 16_000)),
        dcign_steps=int(d_train.get("steps", 16_000)), pretrain_steps=_pretrain_steps(d_train),
        dcign={k: d_train[k] for k in RECIPE_KEYS if k in d_train},
        vae={k: v_train[k] for k in RECIPE_KEYS if k in v_train},
        source="the shipped models' config.json")


def quick_profile(recipe: dict | None | str = "shipped") -> Profile:
    """A recipe (see :func:`full_profile`) scaled down to about :data:`QUICK_STEPS` steps of wall
    time on a 2-core CPU; built-in settings without one."""
    full = full_profile(recipe)
    base = Profile("quick")
    if full.source.startswith("built-in"):
        return base
    # Wall time in steps: pretraining, then both models side by side.
    wall = full.pretrain_steps + max(full.vae_steps - full.pretrain_steps, full.dcign_steps)
    scale = min(1.0, QUICK_STEPS / max(wall, 1))
    return replace(base, vae_steps=max(1, round(full.vae_steps * scale)),
                   dcign_steps=max(1, round(full.dcign_steps * scale)),
                   pretrain_steps=round(full.pretrain_steps * scale), dcign=full.dcign,
                   vae=full.vae, source=f"{full.source}, steps scaled by {scale:.3g}")


#: The quick demo (docs/experiments.md): the two models at code width 1 (the 4x4 maps next to the
#: code keep 24 channels, not 6), a 1,500-step VAE pretraining, then the DC-IGN and the baseline
#: both from it for 1,000 steps each. The DC-IGN's azimuth, elevation and light latents are the
#: pretrained latents that best order those factors on their own batch types (renumbered, the same
#: function): latent 0 of a short VAE pretraining tends to say how far the head is turned, not
#: which way, and monovariant training then grows that U-shape instead of the sign. The relative
#: invariance penalty at strength 10 from the start keeps each factor out of the other latents.
QUICK = Profile("quick", pretrain_steps=1500, dcign_steps=1000, vae_steps=2500,
                dcign={"code_width": 1.0, "named_latents": "order",
                       "invariance_scale": "relative", "invariance_strength": 10.0},
                vae={"code_width": 1.0},
                source="built-in quick recipe: a 1,500-step VAE pretraining, then the DC-IGN "
                       "(named latents from the pretraining, relative invariance 10) and the "
                       "baseline from it for 1,000 steps each; code width 1")

#: The quick recipe in seconds: the plumbing check the tests run.
TINY = replace(QUICK, name="tiny", train_batches=3, test_batches=1, train_identities=20,
               test_identities=20, step=10.0, data="monovariant-demo-tiny", width=0.125,
               pretrain_steps=6, vae_steps=12, dcign_steps=6,
               dcign={**QUICK.dcign, "latent_dim": 12, "lr": 2e-3},
               vae={**QUICK.vae, "latent_dim": 12, "lr": 2e-3}, checkpoint_every=6,
               val_every=0, report="tiny", source="the quick recipe, tiny")

PROFILES = ("quick", "full", "tiny")


def profile(name: str) -> Profile:
    """The profile called ``name`` (quick, full, tiny)."""
    if name == "quick":
        return QUICK
    if name == "full":
        return full_profile()
    if name == "tiny":
        return TINY
    raise DcignError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- the steps -------------------------------------------------------------------------------------

def render_data(prof: Profile, data_root: Path, log: Log) -> Path:
    """Render (or reuse) the profile's monovariant train/test sets; returns their directory."""
    from trainer.faces import MonovariantSpec, render_monovariant

    path = data_root / prof.data
    spec = MonovariantSpec(batches_per_type={"train": prof.train_batches,
                                             "test": prof.test_batches},
                           identities={"train": prof.train_identities,
                                       "test": prof.test_identities}, step=prof.step)
    total = (prof.train_batches + prof.test_batches) * 4 * 20
    log(f"demo: monovariant data {path} ({total:,} faces, {prof.size}x{prof.size}; reused when "
        f"already rendered)")
    render_monovariant(path, spec, size=prof.size)
    return path


def _train_config(prof: Profile, role: str, data: Path, out: Path, steps: int,
                  init_from: Path | None = None) -> dict:
    extra = prof.dcign if role == "dcign" else prof.vae
    cfg = {**extra, "data": str(data), "out": str(out), "steps": int(steps),
           "mode": "monovariant" if role == "dcign" else "vae", "width": prof.width,
           "checkpoint_every": prof.checkpoint_every, "val_every": prof.val_every,
           "quiet": False}
    if init_from is not None:
        cfg["init_from"] = str(init_from)
    return cfg


def _run_state(run: Path) -> tuple[int, str] | None:
    try:
        state = json.loads((run / "state.json").read_text())
        return int(state["step"]), str(state.get("status", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class _Job:
    name: str
    run: Path
    config: dict
    steps: int
    proc: subprocess.Popen | None = None
    log_file: object = None


def _start(job: _Job, threads: int) -> None:
    """Start ``python -m trainer`` for a job (resuming an unfinished run of it)."""
    job.run.parent.mkdir(parents=True, exist_ok=True)
    config_path = job.run.parent / f"{job.run.name}.train.json"
    if _run_state(job.run) is not None:  # continue where it stopped, to this job's steps
        argv = ["--out", str(job.run), "--resume", "--steps", str(job.steps), "--no-quiet"]
    else:
        config_path.write_text(json.dumps(job.config, indent=2) + "\n")
        argv = ["--config", str(config_path)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    job.log_file = open(job.run.parent / f"{job.run.name}.log", "ab")
    job.proc = subprocess.Popen([sys.executable, "-m", "trainer", *argv], env=env,
                                stdout=job.log_file, stderr=subprocess.STDOUT)


def train_models(jobs: list[_Job], parallel: bool, log: Log, poll: float = 15.0) -> None:
    """Train the jobs (side by side when ``parallel``), reusing finished runs; DcignError with
    the trainer's last log line when one fails."""
    todo = []
    for job in jobs:
        state = _run_state(job.run)
        if state is not None and state[0] >= job.steps:
            log(f"demo: {job.name}: {job.run} already trained to step {state[0]}; reused")
        else:
            todo.append(job)
    if not todo:
        return
    cores = os.cpu_count() or 1
    batches = [todo] if parallel else [[job] for job in todo]
    for batch in batches:
        threads = max(1, cores // len(batch))
        for job in batch:
            _start(job, threads)
        log("demo: training " + ", ".join(f"{j.name} ({j.steps} steps, log {j.run}.log)"
                                          for j in batch))
        started, last = time.time(), time.time()
        try:
            while any(j.proc.poll() is None for j in batch):
                time.sleep(0.5)
                failed = [j for j in batch if j.proc.poll() not in (None, 0)]
                if failed:  # no point finishing the other model: stop it (it checkpoints)
                    raise DcignError(f"training {failed[0].name} failed (exit status "
                                     f"{failed[0].proc.returncode}): "
                                     f"{_last_line(Path(str(failed[0].run) + '.log'))}")
                if time.time() - last >= poll:
                    last = time.time()
                    done = [f"{j.name} {(_run_state(j.run) or (0, ''))[0]}/{j.steps}"
                            for j in batch]
                    log(f"demo: training {', '.join(done)} steps (checkpoints), "
                        f"{time.time() - started:.0f} s")
        except BaseException:
            for j in batch:  # our own children: stop them, they checkpoint on SIGTERM
                if j.proc.poll() is None:
                    j.proc.terminate()
            for j in batch:
                with _suppress():
                    j.proc.wait(timeout=60)
            raise
        finally:
            for j in batch:
                j.log_file.close()
        for j in batch:
            if j.proc.returncode != 0:
                raise DcignError(f"training {j.name} failed (exit status {j.proc.returncode}): "
                                 f"{_last_line(Path(str(j.run) + '.log'))}")


def _suppress():
    import contextlib

    return contextlib.suppress(subprocess.TimeoutExpired)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["empty log"])[-1].strip()


@dataclass
class DemoResult:
    """What the main job made: the data, the two runs, the report and the time of each step."""

    profile: Profile
    data: Path
    runs: dict[str, Path]
    report: Path
    seconds: dict[str, float]


def run_demo(prof: Profile | str = "quick", out: str | os.PathLike = "out/demo", *,
             data_root: str | os.PathLike = "data", cache_dir: str | os.PathLike | None = None,
             recognition_cache: str | os.PathLike | None = None, seed: int = 0,
             log: Log | None = None) -> DemoResult:
    """Run the whole pipeline: data, training, evaluation, report.

    Args:
        prof: a :class:`Profile` or its name (quick, full, tiny).
        out: runs go to ``out/runs/{dcign,vae}``, the report to ``out/report``.
        data_root: the monovariant set and the evaluation grid are rendered (once) here.
        cache_dir: the report's caches (default ``$DCIGN_EVAL_CACHE`` or ~/.cache/dcign-eval).
        recognition_cache: rendered recognition faces and codes (default ``out/cache``).
        seed: the report's seed.
        log: called with a progress line.
    Returns:
        a :class:`DemoResult`.
    """
    from dcign_eval.report import build_report

    prof = profile(prof) if isinstance(prof, str) else prof
    log = log or (lambda line: None)
    out, data_root = Path(out), Path(data_root)
    seconds: dict[str, float] = {}
    log(f"demo: profile {prof.name} ({prof.source})")

    start = time.perf_counter()
    data = render_data(prof, data_root, log)
    seconds["data"] = time.perf_counter() - start

    start = time.perf_counter()
    runs = {"dcign": out / "runs" / "dcign", "vae": out / "runs" / "vae"}
    pretrain = out / "runs" / "vae-pretrain"
    if prof.pretrain_steps > 0:
        train_models([_Job("vae (pretraining)", runs["vae"],
                           _train_config(prof, "vae", data, runs["vae"], prof.pretrain_steps),
                           prof.pretrain_steps)], False, log)
        if _run_state(pretrain) is None:
            state = _run_state(runs["vae"])
            if state is None or state[0] != prof.pretrain_steps:
                raise DcignError(f"{runs['vae']} is at step {state and state[0]}, not the "
                                 f"pretraining step {prof.pretrain_steps}; remove "
                                 f"{out / 'runs'} to start the demo's training afresh")
            shutil.copytree(runs["vae"], pretrain,
                            ignore=shutil.ignore_patterns(".checkpoint-*"))
    jobs = [_Job("dcign", runs["dcign"],
                 _train_config(prof, "dcign", data, runs["dcign"], prof.dcign_steps,
                               pretrain if prof.pretrain_steps > 0 else None),
                 prof.dcign_steps),
            _Job("vae", runs["vae"], _train_config(prof, "vae", data, runs["vae"],
                                                   prof.vae_steps), prof.vae_steps)]
    train_models(jobs, prof.parallel, log)
    seconds["training"] = time.perf_counter() - start

    start = time.perf_counter()
    report = build_report(runs["dcign"], runs["vae"], out=out / "report", seed=seed,
                          settings=prof.report, grid_dir=data_root, cache_dir=cache_dir,
                          recognition_cache=(recognition_cache if recognition_cache is not None
                                             else out / "cache"),
                          command=f"dcign-eval demo --profile {prof.name}", log=log)
    seconds["evaluation and report"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return DemoResult(prof, data, runs, report.index, seconds)


def format_seconds(seconds: float) -> str:
    """``12.3 s`` or ``4 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(math.floor(seconds + 0.5)), 60)
    return f"{m} min {s:02d} s"
