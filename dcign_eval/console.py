"""Terminal helpers shared by the commands: rich progress bars and atomic image writes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Iterator

import imageio.v3 as iio
import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from trainer.errors import DcignError
from trainer.io import atomic_write_bytes

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields ``advance(n)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 image atomically; DcignError if the place cannot be written."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DcignError(f"{path}: the preview must be a .png file")
    buf = io.BytesIO()
    iio.imwrite(buf, image, extension=".png")
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise DcignError(f"cannot write {path}: {e.strerror}") from None
    return path
