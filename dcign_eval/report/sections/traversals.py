"""Section 3, latent traversals and re-rendering fidelity: for each angle, every decoding model's
traversal side by side under one slider (its named neuron, or its latent most correlated with the
angle), then how well each re-renders held-out faces at new angles.

Every model sweeps the same angles (:func:`dcign_eval.traverse.angle_sweep`), so frame k of each
stands for the same angle and one slider moves them together. The frames the movies are made of
are also written one PNG a frame, for the page's slider to show; the GIF and MP4 are downloads.

The fidelity summary shows each score value ± half its 95% bootstrap interval over the held-out
identities, and each model against the first by the paired bootstrap of the per-identity
differences (:func:`dcign_eval.traverse.fidelity_summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from dcign_eval import traverse as tv
from dcign_eval.protocol import Model
from dcign_eval.report.page import Section, figure_link, paired_context, paired_table, table_link
from dcign_eval.report.sections.reconstructions import absent
from dcign_eval.report.settings import ReportSettings

ANGLES = tv.NAMED
#: The fidelity summary's scores: tidy column -> (the page's label, digits, better).
FIDELITY_FIGURES = {"mse": ("re-rendered MSE", 4, "lower"),
                    "recon_mse": ("reconstruction MSE", 4, "lower"),
                    "ssim": ("re-rendered SSIM", 3, "higher"),
                    "recon_ssim": ("reconstruction SSIM", 3, "higher")}


def angle_label(factor: str, degrees: float) -> str:
    """What the slider's label says a frame stands for, e.g. ``azimuth +45°``; the light's angle
    says which side it comes from (positive: the image's right)."""
    whole = int(round(degrees))
    text = f"{factor} {whole:+d}°" if whole else f"{factor} 0°"
    if factor == "light":
        text += f" (from {'the front' if not whole else 'the right' if whole > 0 else 'the left'})"
    return text


def section(models: Sequence[Model], settings: ReportSettings, root: Path, cache_dir: Path,
            seed: int = 0) -> Section:
    """Movies and frames are written under ``root/traverse``; the fidelity table and plot are
    returned (``seed``: the fidelity bootstrap's resamples, ``settings.recognition_resamples``)."""
    decoding = [m for m in models if m.has_decode]
    context = {"traversals": [], "fidelity": None,
               "traversals_absent": absent(models, "traversals or re-rendering")}
    if not decoding:
        return Section(context)
    spec = tv.CalibrationSpec(n_identities=settings.calibration_identities)
    calibrations = {m.name: tv.calibrate(m, spec, cache_dir=cache_dir) for m in decoding}
    sources = tv.face_sources(n_faces=settings.traverse_faces)
    images = {size: tv.render_sources(sources, size)
              for size in sorted({int(m.image_size) for m in decoding})}
    for factor in ANGLES:
        cards = []
        for k, m in enumerate(decoding):
            calibration = calibrations[m.name]
            [neuron] = tv.resolve_neuron(m, factor, calibration)
            values, degrees = tv.angle_sweep(calibration, factor, settings.traverse_frames)
            t = tv.traverse(m, images[int(m.image_size)], neuron, values, degrees, sources)
            stem = f"{k + 1}-{tv.model_stem(m.name)}-{factor}"
            paths = tv.write_traversal(t, root / "traverse", stem, settings.fps)
            faces = tv.face_frames(t)
            frames = tv.write_frames(root / "traverse" / stem, faces)
            note = neuron.note
            if calibration.factors[factor].flat:
                note += (f"; it does not change with {factor} on the calibration grid, so every "
                         f"frame decodes the same value")
            srcs = [str(p.relative_to(root)) for p in frames]
            cards.append({"model": m.name, "latent": neuron.index, "note": note,
                          "sweep": tv.TraversalFiles(neuron, values, degrees, paths).describe(),
                          "frames": srcs, "width": faces.shape[2], "height": faces.shape[1],
                          "latent_values": [f"z{neuron.index} = {v:+.2f}" for v in values],
                          **{kind: str(p.relative_to(root)) for kind, p in paths.items()}})
        context["traversals"].append({
            "factor": factor, "fps": settings.fps, "frames": settings.traverse_frames,
            "angles": [angle_label(factor, d) for d in degrees], "models": cards})
    by_identity = pd.concat([tv.rerender_fidelity(m, calibrations[m.name], model_name=m.name,
                                                  n_identities=settings.fidelity_identities,
                                                  by_identity=True)
                             for m in decoding], ignore_index=True)
    fidelity = tv.fidelity_by_target(by_identity)
    summary = tv.fidelity_summary(by_identity, settings.recognition_resamples, seed)
    context["fidelity"] = {"src": figure_link("rerender_fidelity"),
                           "table": paired_table(summary, FIDELITY_FIGURES,
                                                 {"model": "model", "neuron": "neuron"}),
                           "csv": table_link("rerender_fidelity"),
                           "summary_csv": table_link("rerender_fidelity_summary"),
                           "identities": settings.fidelity_identities,
                           **paired_context(decoding, settings.recognition_resamples)}
    return Section(context, tables={"rerender_fidelity": fidelity,
                                    "rerender_fidelity_summary": summary},
                   figures={"rerender_fidelity": tv.plot_fidelity(fidelity)})
