"""Image measures: pure functions on arrays of images (no models, no files).

* :func:`mse` -- per-image mean squared error.
* :func:`ssim` -- Gaussian-window SSIM (Wang et al., "Image quality assessment: from error
  visibility to structural similarity", IEEE TIP 2004), as scikit-image computes it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from trainer.errors import DcignError


def ssim(a, b, data_range: float = 1.0, sigma: float = 1.5) -> np.ndarray | float:
    """Mean structural similarity of images (Wang et al., IEEE TIP 2004), per image.

    Gaussian window (sigma 1.5, truncated at 3.5 sigma: 11x11), K1 = 0.01, K2 = 0.03, population
    statistics, borders of half a window cropped before averaging: scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.

    Args:
        a, b: images of the same shape, (H, W) or (N, H, W).
        data_range: the span of the pixel values (1 for [0, 1] floats, 255 for uint8).
        sigma: standard deviation of the Gaussian window, pixels.
    Returns:
        a float for one image, else an (N,) array; 1 means identical.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise DcignError(f"ssim needs images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or min(a.shape[-2:]) < 1:
        raise DcignError(f"ssim takes (H, W) or (N, H, W) images, got shape {a.shape}")
    if not data_range > 0:
        raise DcignError(f"data_range must be > 0, got {data_range}")
    single = a.ndim == 2
    a, b = np.atleast_3d(a.T).T, np.atleast_3d(b.T).T  # (N, H, W)
    truncate = 3.5
    sigmas = (0.0, sigma, sigma)

    def filt(x):
        return gaussian_filter(x, sigma=sigmas, truncate=truncate, mode="reflect")

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) \
        / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    pad = int(truncate * sigma + 0.5)
    if min(s.shape[1:]) > 2 * pad:
        s = s[:, pad:-pad, pad:-pad]
    out = s.mean(axis=(1, 2))
    return float(out[0]) if single else out


def mse(a, b) -> np.ndarray:
    """Per-image mean squared error of (N, H, W) images."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
