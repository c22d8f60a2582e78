"""The FactorVAE metric's core (:mod:`dcign_eval.metrics.factor_vae`) on hand-made votes."""

import numpy as np

from dcign_eval.metrics import factor_vae


def test_factor_vae_core_votes_and_pruning():
    gv = np.array([1.0, 4.0, 1e-4])  # latent 2 is pruned (std 0.01 < 0.05)
    local = np.array([[0.1, 3.0, 0.0], [0.9, 0.4, 0.0], [0.05, 3.9, 0.0], [1.0, 0.1, 0.0]])
    labels = np.array([0, 1, 0, 1])
    out = factor_vae._compute_factor_vae(local, labels, local, labels[::-1], gv, num_factors=2)
    assert out["train_accuracy"] == 1.0 and out["eval_accuracy"] == 0.0
    assert out["num_active_dims"] == 2
    none = factor_vae._compute_factor_vae(local, labels, local, labels, np.zeros(3), 2)
    assert none == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
