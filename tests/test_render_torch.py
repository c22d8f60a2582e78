"""The batched torch renderer (the GPU path) against the numba renderer, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.errors import DcignError
from trainer.faces import render_faces
from trainer.faces.render_torch import render_faces_torch


def mixed(n, seed):
    """Mixed factors, the first rows at the ends of every range."""
    rng = np.random.default_rng(seed)
    identity = rng.integers(0, 1000, n)
    azimuth, elevation, light = (rng.uniform(-90, 90, n), rng.uniform(-30, 30, n),
                                 rng.uniform(-80, 80, n))
    k = min(n, 4)
    azimuth[:k] = [-90.0, 90.0, 0.0, 45.0][:k]
    elevation[:k] = [30.0, -30.0, 0.0, 0.0][:k]
    light[:k] = [80.0, -80.0, 0.0, 0.0][:k]
    return identity, azimuth, elevation, light


def render(*factors, **kw):
    return render_faces_torch(*factors, device="cpu", **kw)


def test_shape_dtype_and_empty():
    imgs = render([0, 1], [0, 30], [0, -10], [0, 40])
    assert imgs.shape == (2, 64, 64) and imgs.dtype == np.uint8
    assert render([3], [0], [0], [0], size=150).shape == (1, 150, 150)
    assert render([], [], [], []).shape == (0, 64, 64)


def test_deterministic_and_independent_of_batch():
    factors = mixed(7, 3)
    a = render(*factors)
    b = render(*factors)
    c = render(*factors, batch=3)  # chunked differently: same bytes
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_default_device_runs():
    imgs = render_faces_torch([5], [10], [5], [-20])  # CUDA if present, else CPU
    assert imgs.shape == (1, 64, 64) and imgs.dtype == np.uint8
    if not torch.cuda.is_available():
        assert imgs.tobytes() == render([5], [10], [5], [-20]).tobytes()


@pytest.mark.parametrize("args,kw,message", [
    (([0], [95], [0], [0]), {}, "azimuth 95 is out of range"),
    (([0], [0], [-31], [0]), {}, "elevation"),
    (([0], [0], [0], [np.nan]), {}, "light"),
    (([-1], [0], [0], [0]), {}, "identity must be >= 0"),
    (([0.5], [0], [0], [0]), {}, "identity must be integers"),
    (([0, 1], [0], [0, 0], [0, 0]), {}, "azimuth has 1 values"),
    (([[0]], [0], [0], [0]), {}, "1-D"),
    (([0], [0], [0], [0]), {"size": 4}, "size"),
    (([0], [0], [0], [0]), {"size": True}, "size"),
    (([0], [0], [0], [0]), {"batch": 0}, "batch"),
])
def test_bad_input_raises(args, kw, message):
    with pytest.raises(DcignError, match=message):
        render(*args, **kw)


# Last in the file: after numba's parallel kernels run, their OpenMP threads spin for a while and
# slow the torch calls that follow on a small machine.
@pytest.mark.parametrize("size,n,seed", [(64, 12, 1), (150, 2, 2)])
def test_matches_numba_renderer(size, n, seed):
    factors = mixed(n, seed)
    out = render(*factors, size=size).astype(np.int32)
    ref = render_faces(*factors, size=size).astype(np.int32)
    diff = np.abs(ref - out)
    # Measured on CPU: mean |diff| ~2e-5 levels, max 1 level (float32 here, partly float64 in
    # numba: an edge-tie sample or a rounding can go the other way). The bounds leave room for
    # another BLAS or device; they are far below anything a wrong camera or shading would give.
    assert diff.mean() < 1.0, diff.mean()
    assert (diff <= 2).mean() >= 0.99
    assert (diff == 0).mean() >= 0.99
    for ref_img, out_img in zip(ref, out):  # every image, not just the batch on average
        assert np.abs(ref_img - out_img).mean() < 1.0
        assert ref_img.sum() > 0 and out_img.sum() > 0  # a face, not a black frame
