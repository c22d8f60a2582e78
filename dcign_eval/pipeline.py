"""The main job (``dcign-eval demo``): render the face world, train a DC-IGN and its entangled
baseline, evaluate them and write the report -- one command on a fresh machine.

Every profile trains recipes (``recipes/``, :mod:`trainer.recipe`); :data:`PROFILES`,
:func:`profile`:

* ``quick`` -- at most about 15 minutes on a 2-core CPU: ``recipes/quick.toml`` (300
  monovariant batches per type at 64x64; the DC-IGN and the VAE baseline at width 0.25 both from
  the shipped VAE pretraining ``vae-pretrain``, side by side, one process and one core each),
  then the report's quick preset (what was measured to choose the recipe: docs/experiments.md).
* ``full`` -- the shipped models rebuilt: ``recipes/dcign.toml`` and ``recipes/vae.toml`` side by
  side (hours on a CPU), then the report's full preset.
* ``tiny`` -- seconds: the quick recipe at a tiny scale (a few batches, a few steps from the
  same shipped pretraining), the plumbing check the tests run.

Training runs as ``python -m trainer --recipe`` subprocesses (the same entry point as
``dcign-eval train``), so each gets its own thread pool, and an interrupted demo resumes: the
recipe's runner skips finished stages and resumes the unfinished one. When one recipe holds both
models (stages named ``dcign`` and ``vae``), the stages both descend from train first, then the
two branches side by side (``--stage``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from trainer.checkpoint import run_progress
from trainer.errors import DcignError

Log = Callable[[str], None]

#: the recipes this repository ships (recipes/ beside the package)
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
#: the report's two models
ROLES = ("dcign", "vae")


@dataclass(frozen=True)
class Profile:
    """Everything the main job does, at one scale.

    Attributes:
        name: quick, full or tiny.
        recipes: role ("dcign", "vae") -> recipe file. One file for both: its stages named
            ``dcign`` and ``vae`` are the two models; two files: each one's final model.
        overrides: ``KEY=VALUE`` overrides of the recipes (``--set``).
        data: the monovariant data directory's name under the data root (the recipes' [data]
            is rendered there).
        report: the report preset (quick, full, tiny).
        parallel: train the two models side by side, one process each (CPU); else one after
            the other with every core (GPU).
        source: where the recipes came from, in words.
    """

    name: str
    recipes: dict = field(default_factory=dict)
    overrides: tuple = ()
    data: str = "monovariant-demo"
    report: str = "quick"
    parallel: bool = True
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _both(recipe: str) -> dict:
    return {role: str(RECIPES_DIR / recipe) for role in ROLES}


QUICK = Profile("quick", _both("quick.toml"), source="recipes/quick.toml")
#: the quick recipe in seconds: the plumbing check the tests run
TINY = Profile("tiny", _both("quick.toml"), data="monovariant-demo-tiny", report="tiny",
               source="recipes/quick.toml at a tiny scale",
               overrides=("data.train_batches=3", "data.test_batches=1",
                          "data.train_identities=20", "data.test_identities=20", "data.step=10.0",
                          "lr=0.002", "checkpoint_every=6", "val_every=0", "vae.steps=6",
                          "dcign.steps=8"))

PROFILES = ("quick", "full", "tiny")


def profile(name: str) -> Profile:
    """The profile called ``name`` (quick, full, tiny)."""
    if name == "quick":
        return QUICK
    if name == "full":
        return Profile("full", {"dcign": str(RECIPES_DIR / "dcign.toml"),
                                "vae": str(RECIPES_DIR / "vae.toml")},
                       data="monovariant", report="full", parallel=not _cuda(),
                       source="recipes/dcign.toml and recipes/vae.toml (the shipped models)")
    if name == "tiny":
        return TINY
    raise DcignError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- the steps -------------------------------------------------------------------------------------

def _recipes(prof: Profile, data: Path) -> dict:
    """role -> the loaded recipe, its [data] rendered into ``data``."""
    from trainer.recipe import load_recipe

    return {role: load_recipe(path, _overrides(prof, data)) for role, path in
            prof.recipes.items()}


def _overrides(prof: Profile, data: Path) -> tuple[str, ...]:
    return tuple(prof.overrides) + (f"data.out={data}",)


def render_data(prof: Profile, data_root: Path, log: Log) -> Path:
    """Render (or reuse) the recipes' monovariant train/test sets; returns their directory."""
    from trainer.recipe import render_data as render_recipe_data

    data = data_root / prof.data
    for recipe in _recipes(prof, data).values():
        render_recipe_data(recipe, log)  # the second of one set is reused
    return data


@dataclass
class _Job:
    """One ``python -m trainer`` with ``argv``; done when ``run`` is at step ``steps``."""

    name: str
    run: Path
    argv: list[str]
    steps: int
    proc: subprocess.Popen | None = None
    log_file: object = None


def _start(job: _Job, threads: int) -> None:
    """Start ``python -m trainer`` for a job (a recipe's runner resumes what is unfinished)."""
    job.run.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    job.log_file = open(job.run.parent / f"{job.run.name}.log", "ab")
    job.proc = subprocess.Popen([sys.executable, "-m", "trainer", *job.argv], env=env,
                                stdout=job.log_file, stderr=subprocess.STDOUT)


def train_models(jobs: list[_Job], parallel: bool, log: Log, poll: float = 15.0) -> None:
    """Train the jobs (side by side when ``parallel``), reusing finished runs; DcignError with
    the trainer's last log line when one fails."""
    todo = []
    for job in jobs:
        state = run_progress(job.run)
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
                    done = [f"{j.name} {(run_progress(j.run) or (0, ''))[0]}/{j.steps}"
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


def recipe_jobs(prof: Profile, root: Path, data: Path) -> tuple[list[_Job], list[_Job],
                                                               dict[str, Path]]:
    """The jobs of a profile: those to run first (the stages both models descend from, when one
    recipe holds both), those to run next (one a model), and each model's run directory.

    :func:`render_data` has rendered the data: the jobs take it as it is (``--set data=DIR``),
    so two of them side by side do not both reach for it."""
    recipes = _recipes(prof, data)
    sets = [f"--set={o}" for o in prof.overrides if not o.startswith("data.")]
    sets.append(f"--set=data={data}")

    def job(name: str, role: str, out: Path, stage: str | None = None) -> _Job:
        recipe = recipes[role]
        last = stage or recipe.final
        argv = ["--recipe", prof.recipes[role], "--out", str(out), *sets]
        argv += ["--stage", stage] if stage else []
        return _Job(name, out / last, argv, recipe.stage(last).options.get("steps", 0))

    if prof.recipes["dcign"] != prof.recipes["vae"]:  # two recipes, each one model
        return [], [job(role, role, root / role) for role in ROLES], \
            {role: root / role for role in ROLES}
    recipe = recipes["dcign"]
    chains = {role: [s.name for s in recipe.lineage_of(role)] for role in ROLES}
    common = [name for name in chains["dcign"] if name in chains["vae"]]
    first = ([job(f"{common[-1]} (both models start from it)", "dcign", root, common[-1])]
             if common else [])
    return first, [job(role, role, root, role) for role in ROLES], \
        {role: root / role for role in ROLES}


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
    first, models, runs = recipe_jobs(prof, out / "runs", data)
    train_models(first, False, log)
    train_models(models, prof.parallel, log)
    seconds["training"] = time.perf_counter() - start

    start = time.perf_counter()
    report = build_report([runs["dcign"], runs["vae"]], out=out / "report", seed=seed,
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
