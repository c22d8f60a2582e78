"""``python -m trainer`` / ``torchrun --nproc_per_node N -m trainer``: train a DC-IGN or a baseline.

Every :class:`~trainer.config.TrainConfig` field is a flag (``--batch-size``, ``--kl-weight``,
...). Values come from, in increasing priority: the defaults, the run's saved config (with
``--resume``), a ``--config FILE.json`` of TrainConfig keys, and the flags. ``dcign-eval train``
forwards its arguments here unchanged. ``--recipe FILE --out DIR`` trains a recipe's stages instead
(:mod:`trainer.recipe`). ``--beta`` is the deprecated name of ``--kl-weight``.

Examples::

    python -m trainer --recipe recipes/dcign.toml --out runs/dcign   # every stage of a model
    python -m trainer --data data/mono64 --out runs/dcign64
    python -m trainer --data data/mono64 --out runs/vae64 --mode vae
    python -m trainer --data data/mono64 --out runs/dcign64-pre --init-from runs/vae64
    python -m trainer --out runs/dcign64 --resume --steps 200000
    torchrun --nproc_per_node 8 -m trainer --data data/mono150 --out runs/dcign150
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path

from trainer.errors import ArgumentParser, DcignError

PROG = "python -m trainer"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from trainer.config import INVARIANCE_SCALES, LR_SCHEDULES, MODES, NAMED_LATENTS, TrainConfig
    choices = {"mode": MODES, "invariance_scale": INVARIANCE_SCALES, "lr_schedule": LR_SCHEDULES,
               "named_latents": NAMED_LATENTS}
    p = ArgumentParser(prog=prog, description="Train a DC-IGN (monovariant) or the entangled "
                       "VAE baseline. Values: defaults < the run's saved config (--resume) < "
                       "--config file < flags.",
                argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE.json",
                   help="JSON object of config keys (the flags' names with underscores)")
    for f in fields(TrainConfig):
        flag, default = "--" + f.name.replace("_", "-"), f.default
        help = f"{f.metadata['help']} (default: {default!r})"
        if tuple(f.metadata["modes"]) != MODES:
            help += f" [{' and '.join(f.metadata['modes'])} mode only]"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help)
        elif isinstance(default, tuple):
            p.add_argument(flag, nargs=len(default), type=float, metavar="X", help=help)
        else:  # a fixed set of values is listed in --help, and anything else refused
            p.add_argument(flag, type=type(default), choices=choices.get(f.name), help=help)
    p.add_argument("--beta", type=float, help="deprecated: the old name of --kl-weight")
    p.add_argument("--recipe", metavar="FILE.toml",
                   help="train a recipe's stages instead: --recipe FILE --out DIR "
                        "[--set KEY=VALUE ...] [--plan] (see trainer/recipe.py)")
    return p


def read_config_file(path: str) -> dict:
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DcignError(f"config file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DcignError(f"config file {path} is not valid JSON") from None
    if not isinstance(values, dict):
        raise DcignError(f"config file {path} must hold a JSON object of config keys")
    return values


def config_from_argv(argv: list[str] | None = None, prog: str = PROG):
    """Parse the command line into a TrainConfig (see the module docstring for priorities)."""
    from trainer.checkpoint import read_config
    from trainer.recipe import warn
    from trainer.config import RENAMED, TrainConfig, renamed_keys
    args = vars(build_parser(prog).parse_args(argv))
    values: dict = {}
    config_file = args.pop("config", None)
    from_file = read_config_file(config_file) if config_file else {}
    for old, new in RENAMED.items():
        if old in args:
            warn(f"--{old} is deprecated; use --{new.replace('_', '-')}")
        if old in from_file:
            warn(f"{old!r} in config file {config_file} is deprecated; call it {new!r}")
    args = renamed_keys(args, "the command line")
    from_file = renamed_keys(from_file, f"config file {config_file}")
    TrainConfig.from_dict(from_file, f"config file {config_file}")  # unknown keys fail here
    if args.get("resume", from_file.get("resume", False)):
        out = args.get("out", from_file.get("out"))
        if not out:
            raise DcignError("--resume needs --out RUN_DIR")
        values.update(TrainConfig.from_run_config(read_config(out), f"{out}/config.json")
                      .to_dict())
    values.update(from_file)
    values.update(args)
    return TrainConfig.from_dict(values, "the command line")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Train; returns the exit status (0, or 128 + signal number when interrupted)."""
    from trainer.train import train
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--recipe" or a.startswith("--recipe=") for a in argv):
        from trainer.recipe import main as recipe_main
        return recipe_main(argv, prog)
    result = train(config_from_argv(argv, prog))
    if result.status == "interrupted":
        if result.rank == 0:
            name = signal.Signals(result.signal).name if result.signal else "a signal"
            print(f"interrupted by {name} at step {result.step}; checkpoint written to "
                  f"{result.out}; continue with --out {result.out} --resume", file=sys.stderr)
        return 128 + (result.signal or 0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DcignError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
