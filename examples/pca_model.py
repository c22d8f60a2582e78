"""An outside model, as a user of dcign-eval could write it: PCA of pixels (scikit-learn).

It has no named latents and no training run of ours; it only follows the model protocol
(``dcign_eval/protocol.py``): ``encode``, ``image_size``, and ``decode`` for reconstructions and
traversals. Evaluate it like any model::

    dcign-eval metrics --model examples/pca_model.py:make_model
    dcign-eval report --model dcign --model vae --model examples/pca_model.py:make_model

The components are fitted on faces of training identities at random poses and lights, rendered
when the model is made (a second or two).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from trainer.faces import FACTOR_RANGES, render_faces, split_identities


class PixelPCA:
    """Principal components of the pixels (scaled to [0, 1]) as a code.

    Args:
        images: uint8 (N, S, S) training faces.
        components: latents of the code.
        random_state: seed of the randomized SVD.
    """

    name = "pca"

    def __init__(self, images: np.ndarray, components: int = 16, random_state: int = 0):
        self.image_size = int(images.shape[1])
        self.pca = PCA(components, svd_solver="randomized", random_state=random_state)
        self.pca.fit(images.reshape(len(images), -1) / 255.0)

    def encode(self, images) -> np.ndarray:
        """(N, components) codes of uint8 (N, S, S) images."""
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
        return self.pca.transform(x).astype(np.float32)

    def decode(self, z) -> np.ndarray:
        """(N, S, S) images in [0, 1] from codes."""
        x = self.pca.inverse_transform(np.asarray(z, dtype=np.float64))
        return np.clip(x, 0, 1).reshape(-1, self.image_size, self.image_size).astype(np.float32)


def training_faces(n: int = 600, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` faces of training identities at random azimuth, elevation and light (uint8)."""
    rng = np.random.default_rng(seed)
    identities = rng.choice(split_identities("train", 500), n)
    angles = [rng.uniform(lo, hi, n) for lo, hi in FACTOR_RANGES.values()]
    return render_faces(identities, *angles, size=size)


def make_model(components: int = 16, size: int = 64) -> PixelPCA:
    """The factory ``dcign-eval`` calls: a PCA fitted on 600 training faces."""
    return PixelPCA(training_faces(size=size), components)
