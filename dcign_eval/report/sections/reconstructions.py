"""Section 2, reconstructions of held-out faces (one row per model) and their lineup: is each
reconstruction nearest its own identity? Models that cannot decode are named, not shown.

Every figure is shown value ± half its 95% bootstrap interval over the held-out faces (each a
distinct identity); each model after the first is compared with the first by the paired bootstrap
of the per-face differences (:func:`dcign_eval.intervals.paired_means`): significant when the
interval of the mean difference excludes 0."""

from __future__ import annotations

from typing import Sequence

from dcign_eval.lineup import lineup, lineup_table, plot_lineup
from dcign_eval.protocol import Model
from dcign_eval.reconstruction import (held_out_faces, plot_reconstructions, reconstruction_table,
                                       reconstructions)
from dcign_eval.report.page import Section, figure_link, paired_context, paired_table, table_link
from dcign_eval.report.settings import ReportSettings

#: The reconstruction table's figures: tidy column -> (the page's label, digits, better).
RECONSTRUCTION_FIGURES = {"mse": ("MSE", 4, "lower"), "ssim": ("SSIM", 3, "higher")}
#: The lineup table's figures, as :data:`RECONSTRUCTION_FIGURES`; better None: not compared
#: (the nearest other identity is the true renders', the same for every model).
LINEUP_FIGURES = {"identified": ("identified", 3, "higher"),
                  "in_top_5": ("in top 5", 3, "higher"),
                  "mean_rank": ("mean rank", 2, "lower"),
                  "mse_to_own_face": ("MSE to own face", 4, "lower"),
                  "nearest_other": ("nearest other (true renders)", 4, None)}


def absent(models: Sequence[Model], what: str) -> list[str]:
    """One line per model that cannot decode, saying what it lacks."""
    return [f"{m.name} has no decode, so no {what}." for m in models if not m.has_decode]


def section(models: Sequence[Model], settings: ReportSettings, seed: int) -> Section:
    """The reconstruction sheet and the lineup; ``seed`` draws the faces and the bootstrap's
    resamples (``settings.recognition_resamples``)."""
    decoding = [m for m in models if m.has_decode]
    context = {"reconstructions": None, "lineup": None,
               "reconstructions_absent": absent(models, "reconstructions")}
    if not decoding:
        return Section(context)
    resamples = settings.recognition_resamples
    rec = reconstructions(decoding, held_out_faces(settings.reconstruction_faces, seed))
    result = lineup(reconstructions(decoding, held_out_faces(settings.lineup_faces, seed)))
    ranks = result.faces.assign(**{f"rank:{name}": result.ranks(name)
                                   for name in result.distances})
    summary = reconstruction_table(rec, resamples, seed)
    lineup_summary = lineup_table(result, resamples, seed)
    intervals = paired_context(decoding, resamples)
    context["reconstructions"] = {
        "src": figure_link("reconstructions"), "faces": settings.reconstruction_faces,
        "table": paired_table(summary, RECONSTRUCTION_FIGURES, {"model": "model",
                                                                "faces": "faces"}),
        "csv": table_link("reconstructions"), "summary_csv": table_link("reconstructions_summary"),
        **intervals}
    context["lineup"] = {
        "faces": settings.lineup_faces, "src": figure_link("lineup"),
        "table": paired_table(lineup_summary, LINEUP_FIGURES, {"model": "model",
                                                               "lineup": "lineup",
                                                               "chance": "chance"}),
        "csv": table_link("lineup"), "summary_csv": table_link("lineup_summary"), **intervals}
    return Section(context, tables={"reconstructions": rec.faces, "lineup": ranks,
                                    "reconstructions_summary": summary,
                                    "lineup_summary": lineup_summary},
                   figures={"reconstructions": plot_reconstructions(rec),
                            "lineup": plot_lineup(result)})
