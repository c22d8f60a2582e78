"""The page: tables for the template, figures as PNG files, the Jinja2 template rendered with
autoescape on (every string from a config, a path or a table is escaped), and the folder swapped
into place only once complete."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from dcign_eval.intervals import LEVEL, difference_verdict, with_interval
from trainer.errors import DcignError
from trainer.io import atomic_write_bytes, check_writable_dir, owned_temp_dir

REPORT_FORMAT = "dcign-report"
REPORT_VERSION = 3
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE = "report.html.j2"


@dataclass
class Section:
    """What a section returns: the template's values, and the tables and figures the page
    writes beside it (``tables/<name>.csv``, ``figures/<name>.png``; the context links them by
    :func:`table_link` and :func:`figure_link`)."""

    context: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    indexed: tuple[str, ...] = ()  # tables written with their index (field -> value cards)


def table_link(name: str) -> str:
    return f"tables/{name}.csv"


def figure_link(name: str) -> str:
    return f"figures/{name}.png"


def read_json(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        value = json.loads(Path(path).read_text())
        if isinstance(value, dict):
            return value
    return {}


@dataclass
class HtmlTable:
    """A table for the template: caption, column names and rows of display strings."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def html_table(frame: pd.DataFrame, caption: str = "", index: bool = False,
               digits: Mapping[str, int] | None = None) -> HtmlTable:
    """A frame as an :class:`HtmlTable` (numbers formatted; escaping is the template's)."""
    if index:
        frame = frame.reset_index()
    digits = digits or {}
    columns = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    rows = [[_fmt(v, digits.get(str(c), 3)) for c, v in zip(frame.columns, row)]
            for row in frame.itertuples(index=False, name=None)]
    return HtmlTable(columns, rows, caption, numeric)


def paired_table(table: pd.DataFrame, figures: Mapping[str, tuple[str, int, str | None]],
                 plain: Mapping[str, str]) -> HtmlTable:
    """The page's table of a :func:`dcign_eval.intervals.paired_means` frame.

    Args:
        table: one row per model (the first the reference), with ``<figure>``, ``_low``,
            ``_high`` and, for a compared figure, ``<figure>_difference`` and its ends.
        figures: tidy column -> (label, digits, better: ``higher``, ``lower`` or None for a
            figure not compared); each shown value ± half its interval.
        plain: other tidy columns -> label, shown as they are (e.g. the model, counts).

    Returns:
        the plain columns, the figures, then per compared figure ``vs <first model>: <label>``:
        :func:`dcign_eval.intervals.difference_verdict` of the paired difference (blank on the
        rows of the first model, the reference).
    """
    first = table["model"].iloc[0]
    out = pd.DataFrame({label: table[column] for column, label in plain.items()})
    for column, (label, digits, _) in figures.items():
        out[label] = with_interval(table, column, digits)
    for column, (label, _, better) in figures.items():
        if better is not None:
            out[f"vs {first}: {label}"] = [
                "" if pd.isna(value) else difference_verdict(low, high, better)
                for value, low, high in zip(table[f"{column}_difference"],
                                            table[f"{column}_difference_low"],
                                            table[f"{column}_difference_high"])]
    shown = html_table(out)
    figure_labels = {label for label, _, _ in figures.values()}
    shown.numeric = [label in figure_labels or pd.api.types.is_numeric_dtype(out[label])
                     for label in out.columns]
    return shown


def paired_context(models, resamples: int) -> dict:
    """What the template says of a :func:`paired_table`: its resamples, their coverage, the first
    model (the one the others are compared with) and whether there is any other."""
    return {"resamples": resamples, "level": f"{LEVEL:.0%}", "first": models[0].name,
            "compared": len(models) > 1}


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def check_out(out: Path) -> None:
    """Refuse to replace a directory that is not a report: only our own folders are swapped;
    and fail now, before the work, when the folder that receives it cannot be written."""
    if out.exists():
        if not out.is_dir():
            raise DcignError(f"{out} exists and is not a directory; choose another --out")
        marker = read_json(out / "report.json")
        if any(out.iterdir()) and marker.get("format") != REPORT_FORMAT:
            raise DcignError(f"{out} exists and does not hold a dcign-eval report (no "
                             f"report.json); choose an empty or new --out")
    check_writable_dir(out.parent, "--out's folder")


def swap_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``: renames, so the old report stays until the new one is
    complete."""
    old = None
    if out.exists():
        old = owned_temp_dir(out.parent, out.name, tag="old-")
        os.rename(out, old)  # onto the empty folder
    try:
        os.rename(staging, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def render_page(context: dict) -> str:
    """The page: ``templates/report.html.j2`` with autoescape (every value is escaped)."""
    return _environment().get_template(TEMPLATE).render(**context)


def page_links(html: str) -> list[str]:
    """The files a page refers to: every src / href that is not a URL or an anchor, and every
    frame a traversal's slider can show (its img's ``data-frames``, a JSON list)."""
    import html as html_lib
    import re

    links = [link for link in map(html_lib.unescape,
                                  re.findall(r'(?:src|href)="([^"#][^"]*)"', html))
             if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I)]
    for frames in re.findall(r"data-frames='([^']*)'", html):
        links += json.loads(html_lib.unescape(frames))
    return links


def check_links(folder: Path, html: str) -> None:
    """Every file the page refers to (:func:`page_links`) is in the folder."""
    for link in page_links(html):
        if not (folder / link).is_file():
            raise RuntimeError(f"the report links to {link}, which was not written")


def display_path(path) -> str:
    """A path as the page shows it: the home directory as ~, so a shared report names no
    machine's directories."""
    path = Path(path)
    try:
        return str(Path("~") / path.expanduser().resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)
