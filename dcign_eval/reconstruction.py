"""Reconstructions of held-out faces: each model encodes faces of identities never seen in
training (to its code, the latent means for a VAE) and decodes them; MSE and SSIM against the true
renders (:mod:`dcign_eval.imaging`). Each face is a distinct held-out identity, so the face is the
unit of the bootstrap behind every mean's 95% interval, and every model is scored on the same faces,
so two models are compared by the paired bootstrap of their per-face differences
(:func:`dcign_eval.intervals.paired_means`).

The report's reconstruction sheet and lineup (:mod:`dcign_eval.lineup`) and the scripts that score
checkpoints all draw their faces from :func:`held_out_faces`, so one seed gives the same faces
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from dcign_eval.imaging import mse, ssim
from dcign_eval.intervals import RESAMPLES, paired_means
from dcign_eval.protocol import as_model
from trainer.errors import DcignError
from trainer.faces import FACTOR_RANGES, TEST_IDENTITY_OFFSET, render_faces

#: held-out identities of the reconstructions: after the calibration (0..) and fidelity (100..)
#: faces of :mod:`dcign_eval.traverse`, so no analysis reuses another's faces.
RECONSTRUCTION_FIRST_IDENTITY = 300


def held_out_faces(n: int, random_state: int = 0) -> pd.DataFrame:
    """Factors of ``n`` held-out faces at random angles (identities never seen in training)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 64:
        raise DcignError(f"the number of faces must be in [1, 64], got {n!r}")
    rng = np.random.default_rng([int(random_state), 31])
    first = TEST_IDENTITY_OFFSET + RECONSTRUCTION_FIRST_IDENTITY
    frame = pd.DataFrame({"identity": first + rng.choice(700, n, replace=False)})
    for name, (lo, hi) in FACTOR_RANGES.items():
        frame[name] = np.round(rng.uniform(lo, hi, n) / 5) * 5  # 5-degree steps: readable labels
    return frame


@dataclass
class Reconstructions:
    """Held-out faces and their reconstructions (encode to mu, decode).

    Attributes:
        faces: identity, azimuth, elevation, light and, per model label, ``mse:<label>`` and
            ``ssim:<label>`` of its reconstruction (images in [0, 1]).
        truth: (N, S, S) float32 true renders in [0, 1].
        decoded: model label -> (N, S, S) float32 reconstructions.
    """

    faces: pd.DataFrame
    truth: np.ndarray
    decoded: dict[str, np.ndarray]


def reconstructions(models: Sequence, faces: pd.DataFrame) -> Reconstructions:
    """Render ``faces`` (held-out), encode and decode them with every model, score MSE / SSIM.

    Args:
        models: models of the protocol that decode (:class:`dcign_eval.protocol.Model`, or any
            object with encode, decode and image_size), keyed in the result by their names.
        faces: identity, azimuth, elevation, light (degrees), as :func:`held_out_faces`.
    Returns:
        :class:`Reconstructions`; a model of another image size than the first is compared with
        the faces rendered at its size, and shown at the first model's size.
    """
    models = [as_model(m) for m in models]
    if not models:
        raise DcignError("reconstructions need at least one model")
    lacking = [m.name for m in models if not m.has_decode]
    if lacking:
        raise DcignError(f"{', '.join(lacking)} cannot decode: no reconstructions")
    renders = {}

    def render(size: int) -> np.ndarray:
        if size not in renders:
            renders[size] = render_faces(faces["identity"].to_numpy(),
                                         faces["azimuth"].to_numpy(),
                                         faces["elevation"].to_numpy(), faces["light"].to_numpy(),
                                         size=size)
        return renders[size]

    size = int(models[0].image_size)
    truth = render(size).astype(np.float32) / 255
    frame = faces.reset_index(drop=True).copy()
    decoded = {}
    for m in models:
        images = render(int(m.image_size))
        rec = np.asarray(m.decode(m.encode(images)), np.float32)
        own = images.astype(np.float32) / 255
        frame[f"mse:{m.name}"] = mse(rec, own)
        frame[f"ssim:{m.name}"] = ssim(rec, own)
        decoded[m.name] = rec if m.image_size == size else resize(rec, size)
    return Reconstructions(frame, truth, decoded)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) float images in [0, 1] resampled to (N, size, size) (bilinear), for showing."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize(
        (size, size), Image.BILINEAR)) for x in images]).clip(0, 1).astype(np.float32)


def reconstruction_table(rec: Reconstructions, resamples: int = RESAMPLES,
                         random_state=0) -> pd.DataFrame:
    """Mean reconstruction MSE and SSIM per model over the faces, each with its 95% bootstrap
    interval over the faces, and each model's paired difference from the first model's (the
    per-face differences on the same resamples; significant when its interval excludes 0).

    Args:
        rec: :func:`reconstructions`' result.
        resamples: bootstrap resamples of the faces (0: NaN ends).
        random_state: seed of the resamples.

    Returns:
        one row per model: model, faces, mse, mse_low, mse_high, ssim, ssim_low, ssim_high,
        mse_difference, mse_difference_low, mse_difference_high, ssim_difference,
        ssim_difference_low, ssim_difference_high (this model minus the first; NaN for the
        first), resamples.
    """
    per_face = {label: pd.DataFrame({"mse": rec.faces[f"mse:{label}"].to_numpy(),
                                     "ssim": rec.faces[f"ssim:{label}"].to_numpy()})
                for label in rec.decoded}
    table = paired_means(per_face, resamples, random_state)
    table.insert(1, "faces", len(rec.faces))
    return table


def plot_reconstructions(rec: Reconstructions):
    """Columns: faces; rows: the true render, then each model's reconstruction (with its MSE)."""
    from matplotlib.figure import Figure

    n = len(rec.faces)
    rows = [("true render", rec.truth)] + list(rec.decoded.items())
    fig = Figure(figsize=(1.25 * n + 1.2, 1.45 * len(rows) + 0.2), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                f = rec.faces.iloc[c]
                ax.set_title(f"az {f['azimuth']:+.0f}  el {f['elevation']:+.0f}\n"
                             f"light {f['light']:+.0f}", fontsize=7)
            else:
                ax.set_xlabel(f"MSE {rec.faces[f'mse:{name}'].iloc[c]:.4f}", fontsize=7,
                              labelpad=1)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig
