"""The BetaVAE metric's features (:mod:`dcign_eval.metrics.beta_vae`)."""

import numpy as np

from dcign_eval.metrics import beta_vae


def test_beta_vae_features():
    c1 = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    c2 = np.array([[[1.0, 1.0], [0.0, 3.0]]])
    np.testing.assert_array_equal(beta_vae._features(c1, c2), [[1.5, 0.0]])
