"""The ``dcign-eval`` command line. This module only wires: parse, call the library, print.

Every command's docstring is its --help. Bad input raises :class:`trainer.errors.DcignError`; it is
printed as one ``error: ...`` line and the process exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from trainer.errors import DcignError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate DC-IGN models on a rendered face world.")
render_app = typer.Typer(no_args_is_help=True, help="Render face-world data sets.")
app.add_typer(render_app, name="render")


def _parse_fixed(items: list[str]) -> dict[str, float]:
    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise DcignError(f"--fix takes FACTOR=DEGREES (e.g. light=0), got {item!r}")
    return fixed


@render_app.command("grid")
def render_grid_cmd(
    out: Path = typer.Option(Path("data/grid"), "--out", help="Directory of the data set."),
    identities: int = typer.Option(10, min=1, help="Number of identities."),
    split: str = typer.Option("test", help="Identities from the 'train' or held-out 'test' split."),
    azimuth_step: float = typer.Option(10.0, help="Azimuth grid step, degrees (range -90..90)."),
    elevation_step: float = typer.Option(10.0, help="Elevation grid step, degrees (-30..30)."),
    light_step: float = typer.Option(20.0, help="Light azimuth grid step, degrees (-80..80)."),
    fix: list[str] = typer.Option([], help="Pin a factor to one value, e.g. --fix light=0."),
    size: int = typer.Option(64, help="Image size in pixels (64 default, 150 the paper's)."),
    force: bool = typer.Option(False, help="Replace an existing set made with other parameters."),
    preview: Optional[Path] = typer.Option(None, help="Also write a contact sheet PNG here."),
) -> None:
    """Render every combination identity x azimuth x elevation x light (for evaluation).

    An existing complete set with the same parameters is reused.
    """
    from dcign_eval.console import progress_bar
    from trainer.faces import GridSpec, render_grid

    spec = GridSpec.make(split, identities, azimuth_step, elevation_step, light_step,
                         _parse_fixed(fix))
    total = int(__import__("numpy").prod(spec.factor_sizes))
    _check_size(size)
    with progress_bar(total, "rendering grid") as advance:
        ds = render_grid(out, spec, size=size, force=force, progress=advance)
    sizes = " x ".join(f"{n} {k}" for n, k in zip(spec.factor_sizes, ds.factors.columns))
    typer.echo(f"{ds.path}: {len(ds)} images ({sizes}), {size}x{size}")
    if preview:
        _preview(preview, spec.identities[:6], size)


@render_app.command("monovariant")
def render_monovariant_cmd(
    out: Path = typer.Option(Path("data/monovariant"), "--out", help="Directory (train/ and test/ inside)."),
    train_batches: int = typer.Option(3000, min=1, help="Training batches per batch type (paper: 3000)."),
    test_batches: int = typer.Option(350, min=1, help="Test batches per batch type (paper: 350)."),
    train_identities: int = typer.Option(500, min=20, help="Training identities."),
    test_identities: int = typer.Option(100, min=20, help="Held-out identities, disjoint from training."),
    step: float = typer.Option(2.5, help="Grid step of the angles, degrees."),
    seed: int = typer.Option(0, help="Seed of the batch draws."),
    size: int = typer.Option(64, help="Image size in pixels (64 default, 150 the paper's)."),
    force: bool = typer.Option(False, help="Replace an existing set made with other parameters."),
    preview: Optional[Path] = typer.Option(None, help="Also write a contact sheet PNG here."),
) -> None:
    """Render monovariant batches of 20 faces (AZ_VARIED, EL_VARIED, LIGHT_VARIED, SHAPE_VARIED).

    In each batch one factor varies and the others are fixed, as in the paper's training data.
    An existing complete set with the same parameters is reused.
    """
    from dcign_eval.console import progress_bar
    from trainer.faces import BATCH_SIZE, BATCH_TYPES, MonovariantSpec, render_monovariant

    _check_size(size)
    spec = MonovariantSpec(batches_per_type={"train": train_batches, "test": test_batches},
                           identities={"train": train_identities, "test": test_identities},
                           step=step, seed=seed)
    total = (train_batches + test_batches) * len(BATCH_TYPES) * BATCH_SIZE
    with progress_bar(total, "rendering monovariant batches") as advance:
        sets = render_monovariant(out, spec, size=size, force=force, progress=advance)
    for split, ds in sets.items():
        typer.echo(f"{ds.path}: {len(ds)} images in {len(ds) // BATCH_SIZE} batches, {size}x{size}")
    if preview:
        _preview(preview, sets["train"].factors["identity"].unique()[:6], size)


def _check_size(size: int) -> None:
    if not 8 <= size <= 1024:
        raise DcignError(f"--size must be in [8, 1024] pixels, got {size}")


def _preview(path: Path, identities, size: int) -> None:
    from dcign_eval.console import write_png
    from trainer.faces import preview_sheet

    write_png(path, preview_sheet(identities, size=size))
    typer.echo(f"preview: {path} (rows: identities; columns: azimuth, elevation, light sweeps)")


def main() -> None:
    """Entry point: run the app, turning DcignError into a one-line message and exit status 2."""
    try:
        app()
    except DcignError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
