"""Section 3, latent traversals and re-rendering fidelity: for each angle, every decoding model's
movie side by side (its named neuron, or its latent most correlated with the angle), then how well
each re-renders held-out faces at new angles."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from dcign_eval import traverse as tv
from dcign_eval.protocol import Model
from dcign_eval.report.page import Section, figure_link, html_table, table_link
from dcign_eval.report.sections.reconstructions import absent
from dcign_eval.report.settings import ReportSettings

ANGLES = tv.NAMED


def section(models: Sequence[Model], settings: ReportSettings, root: Path, cache_dir: Path
            ) -> Section:
    """Movies are written under ``root/traverse``; the fidelity table and plot are returned."""
    decoding = [m for m in models if m.has_decode]
    context = {"movies": {name: [] for name in ANGLES}, "fidelity": None,
               "traversals_absent": absent(models, "traversals or re-rendering")}
    if not decoding:
        return Section(context)
    spec = tv.CalibrationSpec(n_identities=settings.calibration_identities)
    calibrations = {m.name: tv.calibrate(m, spec, cache_dir=cache_dir) for m in decoding}
    for k, m in enumerate(decoding):
        for r in tv.traverse_to_files(m, "all", out_dir=root / "traverse",
                                      stem=f"{k + 1}-{tv.model_stem(m.name)}",
                                      faces=settings.traverse_faces,
                                      frames=settings.traverse_frames, fps=settings.fps,
                                      calibration=calibrations[m.name]):
            context["movies"][r.neuron.label].append(
                {"model": m.name, "neuron": r.neuron.label, "latent": r.neuron.index,
                 "note": r.neuron.note, "sweep": r.describe(),
                 **{kind: str(p.relative_to(root)) for kind, p in r.paths.items()}})
    fidelity = pd.concat([tv.rerender_fidelity(m, calibrations[m.name], model_name=m.name,
                                               n_identities=settings.fidelity_identities)
                          for m in decoding], ignore_index=True)
    summary = (fidelity.groupby(["model", "neuron"], sort=False)
               [["mse", "recon_mse", "ssim", "recon_ssim"]].mean().reset_index()
               .rename(columns={"mse": "re-rendered MSE", "recon_mse": "reconstruction MSE",
                                "ssim": "re-rendered SSIM", "recon_ssim": "reconstruction SSIM"}))
    context["fidelity"] = {"src": figure_link("rerender_fidelity"),
                           "table": html_table(summary, digits={"re-rendered MSE": 4,
                                                                "reconstruction MSE": 4}),
                           "csv": table_link("rerender_fidelity"),
                           "identities": settings.fidelity_identities}
    return Section(context, tables={"rerender_fidelity": fidelity},
                   figures={"rerender_fidelity": tv.plot_fidelity(fidelity)})
