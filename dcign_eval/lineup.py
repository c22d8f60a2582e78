"""Are reconstructions recognisable as the same face? A lineup test.

A reconstruction can be blurred and still unmistakably one person's. The lineup asks it of every
held-out face: render *every* identity of the lineup at that face's azimuth, elevation and light,
and rank the candidates by their mean squared distance to the model's reconstruction. The face is
*identified* when its own identity comes first. Pose and light are the same for every candidate,
so only the identity can tell them apart; with n identities, guessing identifies 1/n.

The true renders themselves set the scale: ``nearest other`` is the median, over faces, of the
distance from a face's true render to the nearest *other* identity of the lineup at the same
pose and light: how far apart two identities look, the scale to read a reconstruction's distance
to its own face against.

Every figure of :func:`lineup_table` has a 95% bootstrap interval over the faces (each a distinct
held-out identity; the lineup's candidates stay fixed), and each model after the first its paired
difference from the first on the same resamples (:func:`dcign_eval.intervals.paired_means`).

    rec = reconstructions(models, held_out_faces(64))     # dcign_eval.report
    result = lineup(rec)
    lineup_table(result)                                   # identified, top 5, mean rank, chance
    plot_lineup(result)                                    # faces and their nearest candidates
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dcign_eval.intervals import (LEVEL, RESAMPLES, bootstrap_weights, paired_means,
                                  percentile_interval, weighted_median)
from trainer.errors import DcignError

#: The per-face figures :func:`lineup_table` averages over the faces (each with an interval).
LINEUP_MEASURES = ("identified", "in_top_5", "mean_rank", "mse_to_own_face")


@dataclass
class Lineup:
    """The lineup of a :class:`~dcign_eval.report.Reconstructions`.

    Attributes:
        faces: the held-out faces (identity, azimuth, elevation, light), one per lineup slot.
        candidates: (n, n, S, S) float32 in [0, 1]: ``candidates[i, j]`` is identity j rendered at
            face i's pose and light (so ``candidates[i, i]`` is face i's true render).
        distances: model label -> (n, n) mean squared distance of face i's reconstruction to
            candidate j.
        decoded: model label -> (n, S, S) reconstructions.
    """

    faces: pd.DataFrame
    candidates: np.ndarray
    distances: dict[str, np.ndarray]
    decoded: dict[str, np.ndarray]

    def ranks(self, label: str) -> np.ndarray:
        """Per face, how many other identities are nearer to its reconstruction (0: identified)."""
        d = self.distances[label]
        return (d < np.diag(d)[:, None]).sum(1)

    def nearest_other(self) -> np.ndarray:
        """Per face, the distance of its true render to the nearest other identity."""
        own = self.candidates[np.arange(len(self.faces)), np.arange(len(self.faces))]
        d = ((self.candidates - own[:, None]) ** 2).mean((2, 3))
        np.fill_diagonal(d, np.inf)
        return d.min(1)


def lineup(rec) -> Lineup:
    """Render the lineup of ``rec`` (a :class:`~dcign_eval.report.Reconstructions`) and score it.

    Its faces must be of distinct identities; every one is a candidate for every other.
    """
    from trainer.faces import render_faces

    faces = rec.faces[["identity", "azimuth", "elevation", "light"]].reset_index(drop=True)
    ids = faces["identity"].to_numpy()
    n = len(ids)
    if n < 2 or len(np.unique(ids)) != n:
        raise DcignError(f"a lineup needs at least 2 faces of distinct identities, got {n} faces "
                         f"of {len(np.unique(ids))} identities")
    size = rec.truth.shape[-1]
    pose = {k: np.repeat(faces[k].to_numpy(), n) for k in ("azimuth", "elevation", "light")}
    candidates = render_faces(np.tile(ids, n), pose["azimuth"], pose["elevation"],
                              pose["light"], size=size)
    candidates = candidates.reshape(n, n, size, size).astype(np.float32) / 255
    distances = {label: ((candidates - images[:, None]) ** 2).mean((2, 3))
                 for label, images in rec.decoded.items()}
    return Lineup(faces, candidates, distances, dict(rec.decoded))


def lineup_table(result: Lineup, resamples: int = RESAMPLES, random_state=0,
                 level: float = LEVEL) -> pd.DataFrame:
    """Per model: the share of faces identified (first of n), in the first 5, the mean rank
    (0 best), and the reconstruction's mean distance to its own face beside the true renders'
    median distance to the nearest other identity; every figure with its bootstrap interval over
    the faces, and each model's paired difference from the first model's.

    Args:
        result: :func:`lineup`'s result.
        resamples: bootstrap resamples of the faces (0: NaN ends). The candidates of the lineup
            stay the same: the interval is over which faces are probed.
        random_state: seed of the resamples (the same draws for every model and for the
            nearest-other median).
        level: coverage.

    Returns:
        one row per model: model, lineup (faces), per figure of :data:`LINEUP_MEASURES` its
        value, ``_low`` and ``_high``; chance; nearest_other, nearest_other_low,
        nearest_other_high (the same for every model); per figure ``<figure>_difference`` (this
        model minus the first; NaN for the first), ``_low``, ``_high``; resamples.
    """
    n = len(result.faces)
    per_face = {}
    for label in result.distances:
        ranks = result.ranks(label)
        per_face[label] = pd.DataFrame({
            "identified": (ranks == 0).astype(float), "in_top_5": (ranks < 5).astype(float),
            "mean_rank": ranks.astype(float),
            "mse_to_own_face": np.diag(result.distances[label]).astype(float)})
    table = paired_means(per_face, resamples, random_state, level)
    nearest = result.nearest_other()
    low, high = percentile_interval(
        weighted_median(nearest, bootstrap_weights(n, resamples, random_state)), level)
    at = table.columns.get_loc("mse_to_own_face_high") + 1
    for offset, (name, value) in enumerate((("chance", 1.0 / n),
                                            ("nearest_other", float(np.median(nearest))),
                                            ("nearest_other_low", float(low)),
                                            ("nearest_other_high", float(high)))):
        table.insert(at + offset, name, value)
    table.insert(1, "lineup", n)
    return table


def plot_lineup(result: Lineup, faces: int = 4, nearest: int = 5):
    """Rows: a face per model; columns: its reconstruction, then the lineup's ``nearest``
    candidates, nearest first, the true identity framed in green (a stranger in grey)."""
    from matplotlib.figure import Figure

    faces = min(faces, len(result.faces))
    nearest = min(nearest, len(result.faces))
    rows = [(label, i) for i in range(faces) for label in result.distances]
    fig = Figure(figsize=(1.2 * (nearest + 1) + 0.4, 1.3 * len(rows) + 0.3),
                 layout="constrained")
    axes = fig.subplots(len(rows), nearest + 1, squeeze=False)
    for r, (label, i) in enumerate(rows):
        order = np.argsort(result.distances[label][i], kind="stable")[:nearest]
        panels = [(result.decoded[label][i], f"{label}\nface {i + 1}", None)]
        panels += [(result.candidates[i, j], f"{k + 1}. id {result.faces['identity'][j]}",
                    "tab:green" if j == i else "0.6") for k, j in enumerate(order)]
        for c, (image, title, frame) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
            if frame is not None:
                for spine in ax.spines.values():
                    spine.set_edgecolor(frame)
                    spine.set_linewidth(3 if frame == "tab:green" else 1)
    fig.suptitle("Lineup: each reconstruction and the nearest identities rendered at its pose and "
                 "light (green: the true one)", fontsize=9)
    return fig


# -- the same question put to a person ------------------------------------------------------------

@dataclass
class BlindTest:
    """Rows of a blind lineup: a probe image and ``choices`` candidates in random order.

    Attributes:
        probes: (rows, S, S) in [0, 1]: what the person is shown (a reconstruction, or for the
            control the true face at another pose).
        choices: (rows, k, S, S): candidates rendered at the probe face's pose and light, one of
            them its own identity.
        answers: per row, the 1-based position of the true identity among the choices.
        faces: per row, the index of the face in the lineup.
    """

    probes: np.ndarray
    choices: np.ndarray
    answers: list[int]
    faces: list[int]


def blind_test(result: Lineup, probes: np.ndarray, rows: int = 12, choices: int = 5,
               seed: int = 0) -> BlindTest:
    """Draw ``rows`` faces of the lineup; for each, its true identity and ``choices - 1`` others
    drawn at random (not the nearest: a person is not asked to beat the pixel metric's own
    choice), shuffled. ``probes`` holds one image per lineup face."""
    n = len(result.faces)
    if not 1 <= rows <= n or not 2 <= choices <= n:
        raise DcignError(f"a blind test of {rows} rows and {choices} choices needs 1 <= rows <= "
                         f"{n} and 2 <= choices <= {n} (the lineup's faces)")
    rng = np.random.default_rng([seed, 53])
    faces = rng.choice(n, rows, replace=False)
    picked, answers = [], []
    for i in faces:
        others = rng.choice(np.delete(np.arange(n), i), choices - 1, replace=False)
        order = rng.permutation(np.append(others, i))
        picked.append(result.candidates[i, order])
        answers.append(int(np.flatnonzero(order == i)[0]) + 1)
    return BlindTest(np.asarray(probes)[faces], np.stack(picked), answers,
                     [int(i) for i in faces])


def plot_blind_test(test: BlindTest, first: int = 0, rows: int = 6):
    """Rows ``first`` .. ``first + rows - 1``: the probe, then the numbered choices; no answer."""
    from matplotlib.figure import Figure

    shown = range(first, min(first + rows, len(test.answers)))
    k = test.choices.shape[1]
    fig = Figure(figsize=(1.6 * (k + 1), 1.75 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), k + 1, squeeze=False)
    for r, row in enumerate(shown):
        panels = [(test.probes[row], f"row {row + 1}")]
        panels += [(test.choices[row, c], str(c + 1)) for c in range(k)]
        for ax, (image, title) in zip(axes[r], panels):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    return fig


def guessing_p(right: int, rows: int, choices: int) -> float:
    """One-sided binomial p-value of ``right`` of ``rows`` when every row is a guess among
    ``choices``."""
    from scipy.stats import binomtest

    return float(binomtest(right, rows, 1 / choices, alternative="greater").pvalue)


def score_blind_test(answers: list[int], given: list[int], choices: int) -> dict:
    """How many ``given`` answers match, against guessing (one-sided binomial p-value)."""
    if len(given) != len(answers):
        raise DcignError(f"the test has {len(answers)} rows, {len(given)} answers were given")
    if any(not 1 <= g <= choices for g in given):
        raise DcignError(f"answers must be choice numbers 1..{choices}, got {given}")
    right = sum(a == g for a, g in zip(answers, given))
    return {"right": right, "rows": len(answers), "chance": len(answers) / choices,
            "p": guessing_p(right, len(answers), choices)}
