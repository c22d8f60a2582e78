#!/usr/bin/env python
"""Renderer throughput: images/s for batches of mixed factors (every image a different identity,
pose and light), at 64x64 and 150x150, after a warm-up call that compiles the kernels.

    python bench/bench_render.py [--n 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from trainer.faces import render_faces


def mixed_factors(n: int, seed: int = 0, identities: int = 100_000):
    """Every factor drawn independently per image; identities from a pool of ``identities``."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, identities, n), rng.uniform(-90, 90, n), rng.uniform(-30, 30, n),
            rng.uniform(-80, 80, n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=4000, help="images per timed batch")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
