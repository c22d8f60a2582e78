"""Our own trained models: :func:`load_run` turns a run directory (or a shipped model's name) into
a :class:`LoadedModel`, which encodes images to latent means and decodes latents to images. It is
one implementation of the model protocol (:mod:`dcign_eval.protocol`, whose ``load_model`` every
analysis uses), like any outside model.

Shipped models live in this package under ``models/<name>/`` as ordinary run directories
(``dcign``: the monovariant DC-IGN; ``vae``: the entangled baseline; ``vae-pretrain``: the
VAE pretraining both models of the quick demo start from).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import (SHIPPED_DIR, WEIGHTS, load_checkpoint, load_weights_into,
                                resolve_run_dir)
from trainer.errors import DcignError
from trainer.model import DCIGN

SHIPPED = ("dcign", "vae", "vae-pretrain")


@dataclass
class LoadedModel:
    """A trained DC-IGN or baseline, in eval mode, behind a numpy interface.

    Attributes:
        model: the torch module (:class:`trainer.model.DCIGN`).
        config: the run's whole ``config.json`` (model, train, latent_layout, data).
        path: the run directory it came from.
        device: where it computes.
        fingerprint: the sha256 of its weights (as the run's state records it).
        state: the run's state (step, status, checksums, torch version).
    """

    model: DCIGN
    config: dict
    path: Path
    device: torch.device
    fingerprint: str
    state: dict

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def intrinsic(self) -> range:
        """The identity block: the latents after the named ones (all of a baseline's)."""
        return self.model.config.intrinsic

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def latent_names(self) -> dict[str, int]:
        """Named latents, e.g. {"azimuth": 0, "elevation": 1, "light": 2}; empty for a baseline."""
        return dict(self.model.config.latent_names)

    @torch.no_grad()
    def encode(self, images, batch_size: int = 256) -> np.ndarray:
        """Latent means mu of q(z|x).

        Args:
            images: (N, H, W) or (N, 1, H, W), numpy or torch; uint8 in 0..255 or float in [0, 1];
                H == W == ``image_size``.
            batch_size: images per forward pass.
        Returns:
            float32 array (N, latent_dim).
        """
        return self.encode_posterior(images, batch_size)[0]

    @torch.no_grad()
    def encode_posterior(self, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sd) of q(z|x), each float32 (N, latent_dim); ``images`` as for :meth:`encode`."""
        x = self._images(images)
        mus, sds = [], []
        for i in range(0, len(x), batch_size):
            mu, logvar = self.model.encode(self._to_device(x[i:i + batch_size]))
            mus.append(mu.cpu())
            sds.append(logvar.mul(0.5).exp().cpu())
        if not mus:
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        return torch.cat(mus).numpy(), torch.cat(sds).numpy()

    @torch.no_grad()
    def decode(self, z, batch_size: int = 256) -> np.ndarray:
        """Images from latents: z (N, latent_dim) -> float32 array (N, S, S) in [0, 1]."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32))
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DcignError(f"decode expects latents of shape (N, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        out = [self.model.decode(z[i:i + batch_size].to(self.device)).float().cpu()[:, 0]
               for i in range(0, len(z), batch_size)]
        if not out:
            return np.zeros((0, self.image_size, self.image_size), np.float32)
        return torch.cat(out).numpy()

    def _images(self, images) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            images = np.asarray(images)
            if not images.flags.writeable:  # e.g. a read-only memory map of a data set
                images = images.copy()
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise DcignError(f"encode expects images of shape (N, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[1:]) != (self.image_size, self.image_size):
            raise DcignError(f"this model takes {self.image_size}x{self.image_size} images, "
                             f"got {x.shape[1]}x{x.shape[2]}")
        if x.dtype == torch.uint8:
            return x
        if not x.is_floating_point():
            raise DcignError(f"images must be uint8 or float, got {x.dtype}")
        if len(x) and (x.min() < 0 or x.max() > 1):
            raise DcignError(f"float images must lie in [0, 1], got values in "
                             f"[{x.min().item():g}, {x.max().item():g}]; pass uint8 or divide "
                             f"by 255")
        return x

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        return x.unsqueeze(1).contiguous(memory_format=torch.channels_last)


def resolve(path_or_name: str | os.PathLike) -> Path:
    """The run directory for a path or a shipped model's name."""
    path = Path(path_or_name)
    if path.exists():  # a recipe's output directory stands for its last stage
        return resolve_run_dir(path.parent if path.is_file() and path.name == WEIGHTS else path)
    name = str(path_or_name)
    if name in SHIPPED:
        shipped = SHIPPED_DIR / name
        if not (shipped / WEIGHTS).is_file():
            raise DcignError(f"the shipped model {name!r} is not installed yet ({shipped} is "
                             f"missing); pass a run directory instead")
        return shipped
    raise DcignError(f"no model {name!r}: not a run directory, a shipped model "
                     f"({', '.join(SHIPPED)}), path/to/file.py:factory nor "
                     f"package.module:factory")


def load_run(path_or_name: str | os.PathLike, device: str | torch.device = "cpu",
             ) -> LoadedModel:
    """Load one of our trained models (analyses load any model with
    :func:`dcign_eval.protocol.load_model`).

    Args:
        path_or_name: a run directory (or its ``model.safetensors``), a recipe's output
            directory (its last stage), or the name of a shipped model ("dcign", "vae").
        device: where to compute ("cpu", "cuda", ...).
    Returns:
        a :class:`LoadedModel` in eval mode.
    Raises:
        DcignError (CheckpointError) with a one-line message for anything missing or foreign.
    """
    run_dir = resolve(path_or_name)
    ckpt = load_checkpoint(run_dir)
    model = DCIGN(ckpt.model_config)
    load_weights_into(model, ckpt)
    device = torch.device(device)
    model = model.to(device, memory_format=torch.channels_last).eval()
    return LoadedModel(model=model, config=ckpt.config, path=run_dir, device=device,
                       fingerprint=ckpt.weights_sha256, state=ckpt.state)
