#!/usr/bin/env python
"""Renderer throughput: images/s for batches of mixed factors (every image a different identity,
pose and light), at 64x64 and 150x150, after a warm-up call that compiles the kernels; then the
batched torch path (``render_faces_torch``) at 64x64: on CUDA when present (--torch-n images, in
chunks of --torch-batch), else one short CPU line for comparison only (the numba path is the CPU
default).

    python bench/bench_render.py [--n 4000] [--repeats 3] [--torch-n 50000] [--torch-batch 2048]
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
import torch

from trainer.faces import render_faces
from trainer.faces.render_torch import render_faces_torch


def mixed_factors(n: int, seed: int = 0, identities: int = 100_000):
    """Every factor drawn independently per image; identities from a pool of ``identities``."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, identities, n), rng.uniform(-90, 90, n), rng.uniform(-30, 30, n),
            rng.uniform(-80, 80, n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=4000, help="images per timed batch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--torch-n", type=int, default=50_000, help="images per timed CUDA batch")
    p.add_argument("--torch-batch", type=int, default=2048, help="images per CUDA chunk")
    p.add_argument("--torch-cpu-n", type=int, default=500, help="images for the CPU torch line")
    args = p.parse_args()
    # Torch first: numba's OpenMP threads spin for a while after its kernels and would slow it.
    bench_torch(args)
    render_faces(*mixed_factors(4), size=64)  # compile (or load the cached kernels)
    print(f"cpu cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}")
    print(f"{'size':>8} {'identities':>20} {'images':>8} {'best s':>8} {'images/s':>10}")
    for size in (64, 150):
        for pool, label in ((500, "pool of 500"), (100_000, "all distinct")):
            n = args.n if size == 64 else args.n // 4
            factors = mixed_factors(n, seed=size, identities=pool)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                render_faces(*factors, size=size)
                times.append(time.perf_counter() - t0)
            best = min(times)
            print(f"{size:>5}x{size:<3} {label:>20} {n:>8} {best:>8.2f} {n / best:>10.0f}")


def bench_torch(args) -> None:
    """The batched torch path at 64x64; the time includes the identity coefficients (CPU)."""
    if torch.cuda.is_available():
        print(f"torch path on CUDA ({torch.cuda.get_device_name()}), chunks of {args.torch_batch}:")
        render_faces_torch(*mixed_factors(args.torch_batch), device="cuda",
                           batch=args.torch_batch)  # warm-up
        for pool, label in ((500, "pool of 500"), (100_000, "all distinct")):
            factors = mixed_factors(args.torch_n, seed=64, identities=pool)
            times = []
            for _ in range(args.repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                render_faces_torch(*factors, device="cuda", batch=args.torch_batch)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            best = min(times)
            n = args.torch_n
            print(f"{64:>5}x{64:<3} {label:>20} {n:>8} {best:>8.2f} {n / best:>10.0f}  (torch cuda)")
    else:
        n = args.torch_cpu_n
        print("torch path on CPU (no CUDA; for comparison, the numba lines below are the default):")
        factors = mixed_factors(n, seed=64, identities=500)
        render_faces_torch(*mixed_factors(4), device="cpu")  # warm-up
        t0 = time.perf_counter()
        render_faces_torch(*factors, device="cpu")
        best = time.perf_counter() - t0
        print(f"{64:>5}x{64:<3} {'pool of 500':>20} {n:>8} {best:>8.2f} {n / best:>10.0f}  "
              f"(torch cpu, {torch.get_num_threads()} threads; no CUDA: comparison only)")


if __name__ == "__main__":
    main()
