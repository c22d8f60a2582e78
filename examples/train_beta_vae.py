"""Train the example beta-VAE (``beta_vae.py``) in about two minutes on a CPU.

Not our trainer: a plain loop a user could have written. Faces of training identities at random
azimuth, elevation and light are rendered at 32x32; the loss is the Bernoulli reconstruction
error plus beta times the KL divergence. Afterwards each of azimuth, elevation and light is given
the latent whose encoder mean follows it best (largest Spearman |rho| on fresh training faces, at
least 0.5), so the model names its latents as a user would after looking at its traversals.

    python examples/train_beta_vae.py                 # writes examples/beta_vae.safetensors
    python examples/train_beta_vae.py --seconds 5 --out /tmp/bvae.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beta_vae.py beside this file

from beta_vae import IMAGE_SIZE, WEIGHTS, BetaVAE, BetaVAEModel, save  # noqa: E402
from trainer.faces import FACTOR_RANGES, render_faces, split_identities  # noqa: E402


def faces(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` uint8 faces of training identities at random angles, and the angles."""
    rng = np.random.default_rng(seed)
    identities = rng.choice(split_identities("train", 500), n)
    angles = {name: rng.uniform(lo, hi, n) for name, (lo, hi) in FACTOR_RANGES.items()}
    return render_faces(identities, *angles.values(), size=IMAGE_SIZE), angles


def name_latents(model: BetaVAEModel, images: np.ndarray, angles: dict[str, np.ndarray],
                 threshold: float = 0.5) -> dict[str, int]:
    """Each factor's best latent by Spearman |rho|, each latent named at most once."""
    codes = np.asarray(model.encode(images))
    rho = np.array([[abs(spearmanr(codes[:, k], values).statistic) for k in
                     range(codes.shape[1])] for values in angles.values()])
    rho = np.nan_to_num(rho)
    names: dict[str, int] = {}
    for f in np.argsort(-rho.max(axis=1)):  # the clearest factor chooses first
        order = [k for k in np.argsort(-rho[f]) if k not in names.values()]
        if order and rho[f, order[0]] >= threshold:
            names[list(angles)[f]] = int(order[0])
    return dict(sorted(names.items(), key=lambda kv: list(angles).index(kv[0])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=110, help="training time budget")
    parser.add_argument("--images", type=int, default=6000, help="training faces rendered")
    parser.add_argument("--beta", type=float, default=4.0, help="KL weight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    images, _ = faces(args.images, args.seed)
    x_all = torch.from_numpy(images).float().div(255).unsqueeze(1)
    net = BetaVAE()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        x = x_all[rng.integers(0, len(x_all), 64)]
        logits, mu, logvar = net(x)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        loss = rec + args.beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"step {step}: reconstruction {rec.item():.1f}, KL {kl.item():.2f} nats")
    held, angles = faces(1000, args.seed + 1)
    names = name_latents(BetaVAEModel(net, {}), held, angles)
    save(net, names, args.out)
    print(f"{step} steps in {time.perf_counter() - start:.0f} s; named latents {names}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
