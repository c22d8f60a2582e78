"""Section 2, reconstructions of held-out faces (one row per model) and their lineup: is each
reconstruction nearest its own identity? Models that cannot decode are named, not shown."""

from __future__ import annotations

from typing import Sequence

from dcign_eval.lineup import lineup, lineup_table, plot_lineup
from dcign_eval.protocol import Model
from dcign_eval.reconstruction import (held_out_faces, plot_reconstructions, reconstruction_table,
                                       reconstructions)
from dcign_eval.report.page import Section, figure_link, html_table, table_link
from dcign_eval.report.settings import ReportSettings


def absent(models: Sequence[Model], what: str) -> list[str]:
    """One line per model that cannot decode, saying what it lacks."""
    return [f"{m.name} has no decode, so no {what}." for m in models if not m.has_decode]


def section(models: Sequence[Model], settings: ReportSettings, seed: int) -> Section:
    decoding = [m for m in models if m.has_decode]
    context = {"reconstructions": None, "lineup": None,
               "reconstructions_absent": absent(models, "reconstructions")}
    if not decoding:
        return Section(context)
    rec = reconstructions(decoding, held_out_faces(settings.reconstruction_faces, seed))
    result = lineup(reconstructions(decoding, held_out_faces(settings.lineup_faces, seed)))
    ranks = result.faces.assign(**{f"rank:{name}": result.ranks(name)
                                   for name in result.distances})
    context["reconstructions"] = {"src": figure_link("reconstructions"),
                                  "table": html_table(reconstruction_table(rec),
                                                      digits={"MSE": 4}),
                                  "csv": table_link("reconstructions")}
    context["lineup"] = {"faces": settings.lineup_faces, "src": figure_link("lineup"),
                         "table": html_table(lineup_table(result),
                                             digits={"MSE to own face": 4,
                                                     "nearest other (true renders)": 4}),
                         "csv": table_link("lineup")}
    return Section(context, tables={"reconstructions": rec.faces, "lineup": ranks},
                   figures={"reconstructions": plot_reconstructions(rec),
                            "lineup": plot_lineup(result)})
