"""Shared test set-up and fixtures.

* The cache of encoded codes lives in the session's temporary directory, so no test reads or
  fills a user's ~/.cache/dcign-eval. A test may point it elsewhere (monkeypatch).
* ``make_monovariant_data``: small synthetic monovariant data sets for the trainer. A "face" here
  is a shaded ellipse: identity sets its radii and texture, azimuth and elevation move it, light
  turns its shading gradient. Crude, but each factor changes the image, so monovariant batches
  mean what they should, and rendering 300 of them takes milliseconds.
* ``tiny_runs``: untrained run directories, one with named latents and one without.
* ``hold_lock``: another process holding a directory lock.
* ``run_script``: a script under scripts/ run in-process, as its ``__main__`` block runs it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainer.faces.datasets import BATCH_TYPES, write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def session_code_cache(tmp_path_factory):
    before = os.environ.get("DCIGN_EVAL_CACHE")
    os.environ["DCIGN_EVAL_CACHE"] = str(tmp_path_factory.mktemp("dcign-eval-cache"))
    yield
    if before is None:
        os.environ.pop("DCIGN_EVAL_CACHE", None)
    else:
        os.environ["DCIGN_EVAL_CACHE"] = before


# -- synthetic monovariant data ------------------------------------------------------------------

BATCH = 20


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is faster than two contending ones on a small machine
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mono64(tmp_path_factory, make_monovariant_data) -> Path:
    """A tiny synthetic monovariant data set of 64x64 faces, one per test module."""
    return make_monovariant_data(tmp_path_factory.mktemp("faces") / "mono64", size=64)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(args) -> (exit status, stdout, stderr)`` of ``dcign-eval ARGS`` in-process."""
    from dcign_eval import cli

    def run(args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["dcign-eval", *map(str, args)])
        with pytest.raises(SystemExit) as e:
            cli.main()
        out = capsys.readouterr()
        return e.value.code, out.out, out.err
    return run


def render_face(identity: int, azimuth: float, elevation: float, light: float,
                size: int) -> np.ndarray:
    rng = np.random.default_rng(identity)
    ra, rb = 0.22 + 0.1 * rng.random(), 0.28 + 0.1 * rng.random()
    freq = 3 + 4 * rng.random()
    cx, cy = 0.5 + 0.2 * azimuth / 90, 0.5 - 0.15 * elevation / 25
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    u, v = (xx - cx) / ra, (yy - cy) / rb
    inside = u ** 2 + v ** 2 <= 1
    lx = np.sin(np.deg2rad(light))
    shade = 0.55 + 0.35 * lx * u + 0.1 * np.sin(freq * np.pi * v)
    img = np.where(inside, np.clip(shade, 0.05, 1), 0.0)
    return (img * 255).round().astype(np.uint8)


def make_split(path: Path, size: int, identities: range, batches_per_type: int, seed: int,
               types=BATCH_TYPES):
    """One monovariant data set: ``batches_per_type`` batches of 20 for each batch type."""
    rng = np.random.default_rng(seed)
    images, rows, batch_id = [], [], 0
    ids = list(identities)
    for btype in types:
        for _ in range(batches_per_type):
            base = dict(identity=int(rng.choice(ids)), azimuth=float(rng.uniform(-60, 60)),
                        elevation=float(rng.uniform(-20, 20)), light=float(rng.uniform(-60, 60)))
            varied = {"AZ_VARIED": ("azimuth", np.linspace(-80, 80, BATCH)),
                      "EL_VARIED": ("elevation", np.linspace(-23, 23, BATCH)),
                      "LIGHT_VARIED": ("light", np.linspace(-80, 80, BATCH)),
                      "SHAPE_VARIED": ("identity", rng.choice(ids, BATCH))}[btype]
            for value in varied[1]:
                f = dict(base, **{varied[0]: value})
                f["identity"] = int(f["identity"])
                images.append(render_face(f["identity"], f["azimuth"], f["elevation"],
                                          f["light"], size))
                rows.append(dict(f, batch=batch_id, batch_type=btype))
            batch_id += 1
    manifest = {"kind": "monovariant", "seed": seed, "generator_version": "test-ellipses",
                "params": {"batch_size": BATCH}}
    return write_dataset(path, np.stack(images), pd.DataFrame(rows), manifest)


def _make_monovariant_data(root: Path, size: int = 64, batches_per_type: int = 3,
                          test_size: int | None = None, types=BATCH_TYPES) -> Path:
    """root/train (identities 0..49) and root/test (identities 100..119)."""
    make_split(root / "train", size, range(0, 50), batches_per_type, seed=1, types=types)
    make_split(root / "test", test_size or size, range(100, 120), 1, seed=2, types=types)
    return root


@pytest.fixture(scope="session")
def make_monovariant_data():
    """``make_monovariant_data(root, size=64, batches_per_type=3, test_size=None, types=...)``:
    root/train (identities 0..49) and root/test (identities 100..119)."""
    return _make_monovariant_data


# -- untrained runs ------------------------------------------------------------------------------

@pytest.fixture
def tiny_runs(tmp_path) -> dict:
    """Untrained run directories: "tiny-dcign" (named latents) and "tiny-vae" (none)."""
    import torch

    from trainer.checkpoint import latent_layout, save_checkpoint
    from trainer.model import DCIGN, ModelConfig

    torch.manual_seed(0)
    runs = {}
    for name, kwargs in (("tiny-dcign", {}), ("tiny-vae", {"latent_names": {}})):
        cfg = ModelConfig(image_size=64, latent_dim=8, width=0.0625, **kwargs)
        runs[name] = tmp_path / name
        save_checkpoint(runs[name], model=DCIGN(cfg),
                        config={"model": cfg.to_dict(), "train": {},
                                "latent_layout": latent_layout(cfg), "data": {}},
                        state={"step": 0})
    return runs


# -- a lock held by another process --------------------------------------------------------------

HOLD = """
import sys, time
from trainer.io import DirectoryLock
with DirectoryLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def hold_lock():
    """``hold_lock(path)``: another process that takes the lock on ``path`` and keeps it until
    killed (the test kills it)."""
    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "locked"
        return proc
    return start


# -- the scripts under scripts/, in-process ------------------------------------------------------

SCRIPTS = ROOT / "scripts"


@functools.cache
def _script_module(name: str):
    """scripts/NAME loaded once per session as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"script_{Path(name).stem}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_script(monkeypatch, capsys):
    """``run_script(name, *args) -> (exit status, stdout, stderr)`` of ``python scripts/NAME
    ARGS`` in-process: the script's ``main`` under :func:`trainer.errors.run_main`, as its
    ``__main__`` block runs it, without a new interpreter importing torch each time (the scripts
    as real processes: tests/test_scripts.py)."""
    from trainer.errors import run_main

    def run(name: str, *args) -> tuple[int, str, str]:
        module = _script_module(name)
        monkeypatch.setattr(sys, "argv", [str(SCRIPTS / name), *map(str, args)])
        capsys.readouterr()  # only this run's output
        try:
            run_main(module.main)
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


# -- the main job, run once ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The main job's ``tiny`` profile, run once (render a few monovariant batches, train a
    DC-IGN and a VAE for a dozen steps from one pretraining, write the report with the ``tiny``
    preset): {"root", "result", "log", "kwargs"} for tests that read or rebuild its report."""
    import torch

    from dcign_eval.pipeline import TINY, run_demo

    root = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster than two contending ones
    try:
        result = run_demo(TINY, root / "out", data_root=root / "data", cache_dir=root / "cache",
                          log=lines.append)
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "result": result, "log": lines,
            "kwargs": dict(grid_dir=root / "data", cache_dir=root / "cache",
                           recognition_cache=root / "out" / "cache")}
