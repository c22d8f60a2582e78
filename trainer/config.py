"""Every option of a training run: :class:`TrainConfig`, grouped, each field with its --help and
the modes in which it means something.

``python -m trainer`` makes a flag of each field, recipes (:mod:`trainer.recipe`) set them by name,
and a run saves them in its ``config.json`` (the shape under "model", the rest under "train").
Options another mode would ignore are errors, not silently dropped; old names (:data:`RENAMED`)
and removed options (:data:`REMOVED`) still read from saved configs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from trainer import checkpoint as ckpt_io
from trainer.errors import CheckpointError, DcignError
from trainer.model import ModelConfig
from trainer.monovariant import DEFAULT_RATIO, INVARIANCE_SCALES, batch_type_probabilities

MODES = ("monovariant", "vae")
NAMED_LATENTS = ("first", "spread", "order")
LR_SCHEDULES = ("constant", "cosine")


def _knob(default, help: str, modes: tuple[str, ...] = MODES):
    """A TrainConfig field: its default, its --help, and the modes in which it means something
    (set to anything but its default in another mode, it is an error)."""
    return field(default=default, metadata={"help": help, "modes": modes})


MONOVARIANT = ("monovariant",)
#: old names of config keys, still read from saved configs, --config files and recipes
RENAMED = {"beta": "kl_weight"}
#: the options that are the network's shape: a run saves them once, as its model config
#: (config.json's "model"), not as a copy among the training options
SHAPE_OPTIONS = ("latent_dim", "width", "code_width", "decoder_width")
#: options no recipe uses any more, read from old configs only at the value that changed nothing
REMOVED = {"decoder_hidden": 0, "decoder_noise": 1.0, "clamp_reference": "mean"}


@dataclass
class TrainConfig:
    """Every knob of a training run. Stored in the run's ``config.json`` under ``train``."""

    # -- the run: where, how long, and what it starts from
    data: str = _knob("", "monovariant data directory holding train/ and test/")
    out: str = _knob("", "run directory: checkpoints, config.json, history.csv")
    mode: str = _knob("monovariant", "'monovariant' (DC-IGN) or 'vae' (entangled baseline)")
    steps: int = _knob(100_000, "total optimiser steps; a resumed run continues up to this (0: "
                                "write the initial weights as the run)")
    seed: int = _knob(0, "seed for initialisation, batches and noise")
    init_from: str = _knob("", "run directory whose weights start this run (pretrain, then "
                                "monovariant)")
    resume: bool = _knob(False, "continue the run in --out from its last checkpoint")
    checkpoint_every: int = _knob(1000, "steps between checkpoints (and one at the end)")
    val_every: int = _knob(1000, "steps between validations on the test split (0: never)")
    val_batches: int = _knob(20, "test batches per validation")

    # -- the network's shape: saved once, as the run's model config (config.json's "model"), and
    # translated into it by model_config() alone
    latent_dim: int = _knob(200, "latents: azimuth, elevation, light, then intrinsic")
    width: float = _knob(1.0, "channel multiplier; 1 is the paper's 96-48-24 encoder")
    code_width: float = _knob(0.0, "channel multiplier of the 24-channel maps next to the code "
                                   "(encoder's last conv, decoder's reshape); 0: --width")
    decoder_width: float = _knob(0.0, "channel multiplier of the decoder's 48-96-96 maps; "
                                      "0: --width. With --freeze-encoder and an --init-from "
                                      "of another decoder width, the decoder starts afresh")
    widen_decoder: bool = _knob(False, "with --init-from a run of a narrower decoder: start "
                                       "from its decoder grown to --decoder-width so that it "
                                       "computes the same function (Net2WiderNet), not afresh")

    # -- the objective and the optimiser
    batch_size: int = _knob(20, "images per step and replica; monovariant: the data's batch size")
    batches_per_step: int = _knob(1, "batches in one optimiser step: K x batch_size images, each "
                                     "monovariant batch of 20 with its own type, clamped "
                                     "against its own mean (the sum of K one-batch gradients; "
                                     "keeps a GPU busy)")
    lr: float = _knob(5e-4, "Adam learning rate")
    lr_schedule: str = _knob("constant", "'constant', or 'cosine': the learning rate falls from "
                                         "--lr at the first step to 0 after --steps along half "
                                         "a cosine (a resumed run keeps its --steps)")
    betas: tuple = _knob((0.9, 0.99), "Adam betas (the original rmsprop.lua's decay rates)")
    eps: float = _knob(1e-8, "Adam epsilon")
    kl_weight: float = _knob(1.0, "weight of the KL term (a beta-VAE's beta); 1 is the plain "
                                  "ELBO (formerly --beta)")
    freeze_encoder: bool = _knob(False, "train the decoder alone: the encoder, and so what every "
                                        "latent measures, stays as --init-from left it (its "
                                        "latent names are kept, whatever the mode)")

    # -- monovariant training (the paper's section 3.1): meaningless in vae mode
    ratio: tuple = _knob(DEFAULT_RATIO, "batch-type ratio azimuth elevation light intrinsic",
                         MONOVARIANT)
    invariance_strength: float = _knob(0.01, "scale of the gradient pulling inactive latents "
                                             "toward the batch mean", MONOVARIANT)
    invariance_scale: str = _knob("absolute", "'absolute': the pull is strength * (z - mean) "
                                              "(paper); 'relative': the penalty is each "
                                              "latent's spread when clamped over its spread when "
                                              "active (running estimates), so shrinking a "
                                              "latent does not lower it; 'split': absolute "
                                              "on the named latents, relative on the "
                                              "intrinsic block", MONOVARIANT)
    intrinsic_strength: float = _knob(0.0, "the invariance strength of the intrinsic block's "
                                           "latents (0: --invariance-strength, as the named "
                                           "ones)", MONOVARIANT)
    named_latents: str = _knob("first", "monovariant from an --init-from VAE: which of its "
                                        "latents become azimuth, elevation and light. 'first': "
                                        "latents 0, 1, 2, whatever the pretraining put there; "
                                        "'spread': each the latent that varies most on its own "
                                        "batch type against the others; 'order': each the "
                                        "latent that best orders its factor on its batch type "
                                        "(Spearman, the data's factor values). The code is "
                                        "renumbered: the same function", MONOVARIANT)
    unclamped_share: float = _knob(0.0, "monovariant: share of steps on a random batch of the "
                                        "whole set with nothing clamped, as the baseline trains, "
                                        "so every latent keeps feeding the decoder (not in the "
                                        "paper)", MONOVARIANT)

    # -- how it runs, not what it learns
    device: str = _knob("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    compile: bool = _knob(False, "torch.compile the model")
    verify_data: bool = _knob(True, "check the data sets' sha256 checksums on loading")
    quiet: bool = _knob(False, "no progress bar or progress lines")

    @classmethod
    def from_dict(cls, d: dict, source: str = "the config", error=DcignError) -> "TrainConfig":
        """Build from a dict (JSON lists become tuples); unknown keys raise ``error``.

        Old key names (:data:`RENAMED`, e.g. a saved config's ``beta``) are read as the new ones.
        """
        d = renamed_keys(d, source, error)
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise error(f"unknown config key {unknown[0]!r} in {source} "
                        f"(known: {', '.join(known)})")
        ckpt_io.check_field_types(cls, d, source, error)
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: dict, source: str = "the config",
                        error=CheckpointError) -> "TrainConfig":
        """A run's options from its whole ``config.json``: the "train" section, with the shape
        options (:data:`SHAPE_OPTIONS`) read from the model config ("model"). Runs saved before
        the shape lived there alone hold a copy in "train" too; the model config wins."""
        model = config.get("model", {})
        shape = {"latent_dim": model.get("latent_dim"), "width": model.get("width"),
                 "code_width": model.get("code_width") or 0.0,
                 "decoder_width": model.get("decoder_width") or 0.0}
        return cls.from_dict({**config["train"], **{k: v for k, v in shape.items()
                                                   if v is not None}}, source, error)

    def model_config(self, image_size: int, latent_names: dict) -> ModelConfig:
        """The network these options ask for (on images of ``image_size``, with those named
        latents): the one translation of the shape options into the model's config."""
        return ModelConfig(image_size=image_size, latent_dim=self.latent_dim, width=self.width,
                           code_width=self.code_width or None,
                           decoder_width=self.decoder_width or None,
                           latent_names=dict(latent_names))

    def validate(self) -> None:
        def bad(msg):
            raise DcignError(msg)
        if not self.data:
            bad("no data directory given (--data DIR, holding train/ and test/)")
        if not self.out:
            bad("no run directory given (--out DIR)")
        if self.mode not in MODES:
            bad(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.invariance_scale not in INVARIANCE_SCALES:
            bad(f"invariance_scale must be one of {INVARIANCE_SCALES}, "
                f"got {self.invariance_scale!r}")
        if self.steps < 0 or self.batch_size < 2:
            bad(f"need steps >= 0 and batch_size >= 2, got {self.steps} and {self.batch_size}")
        if self.lr_schedule not in LR_SCHEDULES:
            bad(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr <= 0 or self.eps <= 0 or len(self.betas) != 2 \
                or not all(0 <= b < 1 for b in self.betas):
            bad(f"Adam needs lr > 0, eps > 0 and 2 betas in [0, 1), got {self.lr}, {self.eps}, "
                f"{list(self.betas)}")
        if min(self.kl_weight, self.invariance_strength, self.intrinsic_strength, self.code_width,
               self.decoder_width) < 0:
            bad("kl_weight, invariance_strength, intrinsic_strength, code_width and decoder_width "
                "must be >= 0")
        if self.batches_per_step < 1:
            bad(f"batches_per_step must be >= 1, got {self.batches_per_step}")
        if not 0 <= self.unclamped_share <= 1:
            bad(f"unclamped_share must be in [0, 1], got {self.unclamped_share}")
        ignored = ignored_options({f.name: getattr(self, f.name) for f in fields(self)},
                                  self.mode)
        if ignored:
            bad(f"{ignored[0]} means nothing in {self.mode} mode (it applies to "
                f"{' and '.join(mode_of(ignored[0]))} training only); leave it out")
        if self.checkpoint_every < 1 or self.val_every < 0 or self.val_batches < 1:
            bad("need checkpoint_every >= 1, val_every >= 0 and val_batches >= 1")
        if self.freeze_encoder and not (self.init_from or self.resume):
            bad("freeze_encoder needs a trained encoder: give --init-from RUN (or --resume)")
        if self.widen_decoder and not (self.init_from or self.resume):
            bad("widen_decoder needs a run to widen: give --init-from RUN")
        if self.named_latents not in NAMED_LATENTS:
            bad(f"named_latents must be one of {NAMED_LATENTS}, got {self.named_latents!r}")
        if self.named_latents != "first" and (self.mode != "monovariant" or not self.init_from
                                              or self.freeze_encoder):
            bad(f"named_latents {self.named_latents!r} picks the named latents of a monovariant "
                f"run from the entangled code of its --init-from run (and not with "
                f"--freeze-encoder)")
        batch_type_probabilities(self.ratio)


def mode_of(key: str) -> tuple[str, ...]:
    """The modes in which TrainConfig option ``key`` means something."""
    return {f.name: f.metadata["modes"] for f in fields(TrainConfig)}[key]


def ignored_options(options: dict, mode: str) -> list[str]:
    """The keys of ``options`` set to other than their default that ``mode`` would ignore."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    return [k for k, v in options.items()
            if k in defaults and mode not in mode_of(k)
            and (tuple(v) if isinstance(v, list) else v) != defaults[k]]


def renamed_keys(d: dict, source: str = "the config", error=DcignError) -> dict:
    """``d`` with old key names (:data:`RENAMED`) turned into the new ones."""
    out = dict(d)
    for key, value in REMOVED.items():
        if key in out:
            if out[key] != value:
                raise error(f"{source} sets {key} = {out[key]!r}; that option was removed (no "
                            f"recipe used it), only {value!r} still reads")
            del out[key]
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise error(f"{source} sets both {old!r} and its new name {new!r}; keep {new!r}")
            out[new] = out.pop(old)
    return out


# A resumed run keeps these; the others (paths, lengths, intervals, device) may change.
FIXED_ON_RESUME = ("mode", "batch_size", "batches_per_step", "lr", "lr_schedule", "betas", "eps",
                   "kl_weight", "ratio", "invariance_strength", "intrinsic_strength",
                   "invariance_scale", "width",
                   "code_width", "decoder_width", "latent_dim", "freeze_encoder", "unclamped_share",
                   "seed")
