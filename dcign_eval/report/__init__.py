"""The report: one HTML page with everything a researcher would show (``dcign-eval report``).

Kulkarni et al., "Deep Convolutional Inverse Graphics Network", NIPS 2015,
https://arxiv.org/abs/1503.03167. The page compares 1 to 8 models side by side (any model of the
protocol, :mod:`dcign_eval.protocol`; the first is the one the page is about): model cards
(config, training curve, data set), reconstructions of held-out faces and their lineup, a
traversal of each named neuron (or best single latent) beside the true renders, one slider moving
every model's frames on the same angle (GIF and MP4 to download), the re-rendering fidelity,
inferred-versus-true scatter plots of azimuth, elevation and light with Spearman rho, the
disentanglement metrics beside a ceiling (the true factors as a code) and a floor (a random
code), the invariant recognition tables and plots, and provenance.

Layout:

* :mod:`.settings` -- :class:`ReportSettings` and its presets (``quick``: the default, about two
  minutes on a 2-core CPU for two models; ``full``: the other commands' defaults; ``tiny``:
  tests).
* :mod:`.sections` -- one module per section, each returning its tables and figures.
* :mod:`.page` -- tables for the template, figures, rendering (``templates/report.html.j2``,
  autoescape on), the folder swapped into place.
* :mod:`.provenance` -- versions, commit, seeds, hardware, time per section.
* :mod:`.build` -- :func:`build_report` assembles them.
"""

from dcign_eval.report.build import MAX_MODELS, ReportResult, build_report, load_report_models
from dcign_eval.report.page import check_out
from dcign_eval.report.sections.cards import (model_card, model_cards, plot_training_curves,
                                              stage_boundaries, training_curves)
from dcign_eval.report.sections.metrics import METRIC_LABELS, metrics_comparison
from dcign_eval.report.sections.recognition import recognition_accuracy
from dcign_eval.report.sections.scatter import factor_scatter, plot_factor_scatter, scatter_summary
from dcign_eval.report.settings import PRESETS, ReportSettings, preset

__all__ = ["MAX_MODELS", "METRIC_LABELS", "PRESETS", "ReportResult", "ReportSettings",
           "build_report", "check_out", "factor_scatter", "load_report_models",
           "metrics_comparison", "model_card", "model_cards", "plot_factor_scatter",
           "plot_training_curves", "preset", "recognition_accuracy", "scatter_summary",
           "stage_boundaries", "training_curves"]
