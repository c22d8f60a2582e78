"""An outside model, as a user of dcign-eval could write it: a tiny beta-VAE in PyTorch.

Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017. Not our trainer's network: 32x32 images, three convolutions each way,
8 latents. ``train_beta_vae.py`` beside this file trains it in about two minutes on a CPU and
writes ``beta_vae.safetensors``; the weights shipped here came from
``python examples/train_beta_vae.py`` (see ``examples/README.md``).

It follows the model protocol (``dcign_eval/protocol.py``), with every optional member:
``decode``, ``latent_names`` (the latents the training script found to follow azimuth,
elevation and light on training faces), ``intrinsic`` (the other latents) and ``name``::

    dcign-eval metrics --model examples/beta_vae.py:make_model
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

IMAGE_SIZE = 32
LATENTS = 8
WEIGHTS = Path(__file__).resolve().parent / "beta_vae.safetensors"


class BetaVAE(nn.Module):
    """Encoder 32 -> 16 -> 8 -> 4 (stride-2 convolutions) -> (mu, logvar); decoder the mirror."""

    def __init__(self, latents: int = LATENTS, width: int = 32):
        super().__init__()
        self.latents = latents
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * 16, 2 * latents))
        self.decoder = nn.Sequential(
            nn.Linear(latents, 2 * width * 16), nn.ReLU(), nn.Unflatten(1, (2 * width, 4, 4)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z), mu, logvar


class BetaVAEModel:
    """A trained :class:`BetaVAE` behind the model protocol (numpy in, numpy out)."""

    image_size = IMAGE_SIZE
    name = "beta-vae"

    def __init__(self, net: BetaVAE, latent_names: dict[str, int]):
        self.net = net.eval()
        self.latent_names = dict(latent_names)
        named = set(self.latent_names.values())
        self.intrinsic = [k for k in range(net.latents) if k not in named]

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """Encoder means (N, latents) of uint8 (N, 32, 32) images (a torch tensor: allowed)."""
        x = torch.as_tensor(np.array(images), dtype=torch.float32).div(255).unsqueeze(1)
        return self.net.encoder(x).chunk(2, dim=1)[0]

    @torch.no_grad()
    def decode(self, z) -> np.ndarray:
        """(N, 32, 32) images in [0, 1] from codes."""
        logits = self.net.decoder(torch.as_tensor(np.asarray(z), dtype=torch.float32))
        return torch.sigmoid(logits)[:, 0].numpy()


def save(net: BetaVAE, latent_names: dict[str, int], path: Path = WEIGHTS) -> None:
    """Weights as safetensors (no pickles), the named latents in its metadata."""
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"latent_names": json.dumps(latent_names), "latents": str(net.latents)})


def make_model(path: str | Path = WEIGHTS) -> BetaVAEModel:
    """The factory ``dcign-eval`` calls: the trained weights beside this file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train it with "
                                f"python examples/train_beta_vae.py")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    net = BetaVAE(int(meta.get("latents", LATENTS)))
    net.load_state_dict(load_file(str(path)))
    return BetaVAEModel(net, json.loads(meta.get("latent_names", "{}")))
