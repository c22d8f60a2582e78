"""Two DistributedDataParallel replicas on CPU (gloo) end with identical weights."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica(rank: int, world: int, port: int, data: str, out: str, results: str) -> None:
    # the environment torchrun gives each process
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from trainer.config import TrainConfig
    from trainer.train import train
    result = train(TrainConfig(data=data, out=out, steps=3, width=0.125, checkpoint_every=3,
                               val_every=0, quiet=True, verify_data=False))
    torch.save({"weights": result.model.state_dict(),
                "losses": [h["neg_elbo"] for h in result.history]}, f"{results}/rank{rank}.pt")


def test_two_replicas_hold_identical_weights(tmp_path, make_monovariant_data):
    data = make_monovariant_data(tmp_path / "data", size=64, batches_per_type=2)
    mp.spawn(_replica, args=(2, free_port(), str(data), str(tmp_path / "run"), str(tmp_path)),
             nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] != r1["losses"]  # each replica drew its own batches ...
    for k, w in r0["weights"].items():  # ... and DDP kept the weights in step
        assert torch.equal(w, r1["weights"][k]), k
    saved = load_checkpoint(tmp_path / "run")
    assert saved.step == 3 and saved.state["world_size"] == 2
    for k, w in r0["weights"].items():
        assert torch.equal(w, saved.weights[k]), k


@pytest.mark.slow
def test_torchrun_runs_the_module(tmp_path, make_monovariant_data):
    data = make_monovariant_data(tmp_path / "data", size=64, batches_per_type=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "trainer", "--data", str(data),
           "--out", str(tmp_path / "run"), "--steps", "2", "--width", "0.125",
           "--val-every", "0", "--quiet", "--no-verify-data"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    # the first lines name a crashing replica's own error; torchrun's summary comes last
    assert proc.returncode == 0, proc.stderr[:2000] + "\n...\n" + proc.stderr[-1000:]
    assert load_checkpoint(tmp_path / "run").state["world_size"] == 2


@pytest.mark.slow
def test_torchrun_runs_a_recipe(tmp_path, make_monovariant_data):
    """One process group for all the stages; the first replica alone writes the kept step."""
    from trainer.checkpoint import read_lineage
    data = make_monovariant_data(tmp_path / "data", size=64, batches_per_type=1)
    (tmp_path / "r.toml").write_text(
        f'data = "{data}"\nwidth = 0.125\nval_every = 0\nquiet = true\nverify_data = false\n'
        '[[stage]]\nname = "pre"\nmode = "vae"\nsteps = 3\n'
        '[[stage]]\nname = "branch"\nmode = "vae"\nsteps = 2\ninit_from = "pre"\ninit_step = 1\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "trainer", "--recipe",
           str(tmp_path / "r.toml"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[:2000] + "\n...\n" + proc.stderr[-1000:]
    assert load_checkpoint(tmp_path / "out" / "pre").step == 3
    assert load_checkpoint(tmp_path / "out" / "pre@1").step == 1
    lineage = read_lineage(tmp_path / "out")
    assert [(s["name"], s["steps"], s["images"]) for s in lineage.stages] == \
        [("pre", 1, 40), ("branch", 2, 80)]  # 20 images a step on each of 2 replicas
