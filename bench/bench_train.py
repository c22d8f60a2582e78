#!/usr/bin/env python
"""Training throughput: images/s and the fraction of the hardware's FLOP limit reached, for the
default 64x64 model and the paper's 150x150 model, on CPU and (when present) on CUDA.

One timed step is exactly the training loop's: a monovariant batch gathered from uint8 images,
moved to the device, the clamp, forward, backward (:func:`trainer.train.forward_backward`) and the
Adam step. FLOPs are counted analytically (conv and linear multiply-adds x 2 per image forward,
x 3 for forward + backward; :func:`trainer.model.count_flops`): 3.8 GFLOP per image at 64x64 and
23.5 GFLOP at 150x150 (width 1).

Peaks: a CPU's fp32 limit is cores x clock x FLOPs/cycle, with the clock from lscpu ("CPU max
MHz", else the current MHz) and FLOPs/cycle from the vector units (AMD Zen 2-4: two 256-bit FMA
pipes = 32; Zen 5 and Intel AVX-512 server cores: two 512-bit FMA = 64; AVX2 + FMA: 32). The
script also times a large fp32 matrix product, the best a library reaches on this CPU, for
comparison. A GPU's limit is its dense bf16 tensor-core figure (H100 SXM 989 TFLOP/s ...), or
``--peak-tflops``.

    python bench/bench_train.py                       # CPU, and CUDA when present
    python bench/bench_train.py --device cuda --batch-size 20 256 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import time

import numpy as np
import torch

from trainer.model import DCIGN, ModelConfig, count_flops, describe_own_sizes
from trainer.monovariant import MonovariantClamp, inactive_mask
from trainer.train import forward_backward, to_batch

GPU_BF16_TFLOPS = {  # dense bf16 tensor-core peaks, from the vendors' data sheets
    "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "H200": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
}


def cpu_peak() -> tuple[float, str]:
    """(fp32 GFLOP/s limit of the threads torch uses, how it was derived)."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(re.findall(r"^([^:\n]+):\s*(.*)$", text, re.M))
    flags = set(info.get("Flags", "").split())
    mhz = float(info.get("CPU max MHz") or 0)
    clock_src = "max"
    if not mhz:
        with open("/proc/cpuinfo") as f:
            mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read()).group(1))
        clock_src = "current"
    vendor, family = info.get("Vendor ID", ""), int(info.get("CPU family", "0") or 0)
    if vendor == "AuthenticAMD":
        per_cycle, unit = (64, "2x512-bit FMA (Zen 5)") if family >= 26 else \
            (32, "2x256-bit FMA (Zen 2-4; AVX-512 runs as 2x256)")
    elif "avx512f" in flags:
        per_cycle, unit = 64, "2x512-bit FMA (AVX-512)"
    elif "fma" in flags:
        per_cycle, unit = 32, "2x256-bit FMA (AVX2)"
    else:
        per_cycle, unit = 8, "SSE"
    cores = torch.get_num_threads()
    peak = cores * mhz / 1e3 * per_cycle
    return peak, (f"{cores} cores x {mhz / 1e3:.2f} GHz ({clock_src}) x {per_cycle} fp32 "
                  f"FLOP/cycle [{unit}] = {peak:.0f} GFLOP/s")


def gpu_peak(override: float | None) -> tuple[float, str]:
    name = torch.cuda.get_device_name()
    if override:
        return override * 1e3, f"{name}: {override} TFLOP/s (given)"
    for key, tflops in GPU_BF16_TFLOPS.items():
        if all(part in name for part in key.split()):
            return tflops * 1e3, f"{name}: dense bf16 {tflops} TFLOP/s ({key} data sheet)"
    return float("nan"), f"{name}: unknown peak (pass --peak-tflops)"


def matmul_gflops(device: torch.device, n: int = 4096, repeats: int = 3) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_step(cfg: ModelConfig, batch: int, device: torch.device, steps: int,
               warmup: int, channels_last: bool, compile: bool) -> float:
    """Seconds per training step: the fastest of ``steps`` timed steps (robust to other load)."""
    torch.manual_seed(0)
    size = cfg.image_size
    model = DCIGN(cfg).to(device, memory_format=torch.channels_last if channels_last
                          else torch.contiguous_format)
    fwd = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.99), eps=1e-8,
                           fused=True if device.type == "cuda" else None)
    clamp = MonovariantClamp(inactive_mask("SHAPE_VARIED", cfg.latent_names, cfg.latent_dim)
                             .to(device), "mean", 0.01)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(200, 2 * batch), size, size), dtype=np.uint8)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        x = to_batch(images, rng.choice(len(images), batch, replace=False), device)
        if not channels_last:
            x = x.contiguous()
        eps = torch.randn(batch, cfg.latent_dim).to(device)
        opt.zero_grad(set_to_none=True)
        stats = forward_backward(fwd, x, eps, clamp, 1.0, autocast)
        stats.cpu()  # the loop reads the loss every step (NaN guard)
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.min(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU, and CUDA too when present")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 150])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--code-width", type=float, default=None,
                   help="channel multiplier of the maps next to the code (default: --width)")
    p.add_argument("--decoder-width", type=float, default=None,
                   help="channel multiplier of the decoder's maps (default: --width)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[20],
                   help="batch sizes to time (20 is the paper's)")
    p.add_argument("--steps", type=int, default=0, help="timed steps (default: 10 CPU, 50 GPU)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--peak-tflops", type=float, default=None, help="GPU peak, if not in the table")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f}, channels_last {not args.no_channels_last}, "
          f"compile {args.compile}")
    rows = []
    for device in devices:
        peak, how = cpu_peak() if device.type == "cpu" else gpu_peak(args.peak_tflops)
        mm = matmul_gflops(device)
        print(f"{device.type} peak: {how}")
        print(f"{device.type} {'bf16' if device.type == 'cuda' else 'fp32'} 4096^3 matmul: "
              f"{mm:.0f} GFLOP/s ({mm / peak:.0%} of peak)")
        steps = args.steps or (10 if device.type == "cpu" else 50)
        for size in args.sizes:
            cfg = ModelConfig(image_size=size, width=args.width, code_width=args.code_width,
                              decoder_width=args.decoder_width)
            flops = 3 * count_flops(cfg)
            own = describe_own_sizes(vars(args))
            width = f"{args.width:g}" + (f" ({own})" if own else "")
            for batch in args.batch_size:
                dt = bench_step(cfg, batch, device, steps, args.warmup,
                                not args.no_channels_last, args.compile)
                achieved = flops * batch / dt / 1e9
                rows.append((device.type, f"{size}x{size}", width, batch, batch / dt,
                             flops / 1e9, achieved, achieved / peak))
    print()
    print("| device | image | width | batch | images/s | GFLOP/image (fwd+bwd) | GFLOP/s "
          "| of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for dev, image, width, batch, ips, gf, achieved, frac in rows:
        print(f"| {dev} | {image} | {width} | {batch} | {ips:.1f} | {gf:.2f} | {achieved:.0f} "
              f"| {frac:.0%} |")


if __name__ == "__main__":
    main()
