"""The DC-IGN network: a convolutional VAE (Kulkarni et al., NIPS 2015, arXiv 1503.03167, Fig. 1).

Read top to bottom: :class:`ModelConfig`, the :class:`DCIGN` module (encode -> (mu, logvar),
reparametrise, decode), and :func:`neg_elbo`, the per-image loss.

Architecture (the original's ``init_network2_150_mv(200, 96)``, with a width multiplier ``w``):

* encoder: 3 x [conv 5x5 (stride 1, no padding), max-pool 2, ReLU] with 96w, 48w, 24w feature maps,
  then two linear heads giving mu and log-variance of ``latent_dim`` (200) latents;
* decoder: linear + ReLU, reshape to (24w, s0, s0), then 4 x [nearest upsample x2, conv 7x7] with
  48w, 96w, 96w, 1 feature maps, ReLU between and a sigmoid at the end.

``code_width`` (default: ``w``) sets the two 24w maps next to the code on its own: at 64x64 they
are 4x4, so at w = 0.25 the 200 latents are read from and decoded into only 96 numbers.
``decoder_width`` (default: ``w``) sets the decoder's 48w, 96w, 96w maps on their own.

The decoder must land exactly on the input size. Four x2 upsamplings, each followed by a 7x7 conv
with padding p, give ``16 * s0 - 15 * (6 - 2p)`` pixels, so (:func:`decoder_plan`):

* 150x150 (the paper): p = 0 (valid convs, as the original) and s0 = 15, i.e.
  15 -> 30 -> 24 -> 48 -> 42 -> 84 -> 78 -> 156 -> 150; s0 equals the encoder's 15x15 output and the
  model has 4,131,137 parameters at width 1, as the paper's "about 4.1M";
* 64x64 (this project's default): p = 3 ('same' convs) and s0 = 4, i.e. 4 -> 8 -> 16 -> 32 -> 64,
  again equal to the encoder's output (64 -> 60 -> 30 -> 26 -> 13 -> 9 -> 4).

The first padding in (0, 3, 1, 2) that gives an integer s0 is taken; sizes for which none does, or
for which the encoder shrinks the image to nothing, are refused with a one-line error.

The decoder returns logits; :meth:`DCIGN.decode` applies the sigmoid, and :func:`neg_elbo` uses the
logits directly (``binary_cross_entropy_with_logits`` is the numerically stable form of the
original's sigmoid followed by BCE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.errors import DcignError

# The paper's latent layout (0-based): three named latents, the rest is the intrinsic block.
DCIGN_LATENTS = {"azimuth": 0, "elevation": 1, "light": 2}
ENCODER_CHANNELS = (96, 48, 24)
DECODER_CHANNELS = (48, 96, 96)  # the last conv maps to 1 channel
ENCODER_KERNEL, DECODER_KERNEL = 5, 7
#: the ModelConfig fields that fix the encoder's weights and the code between it and the decoder
ENCODER_SHAPE = ("image_size", "latent_dim", "encoder_channels", "code_channels")
#: and those that fix the decoder's beyond the code
DECODER_SHAPE = ("decoder_channels",)
#: config fields that size a part of the network on its own (not by ``width``), and their labels
OWN_SIZES = (("code_width", "code maps"), ("decoder_width", "decoder"))
#: fields of earlier versions, read from old configs only at the value that changes nothing
REMOVED_FIELDS = {"decoder_hidden": 0}


def describe_own_sizes(config: Mapping) -> str:
    """'code maps 1, decoder 0.5' for the parts a model or train config sizes on its own."""
    return ", ".join(f"{label} {config[key]:g}" for key, label in OWN_SIZES if config.get(key))


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network. Stored in a run's ``config.json``.

    ``latent_names`` maps the named latents to their index (the paper's layout for a DC-IGN,
    empty for an entangled baseline); every latent from ``len(latent_names)`` on is intrinsic.
    """

    image_size: int = 64
    latent_dim: int = 200
    width: float = 1.0
    latent_names: dict = field(default_factory=lambda: dict(DCIGN_LATENTS))
    #: channel multiplier of the two 24-channel maps next to the code (the encoder's last conv,
    #: the decoder's reshape); None: ``width``. At 64x64 these maps are only 4x4, so at width
    #: 0.25 the code is read from and written to 96 numbers (the paper's 150x150: 5400).
    code_width: float | None = None
    #: channel multiplier of the decoder's 48-96-96 maps; None: ``width``.
    decoder_width: float | None = None

    def __post_init__(self):
        if self.width <= 0:
            raise DcignError(f"model width must be positive, got {self.width}")
        for key in ("code_width", "decoder_width"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise DcignError(f"model {key} must be positive, got {getattr(self, key)}")
        n_named = len(self.latent_names)
        if self.latent_dim <= n_named:
            raise DcignError(f"latent_dim {self.latent_dim} leaves no intrinsic latents "
                             f"after the {n_named} named ones")
        if sorted(self.latent_names.values()) != list(range(n_named)):
            raise DcignError(f"latent_names must number the named latents 0..{n_named - 1}, "
                             f"got {self.latent_names}")
        encoder_output_size(self.image_size)
        decoder_plan(self.image_size)

    @property
    def intrinsic(self) -> range:
        """Indices of the intrinsic block (identity: shape and texture)."""
        return range(len(self.latent_names), self.latent_dim)

    def channels(self, base: tuple[int, ...], width: float | None = None) -> tuple[int, ...]:
        w = self.width if width is None else width
        return tuple(max(1, round(c * w)) for c in base)

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        """Feature maps of the encoder's first two convs (the third: ``code_channels``)."""
        return self.channels(ENCODER_CHANNELS[:-1])

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        """Feature maps of the decoder's first three convs (the last maps to the image)."""
        return self.channels(DECODER_CHANNELS, self.decoder_width)

    @property
    def code_channels(self) -> int:
        """Feature maps of the encoder's last conv and of the decoder's reshape."""
        w = self.width if self.code_width is None else self.code_width
        return max(1, round(ENCODER_CHANNELS[-1] * w))

    def to_dict(self) -> dict:
        return asdict(self)


def encoder_output_size(image_size: int) -> int:
    """Spatial size after the three [conv 5x5 valid, max-pool 2] stages."""
    s = image_size
    for _ in ENCODER_CHANNELS:
        s = (s - ENCODER_KERNEL + 1) // 2
    if s < 1:
        raise DcignError(f"image size {image_size} is too small for the encoder "
                         f"(three 5x5 convs and 2x pools need at least 36 pixels)")
    return s


def decoder_plan(image_size: int) -> tuple[int, int]:
    """(s0, padding) such that 4 x [upsample x2, conv 7x7 pad p] maps s0 to ``image_size``."""
    for pad in (0, 3, 1, 2):
        shrink = 15 * (DECODER_KERNEL - 1 - 2 * pad)
        if (image_size + shrink) % 16 == 0 and (image_size + shrink) // 16 >= 1:
            s0 = (image_size + shrink) // 16
            if s0 * 2 - (DECODER_KERNEL - 1 - 2 * pad) >= 1:
                return s0, pad
    raise DcignError(f"no decoder of 4 x [upsample x2, conv 7x7] produces exactly {image_size} "
                     f"pixels; use 64, 150 or another size with an exact plan")


class DCIGN(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) of the DC-IGN (paper Fig. 1)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        (c1, c2), c3 = config.encoder_channels, config.code_channels
        d1, d2, d3 = config.decoder_channels
        k = ENCODER_KERNEL
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, k), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, k), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c2, c3, k), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
        )
        n_features = c3 * encoder_output_size(config.image_size) ** 2
        self.mu = nn.Linear(n_features, config.latent_dim)
        self.logvar = nn.Linear(n_features, config.latent_dim)

        self.s0, pad = decoder_plan(config.image_size)
        self.decoder_in = nn.Linear(config.latent_dim, c3 * self.s0 ** 2)
        k, up = DECODER_KERNEL, nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.Sequential(
            up, nn.Conv2d(c3, d1, k, padding=pad), nn.ReLU(),
            up, nn.Conv2d(d1, d2, k, padding=pad), nn.ReLU(),
            up, nn.Conv2d(d2, d3, k, padding=pad), nn.ReLU(),
            up, nn.Conv2d(d3, 1, k, padding=pad),  # logits; sigmoid in decode() / the loss
        )
        self._decoder_channels = c3

    #: prefixes of q(z|x)'s weights in the state dict; the rest is the decoder p(x|z)
    ENCODER_KEYS = ("encoder.", "mu.", "logvar.")

    def encoder_modules(self) -> tuple[nn.Module, ...]:
        """The modules of q(z|x) (their weights: ``ENCODER_KEYS``)."""
        return self.encoder, self.mu, self.logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 1, S, S) in [0, 1] -> (mu, logvar), each (N, latent_dim), float32."""
        h = self.encoder(x)
        return self.mu(h).float(), self.logvar(h).float()

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.decoder_in(z))
        h = h.view(len(z), self._decoder_channels, self.s0, self.s0)
        return self.decoder(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, latent_dim) -> images (N, 1, S, S) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None, clamp=None):
        """One VAE pass: returns (logits, mu, logvar).

        ``clamp`` is an optional ``(mu, logvar) -> (mu, logvar)`` applied before sampling (the
        monovariant clamp, :class:`trainer.monovariant.MonovariantClamp`); ``eps`` is the N(0, I)
        noise of the reparametrisation (drawn here if None), so the caller controls the RNG.
        The returned mu and logvar are the clamped ones, on which the KL term is computed.
        """
        mu, logvar = self.encode(x)
        if clamp is not None:
            mu, logvar = clamp(mu, logvar)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode_logits(z), mu, logvar


@torch.no_grad()
def widen_decoder(old: DCIGN, new: DCIGN, generator: torch.Generator,
                  noise: float = 0.01) -> None:
    """Start ``new`` as ``old`` with a wider decoder (Net2WiderNet, Chen et al. 2016).

    Copies the encoder and the decoder's linear layer; each of the decoder's three hidden convs
    keeps its old maps and adds copies of randomly chosen ones, and the next conv's weights on a
    copied map are split between the copies in random proportions, so the network computes the
    same function. Gaussian noise of ``noise`` times each widened conv's weight sd is added to
    the copies' incoming weights (copies with identical weights would stay identical under Adam).
    """
    def convs(model: DCIGN) -> list[nn.Conv2d]:
        return [m for m in model.decoder if isinstance(m, nn.Conv2d)]
    (a, b) = old.config, new.config
    if any(getattr(a, k) != getattr(b, k) for k in ENCODER_SHAPE):
        raise DcignError("widen_decoder: the encoder and code of both models must have one shape")
    if any(m < n for m, n in zip(b.decoder_channels, a.decoder_channels)):
        raise DcignError(f"widen_decoder: cannot narrow the decoder's maps from "
                         f"{a.decoder_channels} to {b.decoder_channels}")
    keep = {k: v for k, v in old.state_dict().items() if not k.startswith("decoder.")}
    new.load_state_dict({**new.state_dict(), **keep})
    src, dst = convs(old), convs(new)
    incoming_from = torch.arange(src[0].in_channels)  # which old map feeds each new input map
    share = torch.ones(src[0].in_channels)            # and with what share of its weights
    for i, (s, d) in enumerate(zip(src, dst)):
        n, m = s.out_channels, d.out_channels
        out_from = torch.cat([torch.arange(n), torch.randint(n, (m - n,), generator=generator)])
        w = s.weight[:, incoming_from] * share.view(1, -1, 1, 1)
        d.weight.copy_(w[out_from] if i < len(src) - 1 else w)
        d.bias.copy_(s.bias[out_from] if i < len(src) - 1 else s.bias)
        if i == len(src) - 1:
            break
        if m > n:
            d.weight[n:] += noise * s.weight.std() * torch.randn(
                d.weight[n:].shape, generator=generator)
        # random shares of each old map among its copies, summing to one
        u = torch.rand(m, generator=generator) + 0.5
        totals = torch.zeros(n).index_add_(0, out_from, u)
        incoming_from, share = out_from, u / totals[out_from]


def neg_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image (neg_elbo, bce, kl), each of shape (N,).

    bce: binary cross-entropy summed over pixels (a Bernoulli likelihood on grey levels in [0, 1],
    as the original); kl: KL(N(mu, exp(logvar)) || N(0, I)) summed over latents. The negative ELBO
    is their sum; a beta-VAE optimises bce + beta * kl but the bound logged is always beta = 1.
    """
    bce = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    bce = bce.flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return bce + kl, bce, kl


def count_flops(config: ModelConfig) -> int:
    """Forward multiply-adds x 2 per image for the convs and linears (what dominates)."""
    model = DCIGN(config)
    macs = 0
    s = config.image_size
    for m in model.encoder:
        if isinstance(m, nn.Conv2d):
            s = s - m.kernel_size[0] + 1
            macs += s * s * m.in_channels * m.out_channels * m.kernel_size[0] ** 2
        elif isinstance(m, nn.MaxPool2d):
            s //= 2
    macs += 2 * model.mu.in_features * model.mu.out_features
    macs += model.decoder_in.in_features * model.decoder_in.out_features
    s = model.s0
    for m in model.decoder:
        if isinstance(m, nn.Upsample):
            s *= 2
        elif isinstance(m, nn.Conv2d):
            s = s - m.kernel_size[0] + 1 + 2 * m.padding[0]
            macs += s * s * m.in_channels * m.out_channels * m.kernel_size[0] ** 2
    assert s == config.image_size
    return 2 * macs


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # quick look: parameter and FLOP counts at both sizes
    for size in (64, 150):
        cfg = ModelConfig(image_size=size)
        print(f"{size}x{size}: {n_params(DCIGN(cfg)):,} parameters, "
              f"{count_flops(cfg) / 1e9:.2f} GFLOP forward, "
              f"{3 * count_flops(cfg) / 1e9:.1f} GFLOP forward+backward per image")
