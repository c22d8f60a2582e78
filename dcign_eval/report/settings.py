"""How much of each analysis the report computes: :class:`ReportSettings` and its presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dcign_eval.metrics.dci import DEFAULT_DCI_MODE
from trainer.errors import DcignError


@dataclass(frozen=True)
class ReportSettings:
    """How much of each analysis the report computes.

    Attributes:
        grid_identities: held-out identities of the evaluation grid (metrics and scatter plots;
            19 azimuths x 7 elevations x 9 lights each, as ``dcign-eval metrics``).
        metrics_num_train, metrics_num_eval: points per disentanglement metric (None:
            disentanglement_lib's 10,000 / 5,000).
        dci_mode: DCI's importance estimator, one of dcign_eval.metrics.dci.DCI_MODES
            ("gbt-hist" by default; "gbt" is the reference's, slow).
        metrics: which disentanglement metrics (None: all; () none, the paper's measurements only).
        metrics_seeds: draws of the metrics' samples (seeds seed .. seed + n - 1); from 2 on,
            each value is their mean with a Student-t 95% interval; 1: the value alone.
        seeded_metrics: the metrics drawn ``metrics_seeds`` times (None: all); the others are
            drawn once (the value alone). The paper's measurements use the whole grid, not a
            sample: their Spearman |rho| gets a bootstrap interval over the grid's identities.
        grid_resamples: bootstrap resamples of the grid's identities behind that interval.
        recognition_resamples: bootstrap resamples of the held-out identities behind every
            recognition and verification figure's 95% interval, and of the held-out faces behind
            the reconstruction, lineup and re-rendering fidelity tables' (0: none).
        recognition_identities: held-out identities of the recognition experiment.
        probe_steps: probe grid steps (azimuth, elevation, light) in degrees.
        probes_per_azimuth: (elevation, light) probes per identity and azimuth (None: all).
        pca_components, pca_identities, pca_images: the PCA-of-pixels baseline (0: none).
        classifiers: recognition classifiers.
        traverse_faces, traverse_frames, fps: the traversals (movies, and the slider's frames
            and its play speed).
        calibration_identities: held-out identities of the traverse calibration.
        fidelity_identities: held-out faces per target angle in the re-rendering fidelity.
        reconstruction_faces: held-out faces shown reconstructed.
        lineup_faces: held-out faces (and identities) of the reconstruction lineup.
        scatter_points: points drawn per panel of the scatter plots (rho uses them all).
    """

    grid_identities: int = 10
    metrics_num_train: int | None = 3000
    metrics_num_eval: int | None = 1500
    dci_mode: str = DEFAULT_DCI_MODE
    metrics: tuple[str, ...] | None = None
    metrics_seeds: int = 1
    seeded_metrics: tuple[str, ...] | None = None
    grid_resamples: int = 200
    recognition_resamples: int = 1000
    recognition_identities: int = 50
    probe_steps: tuple[float, float, float] = (15.0, 15.0, 20.0)
    probes_per_azimuth: int | None = 4
    pca_components: int = 200
    pca_identities: int = 500
    pca_images: int = 2000
    classifiers: tuple[str, ...] = ("1nn-cosine", "logistic", "linear-svc")
    traverse_faces: int = 2
    traverse_frames: int = 32
    fps: float = 12.0
    calibration_identities: int = 4
    fidelity_identities: int = 4
    reconstruction_faces: int = 8
    lineup_faces: int = 64
    scatter_points: int = 3000

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: The metrics a default report draws over several seeds: the cheap ones, about 2 CPU seconds a
#: seed for two models and the two reference codes (measured). BetaVAE and explicitness (6 a
#: seed, both near 1 on the shipped models), SAP, DCI and the unsupervised pair (about 20 more)
#: are drawn once there; the full preset draws every metric over its seeds.
CHEAP_METRICS = ("factor_vae", "mig", "modularity", "irs")

PRESETS: dict[str, ReportSettings] = {
    # The default: intervals on every figure (5 seeds of the cheap metrics, the bootstrap of
    # recognition), at most 3 minutes cold on a 2-core CPU (bench/bench_report.py).
    "standard": ReportSettings(metrics_seeds=5, seeded_metrics=CHEAP_METRICS),
    # One seed of every metric (no metric intervals; recognition keeps its bootstrap, which
    # refits nothing): about two minutes cold.
    "quick": ReportSettings(),
    # The other commands' defaults (dcign-eval metrics / recognition / traverse --fidelity),
    # every metric over 5 seeds.
    "full": ReportSettings(metrics_num_train=None, metrics_num_eval=None, metrics_seeds=5,
                           grid_resamples=1000, recognition_identities=100, traverse_faces=4,
                           traverse_frames=48, fidelity_identities=8, reconstruction_faces=12,
                           scatter_points=6000),
    # Tests and the pipeline's plumbing check: seconds.
    "tiny": ReportSettings(grid_identities=2, metrics_num_train=200, metrics_num_eval=100,
                           metrics_seeds=2, seeded_metrics=("mig", "irs"), grid_resamples=50,
                           recognition_resamples=200,
                           recognition_identities=3, probe_steps=(45.0, 30.0, 80.0),
                           probes_per_azimuth=2, pca_components=5, pca_identities=20,
                           pca_images=20, classifiers=("1nn-cosine",), traverse_faces=1,
                           traverse_frames=5, fps=5.0, calibration_identities=1,
                           fidelity_identities=1, reconstruction_faces=3, lineup_faces=4,
                           scatter_points=500),
}


def metrics_preset(name: str) -> dict:
    """The metrics' settings of a preset, as ``dcign-eval metrics`` takes them: ``num_train``,
    ``num_eval`` (None: disentanglement_lib's) and ``seeds``."""
    settings = preset(name)
    return {"num_train": settings.metrics_num_train, "num_eval": settings.metrics_num_eval,
            "seeds": settings.metrics_seeds}


def preset(name: str) -> ReportSettings:
    """The settings called ``name`` (standard, quick, full, tiny)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DcignError(f"unknown report preset {name!r}; choose from "
                         f"{', '.join(PRESETS)}") from None
